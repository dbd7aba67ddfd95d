"""Train a model: python scripts/train.py --model resnet20 --dataset cifar10 --epochs 1

Common fields have flags; every other config field is `--set section.field=value`
(strict: an unknown key or a wrong type is an error). Rerunning the same command with the
same --name resumes the run from its last checkpoint.
"""

import logging

import keras

import keras_cnn
from keras_cnn import smoke
from keras_cnn.cli.common import (
    ArgumentParser,
    add_image_size_arg,
    add_labels_args,
    add_model_args,
    add_tracking_args,
    cli_entry,
    description_of,
    labels_assignments,
    model_assignments,
)
from keras_cnn.config import TrainConfig, apply_overrides
from keras_cnn.data.sources import infer_dataset_name
from keras_cnn.errors import UsageError
from keras_cnn.optimizers import OPTIMIZERS, SCHEDULES, option_help
from keras_cnn.presets import PRESETS, is_folder_preset, preset

# flag -> config path; only flags the user gives override the preset / defaults.
FLAG_FIELDS = {
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "batch_size": "data.batch_size",
    "val_size": "data.val_size",
    "model": "model.name",
    "optimizer": "optimizer.name",
    "learning_rate": "optimizer.learning_rate",
    "schedule": "schedule.name",
    "epochs": "run.epochs",
    "seed": "run.seed",
    "output_dir": "run.output_dir",
    "name": "run.name",
    "strategy": "run.strategy",
    "precision": "run.precision",
    "ema": "ema.enabled",
    "overwrite": "run.overwrite",
    "layer_stats": "run.layer_stats",
    "init_from": "run.init_from",
    "weights": "run.weights",
    "train_bn": "run.train_bn",
    "freeze_epochs": "run.freeze_epochs",
    "unfreeze": "run.unfreeze",
    "backbone_lr_multiplier": "run.backbone_lr_multiplier",
    "class_weight": "optimizer.class_weight",
    "image_size": "data.image_size",
    "data_service": "data.service",
    "track": "run.track",
    "tracking_uri": "run.tracking_uri",
    "experiment": "run.experiment",
    "register": "run.register",
}


def add_fine_tuning_args(parser):
    """Starting weights, the fine-tuning phases and class weights: what a user's own photos need."""
    parser.add_argument(
        "--init-from",
        help="warm start (fine-tuning) from another run directory (of the same model; with another class count "
        "every weight but the classifier's) or a checkpoint .npz",
    )
    parser.add_argument(
        "--weights",
        help="keras_* models: the backbone's starting weights: imagenet (downloaded once into Keras's cache), "
        "none (random, the default), or a .weights.h5, .keras file or keras_cnn run folder",
    )
    parser.add_argument(
        "--train-bn",
        action="store_true",
        default=None,
        help="with --weights: the backbone's BatchNorm layers train (batch statistics, scale and offset) instead "
        "of staying frozen in inference mode, as the Keras transfer-learning guide keeps them",
    )
    parser.add_argument(
        "--freeze-epochs",
        type=int,
        metavar="N",
        help="with --weights or --init-from: the first N epochs train the classifier only, the backbone frozen "
        "(its BatchNorm in inference mode); then --unfreeze",
    )
    parser.add_argument(
        "--unfreeze",
        metavar="all|K",
        help="after --freeze-epochs: all backbone layers train (default), or only the top K that hold weights",
    )
    parser.add_argument(
        "--backbone-lr-multiplier",
        type=float,
        metavar="X",
        help="the backbone trains at X times the classifier's learning rate (default 1; e.g. 0.1), one replica",
    )
    parser.add_argument(
        "--class-weight",
        metavar="balanced|CLASS=W,...",
        help="weigh each training example's loss by its class: balanced (inverse class frequency) or "
        "weights by class name (others 1); evaluation stays unweighted",
    )


