"""Babysitting checks before a long run (CS231n lecture 6): a pass/warn/fail table.

    python scripts/diagnose.py --model resnet20 --dataset cifar10 --data-dir ../shared/data/cifar10
    python scripts/diagnose.py --compare-init --output-dir diag
    python scripts/diagnose.py --run runs/resnet20-cifar10 --visualize cat.jpg --output-dir diag

Runs, in order: initial loss vs ln(classes) (and that regularization raises it), overfitting
20 examples, a learning-rate range test (lr_range.png, `suggested lr ...`), activation
statistics at init (activations.png), update/weight ratios, and a float64 gradient check.
Writes diagnostics.csv and diagnostics.json to --output-dir. Exit status 1 when a check fails.
With --run RUN --visualize IMAGE: what the trained convnet learned (filters.png: its first layer's
filters; activation_maps.png: the maps of --layers for IMAGE; saliency.png: the gradient of the
predicted (or --class) score with respect to IMAGE's pixels).
"""

import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from keras_cnn import diagnostics as d
from keras_cnn import visualize
from keras_cnn.cli.common import (
    ArgumentParser,
    add_image_size_arg,
    add_labels_args,
    add_model_args,
    at_least,
    cli_entry,
    description_of,
    image_size_assignments,
    labels_assignments,
    model_assignments,
)
from keras_cnn.config import TrainConfig, apply_overrides, validate
from keras_cnn.data import prepare_data
from keras_cnn.data.pipeline import eval_inputs
from keras_cnn.data.sources import infer_dataset_name
from keras_cnn.diagnostics.checks import STOPPED
from keras_cnn.errors import UsageError
from keras_cnn.interrupts import raise_if_requested
from keras_cnn.io import atomic_write, csv_text, write_json
from keras_cnn.models import create_model
from keras_cnn.models import model_options as options_of
from keras_cnn.run_dir import RunDir
from keras_cnn.smoke import cap
from keras_cnn.training.build import model_options
from keras_cnn.training.precision import precision_policy


