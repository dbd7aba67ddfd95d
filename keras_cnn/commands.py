"""The command-line tools by name, and whether this process was started only to print one's help.

Standard library only: `keras_cnn/__init__.py` asks `launched_for_help()` before it imports
TensorFlow, so `train.py --help` prints its stored text (keras_cnn/cli/help_texts.py) in a fraction
of a second instead of waiting seconds for TensorFlow to load.
"""

import os
import sys

# command -> the module whose main(argv) runs it
COMMANDS = {
    "train": "keras_cnn.cli.train",
    "evaluate": "keras_cnn.cli.evaluate",
    "export": "keras_cnn.cli.export",
    "predict": "keras_cnn.cli.predict",
    "params": "keras_cnn.cli.params",
    "diagnose": "keras_cnn.cli.diagnose",
    "prepare": "keras_cnn.cli.prepare",
    "report": "keras_cnn.cli.report",
    "track": "keras_cnn.cli.track",
    "benchmark": "keras_cnn.cli.benchmark",
    "cache": "keras_cnn.cli.cache",
    "tune": "tuning.tune",
    "sweep": "tuning.sweep",
}
HELP_FLAGS = (["-h"], ["--help"])
_SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


def asks_for_help_only(argv):
    """`-h` or `--help` and nothing else: the one case the stored text answers exactly (with other
    arguments argparse may fail on one of them first, so those take the full path)."""
    return list(argv) in HELP_FLAGS


def command_of_program(program):
    """The command a program path runs (`keras-cnn-train`, `scripts/train.py`), or None."""
    name = os.path.basename(program)
    if name.startswith("keras-cnn-") and name[len("keras-cnn-") :] in COMMANDS:
        return name[len("keras-cnn-") :]
    stem, ext = os.path.splitext(name)
    if ext == ".py" and stem in COMMANDS and os.path.dirname(os.path.abspath(program)) == _SCRIPTS:
        return stem
    return None


def launched_for_help():
    """True when this process is one of keras_cnn's commands asked only for its help."""
    return asks_for_help_only(sys.argv[1:]) and command_of_program(sys.argv[0] if sys.argv else "") is not None