def build_parser():
    parser = ArgumentParser(prog="train.py", description=description_of(__doc__))
    parser.add_argument("--preset", help="a named recipe (see --list-presets); <name>-smoke runs in seconds")
    parser.add_argument("--list-presets", action="store_true")
    parser.add_argument("--model", help="model name, e.g. mlp, alexnet, vgg16, resnet20")
    parser.add_argument(
        "--dataset",
        help="mnist, cifar10, ... (default: the --data-dir folder's name, else cifar10; "
        "found via --data-dir, $KERAS_CNN_DATA_DIR or TFDS)",
    )
    parser.add_argument(
        "--data-dir", help="the dataset itself: image folder, labels .csv, .npz file/dir, or TFDS data dir"
    )
    add_labels_args(parser)
    parser.add_argument("--val-size", type=int, help="images carved from training data for validation")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--optimizer", help=option_help(OPTIMIZERS))
    parser.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate")
    parser.add_argument("--schedule", help=option_help(SCHEDULES))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--strategy", help="auto, default, mirrored, multi_worker")
    parser.add_argument(
        "--precision",
        help="auto (default: bfloat16 where the hardware runs it fast), float32, mixed_bfloat16, mixed_float16",
    )
    parser.add_argument("--ema", action="store_true", default=None, help="evaluate and save an EMA of the weights")
    parser.add_argument(
        "--layer-stats",
        action="store_true",
        default=None,
        help="log per-layer sparsity, dead units, norms and update ratios (layer_stats.csv, TensorBoard)",
    )
    add_fine_tuning_args(parser)
    parser.add_argument("--output-dir", help="where run directories go (default runs)")
    parser.add_argument("--name", help="run name (default <model>-<dataset>); the same name resumes")
    parser.add_argument(
        "--overwrite", action="store_true", default=None, help="replace a run of the same name with another config"
    )
    add_image_size_arg(parser)
    parser.add_argument(
        "--data-service",
        metavar="ADDRESS",
        help="a tf.data service dispatcher (grpc://host:port) whose workers do the preprocessing",
    )
    add_tracking_args(parser)
    parser.add_argument(
        "--early-stopping",
        type=int,
        metavar="PATIENCE",
        help="stop when validation loss has not improved for PATIENCE epochs; keep the best epoch's weights",
    )
    parser.add_argument("--quiet", action="store_const", const=0, dest="verbose", help="print nothing but errors")
    parser.add_argument("--verbose", action="store_const", const=2, dest="verbose", help="progress more often")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="any other config field"
    )
    add_model_args(parser)
    return parser


def config_from_args(args):

    cfg = preset(args.preset) if args.preset else TrainConfig()
    labels = labels_assignments(args)  # before the dataset is named after the CSV
    if args.dataset is None and args.data_dir and (not args.preset or is_folder_preset(args.preset)):
        args.dataset = infer_dataset_name(args.data_dir)  # ../shared/data/mnist -> mnist
    for flag, path in FLAG_FIELDS.items():  # one at a time, so a bad value is reported under the flag the user typed
        value = getattr(args, flag, None)
        if isinstance(value, str) and not value.strip():  # usually an unset shell variable: never "the default"
            raise UsageError(f"--{flag.replace('_', '-')} must not be empty")
        if value is not None:
            try:
                cfg = apply_overrides(cfg, [f"{path}={value}"])
            except UsageError as err:
                raise UsageError(str(err).replace(f"--set {path}=", f"--{flag.replace('_', '-')} ")) from None
    return apply_overrides(cfg, labels + model_assignments(args) + smoke.assignments() + list(args.set))


@cli_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.list_presets:
        print("\n".join(f"{name}\n{name}-smoke" for name in sorted(PRESETS)))
        return 0
    verbose = 1 if args.verbose is None else args.verbose
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    cfg = config_from_args(args)
    callbacks = []
    if args.early_stopping is not None:
        if args.early_stopping < 1:
            raise UsageError(f"--early-stopping must be at least 1 epoch, got {args.early_stopping}")
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.early_stopping, restore_best_weights=True)
        )

    result = keras_cnn.train(cfg, callbacks=callbacks, verbose=verbose)
    return 0 if result.status != "diverged" else 1


if __name__ == "__main__":
    raise SystemExit(main())
