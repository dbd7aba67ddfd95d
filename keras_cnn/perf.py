"""Training-step throughput: keras_cnn's own step on random data, optionally beside PyTorch."""
import json
import os
import statistics
import subprocess
import time

import numpy as np

from keras_cnn.errors import UsageError

TORCH_MODELS = ("resnet20", "resnet56", "vgg16", "alexnet")


def forward_macs(model):
    """Multiply-adds of one forward pass per image, from the layer shapes (convs and dense)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            total += h * w * kh * kw * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


class StepTimer:
    """Builds the model and the Trainer exactly as train() does and times its steps."""

    def __init__(self, model_name, precision, batch_size, steps_per_call, input_shape=(32, 32, 3), num_classes=10):
        import keras
        import tensorflow as tf

        from keras_cnn.config import OptimizerConfig, ScheduleConfig
        from keras_cnn.models import create_model
        from keras_cnn.training.loop import Trainer
        from keras_cnn.training.optim import build_optimizer, per_example_loss
        from keras_cnn.training.precision import resolve_precision

        self.precision = resolve_precision(precision)
        opt_cfg = OptimizerConfig(name="sgd", learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        strategy = tf.distribute.get_strategy()
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.precision)
        try:
            self.model = create_model(model_name, input_shape, num_classes, weight_decay=opt_cfg.weight_decay)
            optimizer, _ = build_optimizer(opt_cfg, ScheduleConfig(), num_replicas=1, steps_per_epoch=1000,
                                           total_steps=100000, precision=self.precision)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        self.trainer = Trainer(self.model, optimizer, per_example_loss(opt_cfg, num_classes), strategy, global_batch_size=batch_size)
        rng = np.random.default_rng(0)
        x = tf.constant(rng.random((batch_size, *input_shape), np.float32))
        y = tf.constant(rng.integers(0, num_classes, batch_size), tf.int32)
        dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
        self.iterator = iter(strategy.experimental_distribute_dataset(dataset))
        self.batch_size, self.steps_per_call = batch_size, steps_per_call

    def run(self, steps):
        done = 0
        while done < steps:
            n = min(self.steps_per_call, steps - done)
            self.trainer.train_steps(self.iterator, n)
            done += n

    def measure(self, steps):
        start = time.perf_counter()
        self.run(steps)
        return steps * self.batch_size / (time.perf_counter() - start)


def torch_reference_path(args):
    path = args.torch_reference or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "torch_reference.py")
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"torch reference not found at {path}; pass --torch-reference PATH")
    return path


def run_torch(python, script, model, precision, batch_size, steps, warmup):
    out = subprocess.run(
        [python, script, "--model", model, "--precision", precision, "--batch-size", str(batch_size),
         "--steps", str(steps), "--warmup", str(warmup)],
        capture_output=True, text=True, timeout=1800,
    )
    if out.returncode != 0:
        raise UsageError(f"torch reference failed ({out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}); check --vs-torch")
    return json.loads(out.stdout.strip().splitlines()[-1])


def benchmark_models(args):
    """One JSON line per (model, precision, repeat); with --vs-torch, interleaved pairs and ratios."""
    from keras_cnn.training.provenance import cpu_supports_bf16

    script = torch_reference_path(args) if args.vs_torch else None
    for model_name in args.model:
        for precision in args.precision:
            timer = StepTimer(model_name, precision, args.batch_size, args.steps_per_call)
            macs = forward_macs(timer.model)
            timer.run(args.warmup)
            ours, theirs = [], []
            torch_precision = "bf16" if timer.precision == "mixed_bfloat16" else "float32"
            for repeat in range(args.repeats):
                rate = timer.measure(args.steps)
                ours.append(rate)
                line = {
                    "framework": "keras_cnn", "model": model_name, "precision": timer.precision,
                    "batch_size": args.batch_size, "params": timer.model.count_params(),
                    "images_per_sec": round(rate, 1), "train_gflops_per_sec": round(6 * macs * rate / 1e9, 1),
                    "repeat": repeat,
                }
                print(json.dumps(line), flush=True)
                if script:
                    if model_name not in TORCH_MODELS:
                        raise UsageError(f"the torch reference has no {model_name}; it has {', '.join(TORCH_MODELS)}")
                    for torch_prec in sorted({torch_precision, "bf16" if cpu_supports_bf16() else "float32"}):
                        ref = run_torch(args.vs_torch, script, model_name, torch_prec, args.batch_size, args.steps, args.warmup)
                        ref.update(framework="torch", repeat=repeat)
                        print(json.dumps(ref), flush=True)
                        theirs.append((torch_prec, rate, ref["images_per_sec"]))
            if theirs:
                for torch_prec in sorted({p for p, _, _ in theirs}):
                    ratios = [ours_rate / ref_rate for p, ours_rate, ref_rate in theirs if p == torch_prec]
                    print(json.dumps({
                        "ratio": f"keras_cnn {timer.precision} / torch {torch_prec}", "model": model_name,
                        "pairs": len(ratios), "min": round(min(ratios), 3), "median": round(statistics.median(ratios), 3),
                        "max": round(max(ratios), 3),
                    }), flush=True)


def measure_peaks(repeats=5):
    """This machine's reference rates: a float32 4096^3 matmul, a bfloat16 3x3 conv (64->64, 32x32, batch 128)."""
    import tensorflow as tf

    def best_rate(fn, flops):
        fn()  # warm-up: oneDNN builds its primitives on the first call
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return flops / min(times) / 1e9

    a = tf.random.normal([4096, 4096])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)))
    x = tf.cast(tf.random.normal([128, 32, 32, 64]), tf.bfloat16)
    w = tf.cast(tf.random.normal([3, 3, 64, 64]), tf.bfloat16)
    conv = tf.function(lambda: tf.reduce_sum(tf.cast(tf.nn.conv2d(x, w, 1, "SAME"), tf.float32)))
    return {
        "benchmark": "peaks",
        "float32_matmul_gflops": round(best_rate(lambda: matmul().numpy(), 2 * 4096**3), 1),
        "bfloat16_conv3x3_gflops": round(best_rate(lambda: conv().numpy(), 2 * 128 * 32 * 32 * 9 * 64 * 64), 1),
    }
