"""`--help` is answered from stored text without importing TensorFlow, and that text is what each
command's parser prints (so it cannot drift from the flags)."""

import os
import subprocess
import sys

import pytest

from keras_cnn.cli.help_texts import HELP
from keras_cnn.cli.launch import render_help, run
from keras_cnn.commands import COMMANDS, command_of_program

from conftest import ROOT


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_stored_help_is_what_the_parser_prints(command):
    assert HELP[command] == render_help(command), (
        f"the stored --help of {command} is out of date: run python -m keras_cnn.cli.launch --write-help"
    )


def test_help_alone_prints_the_stored_text_and_anything_else_reaches_the_parser(capsys):
    assert run("params", ["--help"]) == 0
    assert capsys.readouterr().out == HELP["params"]
    assert run("params", ["--no-such-flag"]) == 2  # the full path: argparse refuses it in one line
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_programs_are_recognised_only_by_their_own_names():
    assert command_of_program("/venv/bin/keras-cnn-train") == "train"
    assert command_of_program(str(ROOT / "scripts" / "tune.py")) == "tune"
    assert command_of_program("/elsewhere/train.py") is None  # a user's own script of that name
    assert command_of_program("/venv/bin/keras-cnn-nothing") is None


def _run_python(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("program", ["scripts/train.py", "scripts/diagnose.py", "keras-cnn-tune"])
def test_help_in_a_fresh_process_imports_no_tensorflow(program):
    if program.startswith("keras-cnn-"):
        path = os.path.join(os.path.dirname(sys.executable), program)
        if not os.path.exists(path):
            pytest.skip(f"{program} is not installed in this environment")
        args = ["-X", "importtime", path, "--help"]
    else:
        args = ["-X", "importtime", program, "--help"]
    done = _run_python(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    command = program.rsplit("/", 1)[-1].removeprefix("keras-cnn-").removesuffix(".py")
    assert done.stdout == HELP[command]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "keras_cnn" in imported and not {"tensorflow", "keras"} & imported


def test_a_help_only_start_still_gives_the_whole_package_on_use():
    code = (
        "import sys; sys.argv = ['keras-cnn-train', '--help']\n"
        "import keras_cnn\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print(keras_cnn.train.__module__, keras_cnn.RunResult.__name__)\n"
    )
    done = _run_python("-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["keras_cnn.api", "RunResult"]
