"""Fault class 4, signals, with real processes: SIGINT and SIGTERM stop after a checkpoint with one line
and exit 130 / 143; the rerun ends where an uninterrupted run ends; searches, sweeps and workers stop
as a whole."""

import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from test_processes import free_ports

from keras_cnn.run_dir import RunDir
from tuning.trials import read_trials

from conftest import ROOT, child_env


def train_argv(data, out, *extra, ema=True):
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
        "4",
        "--batch-size",
        "8",
        "--lr",
        "0.02",
        "--precision",
        "float32",
        "--set",
        "run.steps_per_call=1",
        *(["--ema"] if ema else []),
        "--set",
        "run.checkpoint_every_steps=5",
        "--set",
        "model.dropout=0.1",
        *extra,
    ]


def wait_for(path_glob, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(path_glob()):
            return
        assert proc.poll() is None, "the process ended before the signal"
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the process to reach the point of interruption")


def interrupt(argv, signum, ready, env=None):
    proc = subprocess.Popen(argv, env=env or child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(ready, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def uninterrupted(mnist_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    done = subprocess.run(train_argv(mnist_small, out), env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return keras.models.load_model(out / "r" / "model.keras").get_weights()


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_checkpoints_says_where_and_the_rerun_ends_like_an_uninterrupted_run(
    signum, status, mnist_small, tmp_path, uninterrupted
):
    argv = train_argv(mnist_small, tmp_path)
    ckpts = tmp_path / "r" / "checkpoints"
    rc, out, err = interrupt(argv, signum, lambda: ckpts.glob("ckpt-e0001-b0000[1-9]*.npz"))  # inside epoch 2
    assert rc == status and "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at epoch 2, step ") and last.endswith("rerun the same command to resume"), err
    step = int(last.split("step ")[1].split(":")[0])
    assert (ckpts / f"ckpt-e0001-b{step:06d}.npz").exists()  # the exact position it stopped at
    rerun = subprocess.run(argv, env=child_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [r["epoch"] for r in RunDir(tmp_path / "r").read_history()] == [1, 2, 3, 4]
    for a, b in zip(uninterrupted, keras.models.load_model(tmp_path / "r" / "model.keras").get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_second_sigint_exits_at_once(mnist_small, tmp_path):
    # vgg11 at batch 1, a whole epoch (540 steps) per compiled call: the call outlasts both signals.
    argv = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "--model",
        "vgg11",
        "--image-size",
        "32",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_small),
        "--output-dir",
        str(tmp_path),
        "--name",
        "r",
        "--epochs",
        "50",
        "--batch-size",
        "1",
        "--precision",
        "float32",
        "--set",
        "run.steps_per_call=100000",
    ]
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / "r").glob("lr.png"), proc)
    time.sleep(5.0)  # past the run's first call (one step), into the long one
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    started = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - started < 5 and "interrupted again: exiting now" in err, err


def tune_argv(data, out):
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
        "2",
        "--epochs-per-trial",
        "2",
        "--set",
        "model.hidden=32",
        "--set",
        "data.batch_size=8",
        "--set",
        "run.checkpoint_every_steps=5",
        "--set",
        "run.steps_per_call=1",
        "--set",
        "run.precision=float32",
    ]


def test_an_interrupted_search_stops_as_a_whole_and_resumes(mnist_small, tmp_path):
    argv = tune_argv(mnist_small, tmp_path)
    runs = tmp_path / "mlp-mnist-random" / "runs"
    rc, out, err = interrupt(argv, signal.SIGINT, lambda: runs.glob("trial_*/checkpoints/ckpt-e0001-b0000[1-9]*.npz"))
    assert rc == 130 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted at epoch 2"), (
        err
    )
    statuses = [r["status"] for r in read_trials(tmp_path / "mlp-mnist-random" / "trials.csv")]
    # The interrupted trial stays "running" (not "failed"), and no trial started after it.
    assert statuses[-1] == "running" and set(statuses[:-1]) <= {"finished", "diverged"}, statuses
    rerun = subprocess.run(argv, env=child_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rows = read_trials(tmp_path / "mlp-mnist-random" / "trials.csv")
    assert sorted(r["trial_id"] for r in rows) == ["0", "1"] and {r["status"] for r in rows} <= {"finished", "diverged"}


def test_an_interrupted_sweep_stops_as_a_whole(mnist_small, tmp_path):
    lab = tmp_path / "lab.toml"
    lab.write_text(
        'name = "lab"\n[base]\n"data.dataset" = "mnist"\n"run.epochs" = 3\n"data.batch_size" = 8\n'
        '"run.steps_per_call" = 1\n"run.checkpoint_every_steps" = 5\n"optimizer.learning_rate" = 0.01\n'
        '[arms.a]\n"model.name" = "linear"\n[arms.b]\n"model.name" = "mlp"\n'
    )
    argv = [
        sys.executable,
        str(ROOT / "scripts" / "sweep.py"),
        str(lab),
        "--seeds",
        "2",
        "--data-dir",
        str(mnist_small),
        "--output-dir",
        str(tmp_path),
    ]
    runs = tmp_path / "lab" / "runs"
    rc, out, err = interrupt(argv, signal.SIGTERM, lambda: runs.glob("a-seed0/checkpoints/ckpt-e0001-b0000[1-9]*.npz"))
    assert rc == 143 and "Traceback" not in err, err
    assert [r["trial_id"] for r in read_trials(tmp_path / "lab" / "trials.csv")] == ["a-seed0"]


def test_two_workers_agree_to_stop_when_one_is_signalled(mnist_small, tmp_path):
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    argv = train_argv(mnist_small, tmp_path / "runs", "--strategy", "multi_worker", "--batch-size", "16", ema=False)
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
        )
        for i in range(2)
    ]
    try:
        wait_for(lambda: (tmp_path / "runs" / "r" / "checkpoints").glob("ckpt-e0001-b0000[1-9]*.npz"), procs[0])
        procs[1].send_signal(signal.SIGTERM)  # the non-chief alone receives it
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_out, err) in zip(procs, outputs):
        assert p.returncode == 143 and "Traceback" not in err, err[-2000:]
    steps = {err.strip().splitlines()[-1] for _, err in outputs}
    assert len(steps) == 1 and next(iter(steps)).startswith("interrupted at epoch"), steps  # the same step on both


def test_diagnose_stops_on_sigterm_between_checks_and_writes_nothing(cifar_folder, tmp_path):
    """diagnose.py obeys the signal policy: one line, exit 143, no diagnostics.json."""
    out = tmp_path / "diag"
    log = tmp_path / "stderr.txt"
    argv = [sys.executable, str(ROOT / "scripts" / "diagnose.py"), "--model", "resnet20"]
    argv += ["--data-dir", str(cifar_folder), "--output-dir", str(out)]
    with open(log, "w") as err_file:
        proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=err_file, text=True)
        deadline = time.time() + 180
        while "[3/8]" not in log.read_text():  # the initial-loss check has begun
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=300)
    err = log.read_text()
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert "no diagnostics were written" in err.strip().splitlines()[-1]
    assert "checkpoint" not in err  # the announcement promises only what diagnose does
    assert not (out / "diagnostics.json").exists()
