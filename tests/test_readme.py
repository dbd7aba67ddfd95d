"""The README is a test: every command in its ```bash and ```python blocks runs, in order, each in a
fresh process, in a folder laid out like a checkout (../shared/data mapped to the committed fixtures),
with KERAS_CNN_SMOKE=1. Lines marked `# not-tested: <reason>` are skipped, and only those."""

import os
import re
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT, child_env

FENCE = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def readme_commands(text):
    """(kind, command) pairs in README order; continuation lines joined, not-tested lines left out."""
    commands = []
    for kind, body in FENCE.findall(text):
        if kind == "python":
            commands.append(("python", body))
            continue
        logical, current = [], ""
        for line in body.splitlines():
            current += line[:-1] + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                logical.append(current)
                current = ""
        for line in logical:
            stripped = line.strip()
            if stripped and not stripped.startswith("#") and "# not-tested:" not in line:
                commands.append(("bash", stripped))
    return commands


COMMANDS = readme_commands((ROOT / "README.md").read_text())


def test_the_readme_marks_only_what_cannot_run_here():
    text = (ROOT / "README.md").read_text()
    reasons = re.findall(r"# not-tested: (.*)", text)
    assert len(COMMANDS) >= 30 and len(reasons) <= 8, (len(COMMANDS), reasons)
    assert all(reason.strip() for reason in reasons)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A folder laid out like the project beside ../shared, with the fixtures standing in for the data."""
    base = tmp_path_factory.mktemp("readme")
    repo = base / "repo"
    repo.mkdir()
    for name in ("scripts", "tuning", "keras_cnn", "docs", "tests"):
        os.symlink(ROOT / name, repo / name)
    (base / "shared" / "data").mkdir(parents=True)
    for dataset in ("mnist", "cifar10"):
        os.symlink(FIXTURES / dataset, base / "shared" / "data" / dataset)
    return repo


# What a command promises beyond exit 0, keyed by a piece of the command: (files it leaves, relative to
# the checkout; text its standard output holds). The README's own comments say the same.
PROMISES = {
    "cifar_pairs.py": (["pairs/labels.csv", "pairs/images/00110.png"], " pairs in pairs/labels.csv"),
    "--multi-label --model resnet20": (["runs/pairs/saved_model/1/saved_model.pb"], "exact-match accuracy"),
    "evaluate.py --run runs/pairs": (["runs/pairs/eval-validation/per_class.csv"], "mAP"),
    "pairs/images/00110.png": ([], "at or above"),
    "--preset mnist-mlp --data-dir": (
        [
            "runs/mlp-mnist/model.keras",
            "runs/mlp-mnist/saved_model/1/saved_model.pb",
            "runs/runs.csv",
            "runs/mlp-mnist/lr.png",
        ],
        "epoch 1/1",
    ),
    "--model resnet20 --data-dir ../shared/data/cifar10 --epochs 1": (
        ["runs/resnet20-cifar10/config.json", "runs/resnet20-cifar10/history.csv"],
        "epoch 1/1",
    ),
    "--name mlp-100-100": (["runs/mlp-100-100/model.keras"], "epoch 1/1"),
    "--list-presets": ([], "mnist-mlp-smoke"),
    "--name longer --epochs 2": (["runs/longer/history.csv"], "epoch 1/1"),
    "params.py --list": ([], "resnet20"),
    "--input-shape 64x64x1": ([], "Model: mlp"),
    "--shortcut identity": ([], "269,722"),
    "prepare.py": (["prepared/cifar10"], ""),
    "--run runs/resnet20-cifar10 --export-dir exports": (["exports/resnet20-cifar10/1/saved_model.pb"], ""),
    "--top-k 3": ([], "0000.jpg"),
    "--output ships.csv": (["ships.csv"], ""),
    "--ensemble": (["exports/mlp-pair/1/saved_model.pb"], ""),
    "--tuner random --max-trials 20": (["searches/mlp-mnist-random/trials.csv"], ""),
    "diagnose.py --model mlp": (["diag/diagnostics.json"], "suggested lr"),
    "--peaks": ([], "float32_matmul_gflops"),
    "--track mlflow --register mnist-mlp": (["runs/mlflow.db", "runs/tracked/tracking.json"], "epoch 1/1"),
    "track.py sync runs/tracked": ([], "0 new epoch(s), status finished"),
    "--from-mlflow sqlite:///runs/mlflow.db": ([], "| tracked "),
    "--name tracked-search --track mlflow": (["searches/mlflow.db", "searches/tracked-search/tracking.json"], ""),
    "--format tflite,tflite-fp16,tflite-int8,onnx": (
        [f"exports/resnet20-cifar10/3/{f}" for f in ("model.tflite", "model_fp16.tflite", "model_int8.tflite")]
        + ["exports/resnet20-cifar10/3/model.onnx", "exports/resnet20-cifar10/3/export_report.json"],
        "| tflite-int8 |",
    ),
    "--model exports/resnet20-cifar10/3/model_int8.tflite": (
        ["exports/resnet20-cifar10/3/eval-validation-model_int8_tflite/evaluation.json"],
        "accuracy",
    ),
    "--model exports/resnet20-cifar10/3/model.onnx": ([], "0000.jpg: "),
    "--mode serve": ([], "| onnx |"),
}


def test_every_promise_names_a_readme_command():
    for key in PROMISES:
        assert any(key in command for _, command in COMMANDS), key


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[f"{i}:{c[1][:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command(index, checkout):
    kind, command = COMMANDS[index]
    argv = ["bash", "-c", command] if kind == "bash" else [sys.executable, "-c", command]
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    done = subprocess.run(
        argv,
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(KERAS_CNN_SMOKE="1", PATH=path, KERAS_CNN_DATA_DIR=""),
    )
    assert done.returncode == 0, f"{command}\n--- exit {done.returncode}\n{done.stdout[-1500:]}\n{done.stderr[-2500:]}"
    assert "Traceback" not in done.stderr, done.stderr[-2500:]
    for key, (files, text) in PROMISES.items():
        if key in command:
            missing = [f for f in files if not (checkout / f).exists()]
            assert not missing and text in done.stdout, (
                f"{command}: missing {missing} or {text!r}\n{done.stdout[-1500:]}"
            )
