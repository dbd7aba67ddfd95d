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
