"""What every CLI shares: the entry wrapper (one line per error, never a traceback), argument parsing,
model options, shapes."""

import argparse
import datetime
import errno
import functools
import os
import sys
import traceback
import typing
from typing import Any

from keras_cnn import interrupts, rules, run_dir
from keras_cnn.cache import cache_dir
from keras_cnn.config import is_path_component
from keras_cnn.errors import PATH_ERRORS, SPACE_ERRORS, Interrupted, UsageError
from keras_cnn.models import all_options


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
    return _fail(
        f"error: internal error ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
        f"{where}; please report it",
        1,
    )


def folder_name(name, what):
    """`name` if it is one folder name (no separators, not '.' or '..'), so nothing lands outside the output folder."""
    if not is_path_component(name):
        raise UsageError(f"{what} {name!r} must be one folder name: no '/', not '.' or '..', not empty")
    return name


def at_least(value, flag, low=1):
    if value is not None and value < low:
        raise UsageError(f"{flag} must be at least {low}, got {value}")
    return value


def description_of(doc):
    """A command's --help description: its docstring's first paragraph, whole (its first line alone
    can stop mid-sentence)."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


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


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """One flag per model option in the registry (`--hidden`, `--shortcut`, ...), typed by the option,
    its help from the option's Spec; only the flags given are passed on."""
    group = parser.add_argument_group("model options (defaults depend on the model; see params.py --list)")
    for option in all_options().values():
        flag = "--" + option.name.replace("_", "-")
        hint, _ = rules.optional(option.type)
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=option.spec.help)
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            group.add_argument(flag, type=item, nargs="+", help=option.spec.help)
        else:
            group.add_argument(flag, type=hint, help=option.spec.help)


def model_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The model options given as flags, by option name (a list flag as a tuple)."""
    given = {name: getattr(args, name, None) for name in all_options()}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None}


def model_assignments(args: argparse.Namespace) -> list[str]:
    """The model flags given as config assignments: `model.hidden=100,100`, or the field that feeds
    the option (`--weight-decay` sets optimizer.weight_decay)."""
    options = all_options()
    out = []
    for name, value in model_flags(args).items():
        key = options[name].spec.fed_by or f"model.{name}"
        out.append(f"{key}={','.join(map(str, value)) if isinstance(value, tuple) else value}")
    return out


def add_tracking_args(parser, register=True):
    """--track and where to: the run.track, run.tracking_uri, run.experiment (and run.register) fields."""
    parser.add_argument(
        "--track", choices=("none", "mlflow"), help="log the run to MLflow (pip install -e '.[mlflow]')"
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="the MLflow server or store (default $MLFLOW_TRACKING_URI, else sqlite OUTPUT_DIR/mlflow.db)",
    )
    parser.add_argument("--experiment", metavar="NAME", help="the MLflow experiment (default keras_cnn-<dataset>)")
    if register:
        parser.add_argument("--register", metavar="NAME", help="register the exported model under NAME in MLflow")


def tracking_assignments(args):
    """--track, --tracking-uri, --experiment as config fields (where a run is tracked is not part of what it is)."""
    fields = {"run.track": args.track, "run.tracking_uri": args.tracking_uri, "run.experiment": args.experiment}
    return [f"{k}={v}" for k, v in fields.items() if v is not None]


def image_size(text):
    """'224' -> '224x224'; 'HxW' as given (checked when the config is built)."""
    text = text.strip().lower()
    return f"{text}x{text}" if text.isdigit() else text


def add_image_size_arg(parser):
    """--image-size, the same flag on every command that reads images (train, tune, sweep, diagnose, prepare)."""
    parser.add_argument(
        "--image-size", type=image_size, metavar="SIZE", help="resize every image to SIZE (224) or HxW (224x160)"
    )


def add_labels_args(parser, multi_label=True):
    """--labels and --multi-label, the same on every command that trains (train, tune, sweep, diagnose);
    evaluate.py takes --labels alone (a run knows whether it is multi-label)."""
    parser.add_argument(
        "--labels",
        metavar="FILE.csv",
        help="the dataset as a CSV of path,label rows (paths relative to the CSV; an optional split column "
        "says train, validation or test): the same as --data-dir FILE.csv",
    )
    if not multi_label:
        return
    parser.add_argument(
        "--multi-label",
        action="store_true",
        default=None,
        help="labels hold ;-separated classes (a;b): sigmoid outputs, binary cross-entropy, mAP and F1 at a "
        "threshold chosen on validation",
    )


def labels_assignments(args):
    """--labels becomes --data-dir (one data source, named once); --multi-label its config field."""
    labels = getattr(args, "labels", None)
    if labels is not None:
        if not labels.strip():
            raise UsageError("--labels must not be empty")
        if getattr(args, "data_dir", None) and os.path.abspath(args.data_dir) != os.path.abspath(labels):
            raise UsageError(f"--labels {labels} and --data-dir {args.data_dir} name two datasets; pass one")
        if not labels.lower().endswith(".csv"):
            raise UsageError(f"--labels takes a .csv file of path,label rows, not {labels}")
        if not os.path.isfile(labels):
            raise UsageError(f"--labels {labels} does not exist; give the CSV of path,label rows")
        args.data_dir = labels
    return ["data.multi_label=true"] if getattr(args, "multi_label", None) else []


def image_size_assignments(args):
    return [f"data.image_size={args.image_size}"] if getattr(args, "image_size", None) else []
