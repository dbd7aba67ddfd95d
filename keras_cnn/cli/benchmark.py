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
`keras.utils.image_dataset_from_directory` on the same folder. `--pipeline --image-size 224`
streams from the files (or prepared shards) at that resolution; with `--vs-torch PYTHON`
interleaved with ../shared/bench/torch_pipeline_reference.py (`--eval`: the evaluation transform).

`--mode serve --model EXPORT_DIR`: an export folder's formats (SavedModel, LiteRT, ONNX) measured
again on this machine, as in its export_report.json: validation accuracy, top-1 agreement with the
SavedModel, size, batch-1 latency and batch-64 throughput, printed as a table.
"""

import json
import os
import resource
import statistics
import subprocess
import time

import keras
import tensorflow as tf

from keras_cnn.cli.common import ArgumentParser, cli_entry, description_of
from keras_cnn.config import DataConfig
from keras_cnn.data import prepare_data
from keras_cnn.data.pipeline import make_dataset
from keras_cnn.errors import UsageError
from keras_cnn.perf import benchmark_models, measure_peaks
from keras_cnn.smoke import cap


def build_parser():
    parser = ArgumentParser(prog="benchmark.py", description=description_of(__doc__))
    parser.add_argument("--model", nargs="+", help="models whose training step to time, e.g. resnet20 vgg16 alexnet")
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["auto"],
        help="float32, mixed_bfloat16, auto (the default train() would pick)",
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first (tracing, oneDNN primitive caches)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per configuration")
    parser.add_argument("--steps-per-call", type=int, default=10)
    parser.add_argument(
        "--mode",
        default="train",
        choices=("train", "eval", "serve"),
        help="train: the training step; eval: the Trainer's evaluation step (inference); "
        "serve: an export folder's files (--model EXPORT_DIR)",
    )
    parser.add_argument("--vs-torch", metavar="PYTHON", help="interpreter with torch 2.13 for the reference")
    parser.add_argument("--torch-reference", default=None, help="path to torch_reference.py (default ../shared/bench/)")
    parser.add_argument("--pipeline", action="store_true", help="benchmark the input pipeline alone")
    parser.add_argument("--peaks", action="store_true", help="measure the float32 matmul and bfloat16 conv peaks here")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the decoding epoch")
    parser.add_argument("--no-augment", action="store_true", help="skip crop and flip")
    parser.add_argument("--image-size", type=int, help="--pipeline: stream at this resolution (random-resized-crop)")
    parser.add_argument("--eval", action="store_true", help="--pipeline: time the evaluation transform (center crop)")
    parser.add_argument(
        "--cache",
        choices=("auto", "memory", "disk", "none"),
        help="--pipeline: where decoded images live (default: none with --image-size, else auto)",
    )
    parser.add_argument(
        "--torch-pipeline-reference", help="path to torch_pipeline_reference.py (default ../shared/bench/)"
    )
    parser.add_argument("--compare-keras", action="store_true", help="also time image_dataset_from_directory")
    parser.add_argument("--keras-batches", type=int, default=100, help="batches timed for --compare-keras")
    return parser


@cli_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    # KERAS_CNN_SMOKE=1: a few steps of each measurement, to check the command works.
    args.steps, args.warmup, args.repeats = cap(args.steps, 3), cap(args.warmup, 2), cap(args.repeats, 1)
    args.epochs, args.keras_batches = cap(args.epochs, 1), cap(args.keras_batches, 3)
    if not args.pipeline and not args.model and not args.peaks:
        raise UsageError(
            "nothing to measure: pass --model NAME (training step), --pipeline (input pipeline) or --peaks"
        )
    if args.batch_size < 1 or args.epochs < 1 or args.steps < 1 or args.repeats < 1:
        raise UsageError("--batch-size, --epochs, --steps and --repeats must be at least 1")
    if args.mode == "serve":
        return benchmark_serve(args.model)
    if args.peaks:
        print(json.dumps(measure_peaks(repeats=cap(5, 1), matmul_size=cap(4096, 1024))), flush=True)
    if args.pipeline:
        benchmark_pipeline(args, lambda line: print(json.dumps(line), flush=True))
        if args.compare_keras:
            print(json.dumps(benchmark_keras_folder(args)), flush=True)
    if args.model:
        benchmark_models(
            args.model,
            args.precision,
            batch_size=args.batch_size,
            steps=args.steps,
            warmup=args.warmup,
            repeats=args.repeats,
            steps_per_call=args.steps_per_call,
            mode=args.mode,
            torch_python=args.vs_torch,
            torch_script=args.torch_reference,
            emit=lambda line: print(line, flush=True),
        )
    return 0


def benchmark_serve(folders):
    from keras_cnn.deploy.report import table

    if not folders:
        raise UsageError("--mode serve needs --model EXPORT_DIR (an export version folder written by export.py)")
    for folder in folders:
        scored = score_export(folder)
        print(f"{folder} on {scored['machine']['cpu']}, {scored['machine']['threads']} threads:")
        print(table(scored), flush=True)
    return 0


def score_export(folder):
    """benchmark.py --mode serve: measure an export folder again, on this machine, as its report does."""
    from keras_cnn.deploy.formats import FORMATS
    from keras_cnn.deploy.write import REPORT, deploy_request, sample_images, score_folder
    from keras_cnn.export import load_saved_model
    from keras_cnn.run_dir import RunDir

    load_saved_model(folder)  # not an export, or a damaged one: one line
    record = RunDir(folder).read_record()
    present = [
        f for f in FORMATS.values() if f.name != "savedmodel" and os.path.isfile(os.path.join(folder, f.filename))
    ]
    previous = {}
    if os.path.isfile(os.path.join(folder, REPORT)):
        with open(os.path.join(folder, REPORT)) as f:
            previous = {name: conversion_details(row) for name, row in json.load(f).get("formats", {}).items()}
    request = deploy_request(record, [FORMATS["savedmodel"], *present], 0)
    shape = tuple(record["data"]["image_shape"])
    return score_folder(folder, request.formats, previous, request.validation, sample_images(request, shape))


def conversion_details(row):
    measured = {"file", "size_bytes", "validation_accuracy", "top1_agreement", "max_abs_probability_difference"}
    return {k: v for k, v in row.items() if k not in measured and not k.startswith(("latency", "images_per_s"))}


def benchmark_pipeline(args, emit):
    """The input pipeline alone: normalized float32 batches ready for the model, images/s per measurement.

    Without --image-size: the in-memory path (decode once, then shuffle, crop, flip, normalize,
    batch), per epoch after the first. With --image-size: the streaming path at that resolution
    (files or prepared shards read and decoded every batch; random-resized-crop and flip, or with
    --eval the center crop), --repeats measurements of --steps batches after --warmup, interleaved
    with ../shared/bench/torch_pipeline_reference.py when --vs-torch is given.
    """
    streaming = args.image_size is not None
    cfg = DataConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        crop_padding=0 if args.no_augment or streaming else 4,
        flip=not args.no_augment,
        image_size=(args.image_size, args.image_size) if streaming else None,
        cache=args.cache or ("none" if streaming else "auto"),
        augmentation="random_resized_crop" if streaming and not args.no_augment else "standard",
        eval_crop=0.875 if streaming else 1.0,
    )
    start = time.perf_counter()
    data = prepare_data(cfg, verbose=1)
    setup = time.perf_counter() - start
    if not streaming:
        return _in_memory_epochs(args, cfg, data, setup, emit)
    ours, pairs = [], []
    for repeat in range(args.repeats):
        ds = make_dataset(data.train, cfg, training=not args.eval, seed=0, epoch=repeat, normalizer=data.normalizer)
        rate = _images_per_sec(ds, args.warmup, args.steps)
        ours.append(rate)
        emit(
            {
                "framework": "keras_cnn",
                "pipeline": "eval" if args.eval else "train",
                "image_size": args.image_size,
                "batch_size": args.batch_size,
                "source": type(data.train).__name__,
                "images_per_sec": round(rate, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "repeat": repeat,
            }
        )
        if args.vs_torch:
            ref = run_torch_pipeline(args)
            emit({**ref, "repeat": repeat})
            pairs.append(rate / ref["images_per_sec"])
    if pairs:
        emit(
            {
                "ratio": f"keras_cnn / torch DataLoader ({'eval' if args.eval else 'train'})",
                "pairs": len(pairs),
                "min": round(min(pairs), 3),
                "median": round(statistics.median(pairs), 3),
                "max": round(max(pairs), 3),
            }
        )


def _images_per_sec(ds, warmup, steps):
    it = iter(ds.repeat())  # an evaluation epoch ends; the measurement must not
    for _ in range(warmup):
        next(it)
    start, count = time.perf_counter(), 0
    for _ in range(steps):
        count += int(next(it)[0].shape[0])
    return count / (time.perf_counter() - start)


def _in_memory_epochs(args, cfg, data, setup, emit):
    rates = []
    for epoch in range(args.epochs):
        ds = make_dataset(data.train, cfg, training=True, epoch=epoch, normalizer=data.normalizer)
        start = time.perf_counter()
        count = sum(int(x.shape[0]) for x, _ in ds)
        rates.append(count / (time.perf_counter() - start))
    emit(
        {
            "benchmark": "pipeline",
            "dataset": args.dataset,
            "batch_size": args.batch_size,
            "augment": not args.no_augment,
            "train_images": len(data.train),
            "decode_seconds": round(setup, 1),
            "images_per_sec": round(statistics.median(rates)),
            "images_per_sec_per_epoch": [round(r) for r in rates],
            "source": type(data.train).__name__,
        }
    )


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_torch_pipeline(args):
    script = os.path.abspath(
        args.torch_pipeline_reference
        or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "bench", "torch_pipeline_reference.py")
    )
    if not os.path.isfile(script):
        raise UsageError(f"torch pipeline reference not found at {script}; pass --torch-pipeline-reference PATH")
    folder = args.data_dir
    if os.path.isdir(os.path.join(folder, "train")):
        folder = os.path.join(folder, "train")
    command = [
        args.vs_torch,
        script,
        "--data-dir",
        folder,
        "--image-size",
        str(args.image_size),
        "--batch-size",
        str(args.batch_size),
        "--batches",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--workers",
        "2",
    ]
    out = subprocess.run(command + (["--eval"] if args.eval else []), capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        raise UsageError(f"torch pipeline reference failed ({last}); check --vs-torch")
    return json.loads(out.stdout.strip().splitlines()[-1])


def benchmark_keras_folder(args):

    folder = args.data_dir
    if folder and os.path.isdir(os.path.join(folder, "train")):
        folder = os.path.join(folder, "train")
    if not folder or not os.path.isdir(folder):
        raise UsageError("--compare-keras needs --data-dir pointing at an image folder")
    ds = keras.utils.image_dataset_from_directory(
        folder, batch_size=args.batch_size, image_size=(32, 32), verbose=False
    )
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
