"""Argument parsing shared by the CLIs: one-line errors, model options, shapes."""
import argparse
import os

from keras_cnn.errors import UsageError


def quiet_tensorflow():
    """Keep TensorFlow's start-up chatter off the terminal; KERAS_CNN_VERBOSE=1 shows it.

    TF 2.21 logs oneDNN/CUDA notices before absl logging is initialised, where
    TF_CPP_MIN_LOG_LEVEL cannot reach them, so stderr is muted while TF loads and probes
    its devices. An import failure still raises, and its traceback prints after the restore.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_CNN_VERBOSE"):
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
        tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main(argv) is testable in-process.

    No abbreviations: `--epoch 3` must be an error, not a silent `--epochs 3`.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def parse_shape(text):
    """'32x32x3' -> (32, 32, 3); 'HxW' means one channel."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"input shape {text!r} is not HxWxC, e.g. 32x32x3") from None
    if len(dims) == 2:
        dims = (*dims, 1)
    if len(dims) != 3 or min(dims) < 1:
        raise UsageError(f"input shape {text!r} is not HxWxC with positive sizes, e.g. 32x32x3")
    return dims


def add_model_args(parser):
    """Flags for the model options every family shares (only the ones given are passed on)."""
    group = parser.add_argument_group("model options (defaults depend on the model)")
    group.add_argument("--hidden", type=int, nargs="+", help="MLP hidden sizes, e.g. --hidden 100 100")
    group.add_argument("--activation", help="relu, leaky_relu, prelu, elu, selu, tanh, sigmoid, maxout")
    group.add_argument("--kernel-initializer", help="e.g. he_normal, glorot_uniform, random_normal")
    group.add_argument("--dropout", type=float, help="dropout rate in [0, 1)")
    group.add_argument("--weight-decay", type=float, help="L2 weight decay (SGD-style coefficient)")
    group.add_argument(
        "--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="batch normalization"
    )
    group.add_argument("--shortcut", help="ResNet shortcut: projection (B) or identity (A)")
    group.add_argument("--filters", type=int, nargs="+", help="cnn conv widths, e.g. --filters 32 32 64 64")


MODEL_ARG_NAMES = ("hidden", "activation", "kernel_initializer", "dropout", "weight_decay", "batch_norm", "shortcut", "filters")


def model_options_from_args(args):
    return {k: getattr(args, k) for k in MODEL_ARG_NAMES if getattr(args, k) is not None}
