"""What needs real processes: SIGKILL and resume, two workers under MultiWorkerMirroredStrategy."""

import csv
import json
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_cnn.cli import prepare
from keras_cnn.config import TrainConfig, apply_overrides

from conftest import ROOT, child_env

HELPER = ROOT / "tests" / "helpers" / "train_and_dump.py"


def train_argv(data_dir, output_dir):
    return [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "--model",
        "mlp",
        "--hidden",
        "256",
        "--dataset",
        "mnist",
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(output_dir),
        "--name",
        "kill",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "0.02",
        "--schedule",
        "cosine",
        "--ema",
        "--set",
        "run.steps_per_call=1",
        "--set",
        "run.checkpoint_every_steps=4",
        "--set",
        "model.dropout=0.1",
    ]


def final_weights(run_dir):
    return keras.models.load_model(run_dir / "model.keras").get_weights()


@pytest.fixture(scope="module")
def uninterrupted(mnist_small, tmp_path_factory):
    """The final weights of the run below, never interrupted."""
    out = tmp_path_factory.mktemp("reference")
    done = subprocess.run(train_argv(mnist_small, out), env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return final_weights(out / "kill")


def kill_mid_epoch(argv, run_dir):
    """SIGKILL without warning once epoch 2 (index 1; 67 steps an epoch) has written a checkpoint."""
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "checkpoints" / "ckpt-e0001-b000016.npz").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def kill_before_a_rename(argv, run_dir):
    """KERAS_CNN_FAULT: the process SIGKILLs itself between writing its 30th file (a checkpoint, midway through
    epoch 2) to a temp name and renaming it into place."""
    return subprocess.run(
        argv, env=child_env(KERAS_CNN_FAULT="before_rename:30"), capture_output=True, timeout=600
    ).returncode


@pytest.mark.parametrize("kill", [kill_mid_epoch, kill_before_a_rename], ids=["mid_epoch", "before_a_rename"])
def test_sigkill_then_rerun_matches_uninterrupted(kill, mnist_small, tmp_path, uninterrupted):
    """The seeded version with every kill point, 20 cycles, is test_reliability.py (`-m slow`)."""
    argv = train_argv(mnist_small, tmp_path)
    run_dir = tmp_path / "kill"
    assert kill(argv, run_dir) == -signal.SIGKILL
    history_rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert len(history_rows) == 1  # killed inside epoch 2

    rerun = subprocess.run(argv, env=child_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming" in rerun.stdout + rerun.stderr
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    # Same seed, same batches, same dropout masks: equal up to float summation order.
    for a, b in zip(uninterrupted, final_weights(run_dir)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    runs = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert [r["status"] for r in runs] == ["finished"]
    leftovers = [
        p.name
        for d in (run_dir, run_dir / "checkpoints", run_dir / "saved_model")
        for p in d.iterdir()
        if p.name.startswith(".")
    ]
    assert not leftovers  # the temp file the kill left behind is gone


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# From memory under `-m slow`: the all-reduce, not the input path, makes the weights identical, and the
# in-memory multi-worker path runs by default in test_signals.py's two-worker test.
@pytest.mark.parametrize("source", [pytest.param("in_memory", marks=pytest.mark.slow), "prepared_shards"])
def test_two_workers_on_localhost_end_with_identical_weights(source, mnist_small, cifar_folder, tmp_path):
    if source == "in_memory":
        data = [
            "data.dataset=mnist",
            f"data.data_dir={mnist_small}",
            "model.name=mlp",
            "model.hidden=64",
            "run.steps_per_epoch=8",
            "data.batch_size=64",
        ]
    else:  # streamed from shards, whole epochs: both workers must reach the same step count or the all-reduce hangs
        assert (
            prepare.main([str(cifar_folder.parent), str(tmp_path / "shards"), "--shard-size", "60KB", "--quiet"]) == 0
        )
        data = ["data.dataset=cifar10", f"data.data_dir={tmp_path / 'shards'}", "model.name=cnn", "data.batch_size=32"]
    cfg = apply_overrides(
        TrainConfig(),
        data
        + [
            f"run.output_dir={tmp_path / 'runs'}",
            "model.batch_norm=true",
            "model.dropout=0.1",
            "optimizer.weight_decay=5e-4",
            "optimizer.learning_rate=0.05",
            "run.strategy=multi_worker",
            "run.epochs=2",
        ],
    )
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(cfg.to_dict()))
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HELPER), str(config_path), str(tmp_path / f"w{index}.npz")],
                env=child_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "status=finished" in out
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 0
    differing = [k for k in w0.files if not np.array_equal(w0[k], w1[k])]
    assert not differing, differing
    # Only the chief writes the run directory.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [f"{cfg.model.name}-{cfg.data.dataset}", "runs.csv"]
    assert (tmp_path / "runs" / f"{cfg.model.name}-{cfg.data.dataset}" / "history.csv").exists()
