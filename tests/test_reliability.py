"""Fault injection: SIGKILL training runs and searches at seeded moments, rerun, lose nothing (`-m slow`).

20 training cycles and 10 search cycles. Kills land at random times and, through KERAS_CNN_FAULT, exactly
between writing a temp file and renaming it, or just before appending to runs.csv. The default run
has one of each kind of training kill in test_processes.py, and a killed search in test_tuning.py.
"""

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tuning.trials import read_trials

from conftest import ROOT, child_env


def train_argv(data, out):
    return [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "--model",
        "mlp",
        "--hidden",
        "64",
        "--dataset",
        "mnist",
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--name",
        "r",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--ema",
        "--precision",
        "float32",
        "--set",
        "run.checkpoint_every_steps=10",
        "--set",
        "run.steps_per_call=2",
        "--set",
        "model.dropout=0.1",
    ]


def kill_once(argv, mode, rng, span):
    """Run argv and SIGKILL it, at a random moment or at a fault point; returns how, and asserts the
    kill landed (a process that exited first would make the cycle test nothing)."""
    if mode == "random":
        delay = rng.uniform(*span)  # a fraction of an uninterrupted run's wall time
        for _ in range(4):  # a run faster than the reference finishes first: kill sooner and try again
            proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            start = time.time()
            while time.time() - start < delay and proc.poll() is None:
                time.sleep(0.02)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            returncode = proc.wait()
            if returncode == -signal.SIGKILL:
                break
            shutil.rmtree(out_dir(argv), ignore_errors=True)
            delay /= 2
        how = f"random {delay:.1f}s"
    else:
        site, count = mode
        returncode = subprocess.run(
            argv, env=child_env(KERAS_CNN_FAULT=f"{site}:{count}"), capture_output=True, timeout=600
        ).returncode
        how = f"{site}:{count}"
    assert returncode == -signal.SIGKILL, f"{how}: the process ended by itself (rc {returncode}) before the kill"
    return how


def out_dir(argv):
    return argv[argv.index("--output-dir") + 1]


def finish(argv, tries=3):
    for _ in range(tries):
        done = subprocess.run(argv, env=child_env(), capture_output=True, text=True, timeout=600)
        if done.returncode == 0:
            return done
    raise AssertionError(done.stderr[-3000:])


def weights(run_dir):
    return keras.models.load_model(os.path.join(run_dir, "model.keras")).get_weights()


def train_cycles(mnist_npz, tmp_path, cycles):
    reference = tmp_path / "reference"
    started = time.time()
    finish(train_argv(mnist_npz, reference))
    span = (0.3 * (time.time() - started), 0.85 * (time.time() - started))
    expected = weights(reference / "r")
    rng = random.Random(1234)
    modes = ["random", ("before_rename", None), ("before_append", 1)]
    survived = []
    for cycle in range(cycles):
        mode = modes[cycle % 3]
        if mode[0] == "before_rename":
            mode = ("before_rename", rng.randint(1, 14))  # checkpoints, history, plots, model, export
        out = tmp_path / f"cycle{cycle}"
        how = kill_once(train_argv(mnist_npz, out), mode, rng, span)
        finish(train_argv(mnist_npz, out))
        with open(out / "r" / "history.csv") as f:
            assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3], how
        with open(out / "runs.csv") as f:
            runs = list(csv.DictReader(f))
        assert len(runs) == 1 and runs[0]["status"] == "finished", (how, runs)
        for a, b in zip(expected, weights(out / "r")):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=how)
        leftovers = [
            p
            for d in ("", "checkpoints", "saved_model")
            if (out / "r" / d).is_dir()
            for p in os.listdir(out / "r" / d)
            if p.startswith(".")
        ]
        assert not leftovers, (how, leftovers)  # no temp files left behind
        survived.append(how)
    return survived


@pytest.mark.slow
def test_training_survives_twenty_seeded_kills(mnist_npz, tmp_path):
    survived = train_cycles(mnist_npz, tmp_path, 20)
    print("kills survived:", survived)
    assert len(survived) == 20


def search_argv(data, out):
    return [
        sys.executable,
        str(ROOT / "scripts" / "tune.py"),
        "--model",
        "mlp",
        "--dataset",
        "mnist",
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--max-trials",
        "3",
        "--epochs-per-trial",
        "2",
        "--set",
        "model.hidden=32",
        "--set",
        "data.batch_size=32",
        "--set",
        "run.steps_per_epoch=10",
        "--set",
        "run.checkpoint_every_steps=5",
        "--set",
        "run.steps_per_call=5",
        "--set",
        "run.precision=float32",
    ]


def search_cycles(mnist_npz, tmp_path, cycles):
    rng = random.Random(99)
    started = time.time()
    finish(search_argv(mnist_npz, tmp_path / "reference"))
    span = (0.3 * (time.time() - started), 0.85 * (time.time() - started))
    survived = []
    for cycle in range(cycles):
        out = tmp_path / f"search{cycle}"
        mode = "random" if cycle % 2 == 0 else ("before_rename", rng.randint(1, 30))
        how = kill_once(search_argv(mnist_npz, out), mode, rng, span)
        finish(search_argv(mnist_npz, out))
        rows = read_trials(out / "mlp-mnist-random" / "trials.csv")
        assert sorted(r["trial_id"] for r in rows) == ["0", "1", "2"], (how, rows)
        assert all(r["status"] in ("finished", "diverged") for r in rows), (how, rows)
        survived.append(how)
    return survived


@pytest.mark.slow
def test_search_survives_ten_seeded_kills(mnist_npz, tmp_path):
    survived = search_cycles(mnist_npz, tmp_path, 10)
    print("search kills survived:", survived)
    assert len(survived) == 10