def build_parser():
    parser = ArgumentParser(prog="diagnose.py", description=description_of(__doc__))
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--dataset", help="dataset name (default: the --data-dir folder's name, else mnist)")
    parser.add_argument("--data-dir")
    add_labels_args(parser)
    add_image_size_arg(parser)
    parser.add_argument("--output-dir", default="diagnostics")
    parser.add_argument(
        "--learning-rate",
        "--lr",
        type=float,
        default=0.01,
        dest="learning_rate",
        help="SGD learning rate for the update/weight ratio check",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="the batch the checks train with, and the LR advice is for (default 128, less where the "
        "model's activations at this image size would pass ~512 MB)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=1024,
        help="training images the checks use, drawn at random over the classes (default 1024; fewer where "
        "they would pass 128 MB as float32)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", help="as train.py's --precision")
    parser.add_argument("--compare-init", action="store_true", help="draw the initialization experiment instead")
    parser.add_argument("--activation-for-compare", nargs="+", default=["tanh", "relu"])
    parser.add_argument("--run", help="a trained run, for --visualize")
    parser.add_argument(
        "--visualize", metavar="IMAGE", help="filters, activation maps and saliency of --run's model for IMAGE"
    )
    parser.add_argument(
        "--layers", nargs="+", help="layers whose activation maps to draw (default: the first three activations)"
    )
    parser.add_argument("--class", dest="class_name", help="saliency for this class (default: the predicted one)")
    add_model_args(parser)
    return parser


@cli_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    at_least(args.batch_size, "--batch-size")
    at_least(args.sample, "--sample", 20)  # the overfitting check takes 20
    if not (args.compare_init or args.visualize or args.run):
        diagnostic_config(args)  # a bad flag is refused before the output folder exists
    try:
        os.makedirs(args.output_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {args.output_dir} ({err.strerror}); choose a writable --output-dir") from None

    keras.utils.set_random_seed(args.seed)
    if args.compare_init:
        path = os.path.join(args.output_dir, "compare_init.png")
        table = d.compare_init(path, activations=tuple(args.activation_for_compare))
        atomic_write(os.path.join(args.output_dir, "compare_init.csv"), csv_text(table, list(table[0])))
        for row in table:
            stds = [v for k, v in row.items() if k.endswith("_std")]
            print(
                f"{row['activation']:<5} {row['initializer']:<24} std by layer: " + " ".join(f"{s:.3g}" for s in stds)
            )
        print(f"picture: {path}")
        return 0

    if args.visualize or args.run:
        return visualize_run(args)
    checks, batch = run_checks(args)
    width = max(len(c.name) for c in checks)
    print(f"{'check':<{width}}  status  detail")
    for c in checks:
        print(f"{c.name:<{width}}  {c.status:<6}  {c.detail}")
    atomic_write(
        os.path.join(args.output_dir, "diagnostics.csv"),
        csv_text([c.row() for c in checks], ["check", "status", "value", "detail"]),
    )
    write_json(os.path.join(args.output_dir, "diagnostics.json"), {"checks": [c.row() for c in checks]})
    lr = next(c for c in checks if c.name == "lr_range")
    print(lr_advice(lr.value, batch))
    return 0 if all(c.status != "fail" for c in checks) else 1


def lr_advice(rate, batch_size):
    """The LR range test's rate, with what it assumed: the range test trains SGD with momentum 0.9."""
    return (
        f"suggested lr {rate:.2g} (SGD, momentum 0.9, batch {batch_size}; for batch B scale it by B/{batch_size}; "
        "Adam and AdamW usually want 10-100x less: start them near 1e-3)"
    )


# Bytes of layer outputs (float32, as activation_bytes counts them) one batch of the checks may have. A
# training step holds about twice that with its gradients: resnet20 at 224 px (133 MB of outputs per
# image) measured ~250 MB per image of peak memory, so 512 MB keeps diagnose under ~2 GB in all.
ACTIVATION_BUDGET = 512 << 20


def activation_bytes(model):
    """Bytes of every layer's output for one image (float32): about what a training step keeps for
    the backward pass (megabytes per image for a convnet at photo sizes, kilobytes for an MLP)."""
    total = 0
    for layer in model.layers:
        for out in keras.tree.flatten(layer.output):
            total += 4 * int(np.prod([d or 1 for d in out.shape[1:]]))
    return total


def check_batch(args, per_image):
    """(batch size, probe size) for the checks: the flag's batch, or 128 brought down to what fits
    ACTIVATION_BUDGET given `per_image` bytes of activations."""
    fits = max(2, ACTIVATION_BUDGET // max(per_image, 1))
    batch = args.batch_size or cap(min(128, fits), 32)  # KERAS_CNN_SMOKE=1: seconds of the same checks
    return batch, int(min(256, max(20, fits)))


def announce_smaller_batch(model, shape, batch, per_image):
    print(
        f"batch {batch}, not 128: {model} at {shape[0]}x{shape[1]} holds "
        f"~{per_image / 1e6:.0f} MB of activations per image (--batch-size to choose)",
        file=sys.stderr,
    )


def diagnostic_config(args):
    """The TrainConfig every check builds from: the flags' model, data and precision."""
    if labels_assignments(args):
        raise UsageError(
            "diagnose.py's checks (initial loss, gradients, ...) assume one softmax class per image; "
            "--multi-label runs are checked by train.py's mAP instead (leave --multi-label out here)"
        )
    dataset = args.dataset or (infer_dataset_name(args.data_dir) if args.data_dir else "mnist")
    assignments = [
        f"model.name={args.model}",
        f"data.dataset={dataset}",
        f"run.seed={args.seed}",
        f"run.precision={args.precision}",
        "optimizer.momentum=0.9",
    ]
    if args.data_dir:
        assignments.append(f"data.data_dir={args.data_dir}")
    # Only the sample is decoded (a stratified subset), and hardly any validation images: the checks
    # train on the sample alone, so a 224-px folder of 50,000 photos costs what 1,024 of them do.
    assignments += [f"data.train_limit={args.sample}", "data.val_limit=16"]
    assignments += image_size_assignments(args)
    return validate(apply_overrides(TrainConfig(), assignments + model_assignments(args)))


def check_sample(data, cfg, *, memory=128 << 20):
    """Seeded random training images (normalized) and labels for the checks, in random order.

    Random, not the split's first images: an image folder lists its files class by class, so those
    would all be one class (the initial loss and the LR range test then measure nothing). All of
    the (already limited) training split, within `memory` bytes of float32 inputs and at least 20
    (what the overfitting check takes).
    """
    rng = np.random.default_rng(cfg.run.seed)
    per_image = 4 * int(np.prod(data.input_shape))
    count = min(len(data.train), max(20, memory // per_image))
    sample = data.train.take(np.sort(rng.choice(len(data.train), count, replace=False)))
    order = rng.permutation(count)
    images = eval_inputs(sample.sample(count), cfg.data, data.normalizer).numpy()
    return images[order], sample.labels[order]


class Steps:
    """One line on stderr as each check starts and ends, with its time: the checks take minutes on
    large images, and a silent terminal looks hung."""

    def __init__(self, total):
        self.total, self.done = total, 0

    def __call__(self, what, work):
        raise_if_requested(f"before {what}", STOPPED)
        self.done += 1
        began = time.monotonic()
        print(f"[{self.done}/{self.total}] {what} ...", end="", file=sys.stderr, flush=True)
        result = work()
        print(f" {time.monotonic() - began:.0f}s", file=sys.stderr, flush=True)
        return result


def run_checks(args):
    cfg = diagnostic_config(args)
    step = Steps(8)
    data = step(f"reading {args.sample:,} training images", lambda: prepare_data(cfg.data))
    shape, k = data.input_shape, data.num_classes

    def build(**extra):
        return create_model(cfg.model.name, shape, k, **{**model_options(cfg), **extra})

    model = build()
    per_image = activation_bytes(model)
    batch, probe_size = check_batch(args, per_image)
    if not args.batch_size and batch < 128:
        announce_smaller_batch(cfg.model.name, shape, batch, per_image)
    cfg = cfg.replace(data={"batch_size": batch})
    images, labels = check_sample(data, cfg)
    del data  # the decoded sample: only the normalized images above are used from here on
    probe, probe_labels = tf.constant(images[:probe_size]), tf.constant(labels[:probe_size])
    checks = [
        step("initial loss", lambda: d.initial_loss_check(model, probe, probe_labels, k, batch_size=batch)),
        step(
            "regularization raises the loss",
            lambda: d.regularization_raises_loss_check(
                model, build(weight_decay=1e-2), probe, probe_labels, batch_size=batch
            ),
        ),
        step(
            "overfitting 20 images",
            lambda: d.overfit_check(cfg, images[:20], labels[:20], k, max_passes=cap(300, 30), batch_size=batch),
        ),
        step(
            "learning-rate range test",
            lambda: d.lr_range_test(
                cfg, images, labels, k, steps=cap(200, 30), plot_path=os.path.join(args.output_dir, "lr_range.png")
            ),
        ),
    ]
    stats = step("activation statistics", lambda: d.activation_statistics(model, probe, batch_size=batch))
    if stats:
        d.plot_activation_histograms(stats, os.path.join(args.output_dir, "activations.png"))
        rows = [{key: v for key, v in s.items() if key != "values"} for s in stats]
        atomic_write(os.path.join(args.output_dir, "activations.csv"), csv_text(rows, list(rows[0])))
    checks.append(d.activation_check(stats))
    checks.append(
        step(
            "update/weight ratios",
            lambda: d.update_ratio_check(cfg, images, labels, k, learning_rate=args.learning_rate)[0],
        )
    )
    small, inputs = gradient_check_model(cfg, shape, k, images[:2])
    checks.append(
        step(
            f"gradient check (float64, {inputs.shape[1]}x{inputs.shape[2]})",
            lambda: d.gradient_check(small, inputs, labels[:2], per_variable=cap(6, 1))[0],
        )
    )
    return checks, batch


GRADIENT_CHECK_SIDE = 64  # px: in float64 at photo sizes, each of the check's hundreds of passes takes ~0.5 s


def gradient_check_model(cfg, shape, num_classes, images):
    """(float64 model without dropout, float64 inputs) for the gradient check: the model at
    GRADIENT_CHECK_SIDE px with the images resized to it, where that model has exactly the same
    weights (a convnet that pools globally); else the model at the run's own size."""
    no_dropout = {"dropout": 0.0} if "dropout" in options_of(cfg.model.name) else {}
    options = {**model_options(cfg), **no_dropout}
    with precision_policy("float64"):
        full = create_model(cfg.model.name, shape, num_classes, **options)
        if min(shape[:2]) > GRADIENT_CHECK_SIDE:
            side = (GRADIENT_CHECK_SIDE, GRADIENT_CHECK_SIDE, shape[2])
            try:
                smaller = create_model(cfg.model.name, side, num_classes, **options)
            except ValueError:  # a net that cannot take the smaller input (too many poolings)
                smaller = None
            if smaller is not None and _weight_shapes(smaller) == _weight_shapes(full):
                resized = tf.image.resize(images, side[:2], antialias=True)
                return smaller, tf.cast(resized, tf.float64).numpy()
    return full, images.astype("float64")


def _weight_shapes(model):
    return [tuple(w.shape) for w in model.weights]


def visualize_run(args):
    if not (args.visualize and args.run):
        raise UsageError("--visualize IMAGE and --run RUN go together")
    run = RunDir(args.run)
    model, normalizer = run.load_model(), run.load_normalizer()
    names = run.data_record()["class_names"]
    height, width, channels = model.input_shape[1:]
    try:
        with Image.open(args.visualize) as img:
            img = img.convert("RGB" if channels == 3 else "L").resize((width, height), Image.BILINEAR)
            pixels = np.asarray(img, np.uint8).reshape(height, width, channels)
    except OSError as err:
        raise UsageError(f"cannot read {args.visualize} as an image ({err})") from None
    x = normalizer(pixels[None])[0].numpy()
    predicted = int(np.argmax(model(x[None], training=False)[0]))
    if args.class_name is not None and args.class_name not in names:
        raise UsageError(f"--class {args.class_name!r} is not one of the run's classes: {', '.join(names)}")
    target = names.index(args.class_name) if args.class_name else predicted
    layers = args.layers or [layer.name for layer in d.activation_layers(model)][:3]
    filters, first = visualize.first_layer_filters(model)
    out = args.output_dir
    visualize.plot_filters(filters, first, os.path.join(out, "filters.png"))
    visualize.plot_activation_maps(
        visualize.activation_maps(model, x, layers), os.path.join(out, "activation_maps.png")
    )
    visualize.plot_saliency(
        pixels, visualize.class_saliency(model, x, target), names[target], os.path.join(out, "saliency.png")
    )
    print(
        f"predicted {names[predicted]}; filters.png ({len(filters)} of {first}), activation_maps.png ({', '.join(layers)}), "
        f"saliency.png (class {names[target]}) in {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
