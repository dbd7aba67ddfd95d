"""Runs and exports written before the architecture change keep working (tests/data/schema1_runs:
a cnn with BatchNorm and EMA trained by keras_cnn at d962ad2, config.json schema 1)."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.cli import evaluate, export, train
from keras_cnn.config import TrainConfig

from conftest import FIXTURES, ROOT

# The command that wrote the fixture (relative data path: the tests run it from the repository root).
ARGS = [
    "--model",
    "cnn",
    "--filters",
    "4",
    "--set",
    "model.dense=8",
    "--batch-norm",
    "--dataset",
    "cifar10",
    "--data-dir",
    "tests/data/cifar10",
    "--name",
    "schema1-cnn",
    "--batch-size",
    "30",
    "--set",
    "run.steps_per_epoch=2",
    "--set",
    "data.val_size=50",
    "--ema",
    "--set",
    "run.keep_checkpoints=1",
    "--set",
    "data.image_size=8x8",
]


@pytest.fixture
def old_runs(writable_copy, monkeypatch):
    monkeypatch.chdir(ROOT)
    return writable_copy(FIXTURES / "schema1_runs")


def test_the_old_record_reads_as_todays_config(old_runs):
    record = json.load(open(old_runs / "schema1-cnn" / "config.json"))
    assert record["schema_version"] == 1 and "kernel_size" not in record["config"]["model"]
    cfg = TrainConfig.from_dict(record["config"])  # schema 1's flat model fields move under model.options
    assert cfg.model.name == "cnn" and cfg.model.options == {"filters": (4,), "dense": 8, "batch_norm": True}
    assert cfg.model.get("kernel_size") is None


def test_an_old_run_evaluates_like_its_old_export(old_runs, tmp_path):
    run = old_runs / "schema1-cnn"
    assert evaluate.main(["--run", str(run), "--output-dir", str(tmp_path / "run")]) == 0
    assert evaluate.main(["--saved-model", str(run / "saved_model" / "1"), "--output-dir", str(tmp_path / "old")]) == 0
    today, old = (json.load(open(tmp_path / d / "evaluation.json")) for d in ("run", "old"))
    assert today["images"] == old["images"] == 50
    assert today["accuracy"] == old["accuracy"] and today["log_loss"] == pytest.approx(old["log_loss"], abs=1e-5)


def test_an_old_run_exports_the_same_predictions(old_runs, tmp_path, cifar_folder):
    run = old_runs / "schema1-cnn"
    assert export.main(["--run", str(run), "--export-dir", str(tmp_path)]) == 0
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    new = tf.saved_model.load(str(tmp_path / "schema1-cnn" / "1")).signatures["serving_default"](images=images)
    old = tf.saved_model.load(str(run / "saved_model" / "1")).signatures["serving_default"](images=images)
    np.testing.assert_allclose(new["probabilities"].numpy(), old["probabilities"].numpy(), atol=1e-6)


def test_an_old_run_resumes_as_finished_then_extends(old_runs, capsys):
    base = ARGS + ["--output-dir", str(old_runs)]
    assert train.main(base + ["--epochs", "2"]) == 0  # its old checkpoint (no checksum, no history) loads
    history = list(csv.DictReader(open(old_runs / "schema1-cnn" / "history.csv")))
    assert [r["epoch"] for r in history] == ["1", "2"]
    assert train.main(base + ["--epochs", "3"]) == 0  # a constant schedule: two more epochs extend the run
    history = list(csv.DictReader(open(old_runs / "schema1-cnn" / "history.csv")))
    runs = list(csv.DictReader(open(old_runs / "runs.csv")))
    assert [r["epoch"] for r in history] == ["1", "2", "3"]
    assert len(runs) == 1 and runs[0]["epochs"] == "3"  # the run's row replaced, not a second one
    assert json.load(open(old_runs / "schema1-cnn" / "config.json"))["config"]["run"]["epochs"] == 3
