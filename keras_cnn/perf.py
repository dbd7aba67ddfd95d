"""Throughput of keras_cnn's own training and evaluation steps, optionally beside PyTorch.

StepTimer builds through keras_cnn.training.build, the path train() takes, so it times what a
run executes (precision, synchronized BN, EMA and XLA when the config asks for them).
"""

import json
import os
import statistics
import subprocess
import time

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.config import TrainConfig
from keras_cnn.data.pipeline import IN_MEMORY_EVALUATION
from keras_cnn.errors import UsageError
from keras_cnn.hardware import cpu_supports_bf16
from keras_cnn.training.build import build_training

TORCH_MODELS = ("resnet20", "resnet56", "vgg16", "alexnet")
DEFAULT_TORCH_REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "torch_reference.py")


def forward_macs(model):
    """Multiply-adds of one forward pass per image, from the layer shapes (convs and dense)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            total += h * w * kh * kw * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def reference_config(model_name, precision, batch_size, steps_per_call):
    """The torch reference's work: SGD, Nesterov momentum 0.9, weight decay 5e-4, no EMA."""
    return TrainConfig().replace(
        model={"name": model_name},
        data={"batch_size": batch_size},
        optimizer={"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        run={"precision": precision, "steps_per_call": steps_per_call, "strategy": "default", "epochs": 100},
    )


class StepTimer:
    """The Trainer of a training run for `cfg`, timed on random data of the real shape."""

    def __init__(self, cfg, input_shape=(32, 32, 3), num_classes=10):
        self.built = build_training(
            cfg,
            image_shape=input_shape,
            num_classes=num_classes,
            steps_per_epoch=1000,
            strategy=tf.distribute.get_strategy(),
        )
        self.model, self.precision = self.built.model, self.built.precision
        rng = np.random.default_rng(0)
        x = tf.constant(rng.random((cfg.data.batch_size, *input_shape), np.float32))
        y = tf.constant(rng.integers(0, num_classes, cfg.data.batch_size), tf.int32)
        self.batch = tf.data.Dataset.from_tensors((x, y))
        self.iterator = iter(self.batch.repeat())
        self.batch_size, self.steps_per_call = cfg.data.batch_size, cfg.run.steps_per_call

    def run(self, steps):
        done = 0
        while done < steps:
            n = min(self.steps_per_call, steps - done)
            self.built.trainer.train_steps(self.iterator, n)
            done += n

    def run_eval(self, steps):
        """The Trainer's evaluation step (validation runs it every epoch), `steps` batches in one call."""
        # With the options an in-memory validation set has (data/pipeline.py).
        self.built.trainer.evaluate(self.batch.repeat(steps).with_options(IN_MEMORY_EVALUATION))

    def measure(self, steps, mode="train"):
        start = time.perf_counter()
        (self.run if mode == "train" else self.run_eval)(steps)
        return steps * self.batch_size / (time.perf_counter() - start)


def run_torch(python, script, model, precision, batch_size, steps, warmup, mode="train"):
    """One measurement of ../shared/bench/torch_reference.py in its own interpreter."""
    command = [
        python,
        script,
        "--model",
        model,
        "--precision",
        precision,
        "--batch-size",
        str(batch_size),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ]
    if mode != "train":
        command += ["--mode", mode]
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        raise UsageError(f"torch reference failed ({last}); check --vs-torch")
    return json.loads(out.stdout.strip().splitlines()[-1])


def benchmark_models(
    models,
    precisions,
    *,
    batch_size=128,
    steps=30,
    warmup=30,
    repeats=1,
    steps_per_call=10,
    mode="train",
    torch_python=None,
    torch_script=None,
    emit=print,
):
    """One JSON line per (model, precision, repeat); with torch_python, interleaved pairs and ratio lines."""
    if torch_python:
        torch_script = os.path.abspath(torch_script or DEFAULT_TORCH_REFERENCE)
        if not os.path.isfile(torch_script):
            raise UsageError(f"torch reference not found at {torch_script}; pass --torch-reference PATH")
        unknown = [m for m in models if m not in TORCH_MODELS]
        if unknown:
            raise UsageError(f"the torch reference has no {', '.join(unknown)}; it has {', '.join(TORCH_MODELS)}")
    for model_name in models:
        for precision in precisions:
            timer = StepTimer(reference_config(model_name, precision, batch_size, steps_per_call))
            pairs = _measure(timer, model_name, mode, steps, warmup, repeats, torch_python, torch_script, emit)
            for torch_precision in sorted({p for p, _, _ in pairs}):
                ratios = [ours / ref for p, ours, ref in pairs if p == torch_precision]
                emit(
                    json.dumps(
                        {
                            "ratio": f"keras_cnn {timer.precision} / torch {torch_precision}",
                            "model": model_name,
                            "mode": mode,
                            "pairs": len(ratios),
                            "min": round(min(ratios), 3),
                            "median": round(statistics.median(ratios), 3),
                            "max": round(max(ratios), 3),
                        }
                    )
                )


def _measure(timer, model_name, mode, steps, warmup, repeats, torch_python, torch_script, emit):
    macs = forward_macs(timer.model)
    flops_per_image = (6 if mode == "train" else 2) * macs  # forward + backward is ~3x the forward pass
    (timer.run if mode == "train" else timer.run_eval)(warmup)
    torch_precisions = sorted(
        {"bf16" if timer.precision == "mixed_bfloat16" else "float32", "bf16" if cpu_supports_bf16() else "float32"}
    )
    pairs = []
    for repeat in range(repeats):
        rate = timer.measure(steps, mode)
        emit(
            json.dumps(
                {
                    "framework": "keras_cnn",
                    "model": model_name,
                    "mode": mode,
                    "precision": timer.precision,
                    "batch_size": timer.batch_size,
                    "params": timer.model.count_params(),
                    "images_per_sec": round(rate, 1),
                    f"{mode}_gflops_per_sec": round(flops_per_image * rate / 1e9, 1),
                    "repeat": repeat,
                }
            )
        )
        for torch_precision in torch_precisions if torch_python else ():
            ref = run_torch(
                torch_python, torch_script, model_name, torch_precision, timer.batch_size, steps, warmup, mode
            )
            ref.update(framework="torch", repeat=repeat)
            emit(json.dumps(ref))
            pairs.append((torch_precision, rate, ref["images_per_sec"]))
    return pairs


def measure_peaks(repeats=5, matmul_size=4096):
    """This machine's reference rates: a float32 4096^3 matmul, float32 and bfloat16 3x3 convs (64->64, 32x32, batch 128)."""

    def best_rate(fn, flops):
        fn()  # warm-up: oneDNN builds its primitives on the first call
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return flops / min(times) / 1e9

    a = tf.random.normal([matmul_size, matmul_size])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)))
    conv_flops = 2 * 128 * 32 * 32 * 9 * 64 * 64
    rates = {
        "benchmark": "peaks",
        "float32_matmul_gflops": round(best_rate(lambda: matmul().numpy(), 2 * matmul_size**3), 1),
    }
    for dtype in (tf.float32, tf.bfloat16):
        x = tf.cast(tf.random.normal([128, 32, 32, 64]), dtype)
        w = tf.cast(tf.random.normal([3, 3, 64, 64]), dtype)
        conv = tf.function(lambda: tf.reduce_sum(tf.cast(tf.nn.conv2d(x, w, 1, "SAME"), tf.float32)))
        rates[f"{dtype.name}_conv3x3_gflops"] = round(best_rate(lambda: conv().numpy(), conv_flops), 1)
    return rates
