"""Throughput benchmarks; prints one JSON line per measured configuration.

    python scripts/benchmark.py --model resnet20 --precision float32 mixed_bfloat16
    python scripts/benchmark.py --model resnet20 --vs-torch /tmp/torch-ref/bin/python --repeats 3
    python scripts/benchmark.py --pipeline --dataset cifar10 --data-dir ../shared/data/cifar10

`--model`: training images/s of keras_cnn's own training step (the Trainer that train()
uses) on random data of the real shape, doing the reference's work: SGD with Nesterov
momentum 0.9, weight decay 5e-4, no EMA; warm-up excluded. `--mode eval` times the Trainer's
evaluation step instead (inference in the training precision), beside torch's `--mode eval`. `--vs-torch PYTHON` runs
../shared/bench/torch_reference.py with that interpreter in the same invocation, interleaved
with keras_cnn's runs, and prints min/median/max ratios.

`--pipeline`: images/s of the input pipeline alone (decode once, then augment, normalize,
batch from memory), reported per epoch after the first; `--compare-keras` also times
`keras.utils.image_dataset_from_directory` on the same folder.
"""
import json
import os
import statistics
import time

import keras
import tensorflow as tf

from keras_cnn.cli.common import ArgumentParser, cli_entry
from keras_cnn.config import DataConfig
from keras_cnn.data import prepare_data
from keras_cnn.data.pipeline import make_dataset
from keras_cnn.errors import UsageError
from keras_cnn.perf import benchmark_models, measure_peaks
from keras_cnn.smoke import cap


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="benchmark.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", help="models whose training step to time, e.g. resnet20 vgg16 alexnet")
    parser.add_argument("--precision", nargs="+", default=["auto"],
                        help="float32, mixed_bfloat16, auto (the default train() would pick)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first (tracing, oneDNN primitive caches)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per configuration")
    parser.add_argument("--steps-per-call", type=int, default=10)
    parser.add_argument("--mode", default="train", choices=("train", "eval"),
                        help="train: the training step; eval: the Trainer's evaluation step (inference)")
    parser.add_argument("--vs-torch", metavar="PYTHON", help="interpreter with torch 2.13 for the reference")
    parser.add_argument("--torch-reference", default=None, help="path to torch_reference.py (default ../shared/bench/)")
    parser.add_argument("--pipeline", action="store_true", help="benchmark the input pipeline alone")
    parser.add_argument("--peaks", action="store_true", help="measure the float32 matmul and bfloat16 conv peaks here")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the decoding epoch")
    parser.add_argument("--no-augment", action="store_true", help="skip crop and flip")
    parser.add_argument("--compare-keras", action="store_true", help="also time image_dataset_from_directory")
    parser.add_argument("--keras-batches", type=int, default=100, help="batches timed for --compare-keras")
    args = parser.parse_args(argv)
    # KERAS_CNN_SMOKE=1: a few steps of each measurement, to check the command works.
    args.steps, args.warmup, args.repeats = cap(args.steps, 3), cap(args.warmup, 2), cap(args.repeats, 1)
    args.epochs, args.keras_batches = cap(args.epochs, 1), cap(args.keras_batches, 3)
    if not args.pipeline and not args.model and not args.peaks:
        raise UsageError("nothing to measure: pass --model NAME (training step), --pipeline (input pipeline) or --peaks")
    if args.batch_size < 1 or args.epochs < 1 or args.steps < 1 or args.repeats < 1:
        raise UsageError("--batch-size, --epochs, --steps and --repeats must be at least 1")
    if args.peaks:
        print(json.dumps(measure_peaks(repeats=cap(5, 1), matmul_size=cap(4096, 1024))), flush=True)
    if args.pipeline:
        print(json.dumps(benchmark_pipeline(args)), flush=True)
        if args.compare_keras:
            print(json.dumps(benchmark_keras_folder(args)), flush=True)
    if args.model:
        benchmark_models(args.model, args.precision, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                         repeats=args.repeats, steps_per_call=args.steps_per_call, mode=args.mode,
                         torch_python=args.vs_torch, torch_script=args.torch_reference,
                         emit=lambda line: print(line, flush=True))
    return 0


def benchmark_pipeline(args):

    cfg = DataConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        crop_padding=0 if args.no_augment else 4,
        flip=not args.no_augment,
    )
    start = time.perf_counter()
    data = prepare_data(cfg)
    decode_seconds = time.perf_counter() - start
    rates = []
    for epoch in range(args.epochs):
        ds = make_dataset(data.train, cfg, training=True, epoch=epoch, normalizer=data.normalizer)
        start = time.perf_counter()
        count = sum(int(x.shape[0]) for x, _ in ds)
        rates.append(count / (time.perf_counter() - start))
    return {
        "benchmark": "pipeline",
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "augment": not args.no_augment,
        "train_images": len(data.train),
        "decode_seconds": round(decode_seconds, 1),
        "images_per_sec": round(statistics.median(rates)),
        "images_per_sec_per_epoch": [round(r) for r in rates],
    }


def benchmark_keras_folder(args):


    folder = args.data_dir
    if folder and os.path.isdir(os.path.join(folder, "train")):
        folder = os.path.join(folder, "train")
    if not folder or not os.path.isdir(folder):
        raise UsageError("--compare-keras needs --data-dir pointing at an image folder")
    ds = keras.utils.image_dataset_from_directory(folder, batch_size=args.batch_size, image_size=(32, 32), verbose=False)
    # Repeated: a folder smaller than warm-up + timed batches must not run dry mid-measurement.
    ds = ds.map(lambda x, y: (x / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE).repeat().prefetch(tf.data.AUTOTUNE)
    it = iter(ds)
    next(it)  # warm-up
    start = time.perf_counter()
    count = sum(int(next(it)[0].shape[0]) for _ in range(args.keras_batches))
    return {
        "benchmark": "keras_image_dataset_from_directory",
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "images_per_sec": round(count / (time.perf_counter() - start)),
    }


if __name__ == "__main__":
    raise SystemExit(main())
