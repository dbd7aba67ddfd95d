"""What every CLI shares: the entry wrapper (one line per error, never a traceback), argument parsing,
model options, shapes."""
import argparse
import datetime
import errno
import functools
import os
import sys
import traceback

from keras_cnn import interrupts, run_dir
from keras_cnn.cache import cache_dir
from keras_cnn.config import is_path_component
from keras_cnn.errors import PATH_ERRORS, SPACE_ERRORS, Interrupted, UsageError


def cli_entry(main):
    """Wrap a CLI's main(argv): SIGINT/SIGTERM stop at a safe point, and every error ends in one line.

    UsageError (something to fix) and errors the machine causes (a full disk, no memory) print
    `error: ...` and return 2; an interrupt prints where it stopped and returns 130 or 143; an
    unexpected internal error prints one line naming a log file that holds the traceback (in the
    run's folder when there is one, else in the cache folder) and returns 1.
    """

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            with interrupts.handle_signals():
                return main(argv)
        except UsageError as err:
            return _fail(f"error: {err}", 2)
        except Interrupted as err:
            return _fail(str(err), err.exit_status)
        except KeyboardInterrupt:
            return _fail("interrupted", 130)
        except (OSError, MemoryError) as err:
            message = _machine_error(err)
            return _fail(message, 2) if message else _crash(err)
        except Exception as err:  # the last line of defence
            message = _machine_error(err)
            return _fail(message, 2) if message else _crash(err)

    return wrapper


def _fail(line, status):
    print(line, file=sys.stderr, flush=True)
    return status


def _machine_error(err):
    """One line for what the machine did (no room, no memory, an unusable path), or None."""
    import tensorflow as tf

    if isinstance(err, (MemoryError, tf.errors.ResourceExhaustedError)):
        return "error: out of memory; lower --batch-size or use a smaller model or image size"
    if isinstance(err, OSError):
        where = f" {err.filename}" if err.filename else ""
        if err.errno in SPACE_ERRORS:
            return f"error: cannot write{where} ({err.strerror}); free some space or choose another output directory"
        if err.errno in PATH_ERRORS or err.errno in (errno.EISDIR, errno.ENOENT, errno.ENAMETOOLONG, errno.ELOOP):
            return f"error: cannot use{where} ({err.strerror}); check the path or choose another one"
        if err.errno == errno.EIO:
            return f"error: input/output error{where}; the disk or network file system failed, retry or move the data"
    return None


def _crash(err):
    """Save the traceback where the user will look, and say where in one line."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = "".join(traceback.format_exception(err))
    for folder in (run_dir.active_run, None):
        try:
            directory = folder if folder and os.path.isdir(folder) else cache_dir("crashes")
            path = os.path.join(directory, f"crash-{stamp}-{os.getpid()}.log")
            with open(path, "w") as f:
                f.write(text)
            break
        except OSError:
            path = None
    where = f"the traceback is in {path}" if path else "the traceback could not be saved"
    return _fail(f"error: internal error ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                 f"{where}; please report it", 1)


def folder_name(name, what):
    """`name` if it is one folder name (no separators, not '.' or '..'), so nothing lands outside the output folder."""
    if not is_path_component(name):
        raise UsageError(f"{what} {name!r} must be one folder name: no '/', not '.' or '..', not empty")
    return name


def at_least(value, flag, low=1):
    if value is not None and value < low:
        raise UsageError(f"{flag} must be at least {low}, got {value}")
    return value


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
    """Flags for the model options the families share (only the ones given are passed on)."""
    group = parser.add_argument_group("model options (defaults depend on the model; see params.py --model NAME)")
    group.add_argument("--hidden", type=int, nargs="+", help="MLP hidden sizes, e.g. --hidden 100 100")
    group.add_argument("--activation", help="relu, leaky_relu, prelu, elu, selu, tanh, sigmoid, maxout, noisy_relu")
    group.add_argument("--kernel-initializer", help="e.g. he_normal, glorot_uniform, lecun_uniform, random_normal, truncated_normal")
    group.add_argument("--init-scale", type=float,
                       help="the initializer's stddev (random/truncated normal), limit (uniform), gain, or variance factor")
    group.add_argument("--bias-init", type=float, help="constant for hidden biases, e.g. 0.01 for ReLU units")
    group.add_argument("--dropout", type=float, help="dropout rate in [0, 1)")
    group.add_argument("--weight-decay", type=float, help="L2 weight decay (SGD-style coefficient)")
    group.add_argument("--decay-scope", help="all (every kernel, default) or dense (the hidden fully connected layers only)")
    group.add_argument(
        "--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="batch normalization"
    )
    group.add_argument("--shortcut", help="ResNet shortcut: projection (B) or identity (A)")
    group.add_argument("--filters", type=int, nargs="+", help="cnn conv widths, e.g. --filters 32 32 64 64")
    group.add_argument("--kernel-size", type=int, help="cnn convolution size, e.g. 3, 5 or 7")
    group.add_argument("--pool-every", type=int, help="cnn: a 2x2 max pool after every N convs")
    group.add_argument("--lrn", action=argparse.BooleanOptionalAction, default=None,
                       help="alexnet: local response normalization")
    group.add_argument("--lrn-depth-radius", type=int, help="alexnet LRN: channels each side (4)")
    group.add_argument("--lrn-bias", type=float, help="alexnet LRN: bias (1.0)")
    group.add_argument("--lrn-alpha", type=float, help="alexnet LRN: alpha, multiplying the plain sum (0.001/9)")
    group.add_argument("--lrn-beta", type=float, help="alexnet LRN: beta (0.75)")


MODEL_ARG_NAMES = ("hidden", "activation", "kernel_initializer", "init_scale", "bias_init", "dropout", "weight_decay",
                   "decay_scope", "batch_norm", "shortcut", "filters", "kernel_size", "pool_every", "lrn", "lrn_depth_radius",
                   "lrn_bias", "lrn_alpha", "lrn_beta")


def model_options_from_args(args):
    return {k: getattr(args, k) for k in MODEL_ARG_NAMES if getattr(args, k) is not None}
