"""keras_cnn.train end to end on real MNIST: it learns, resumes, refuses, diverges cleanly."""

import csv
import json
import os
import signal

import keras
import numpy as np
import pytest

import keras_cnn
from keras_cnn.cli import train as train_cli
from keras_cnn.errors import Interrupted
from keras_cnn.presets import preset

from conftest import mnist_config


@pytest.mark.shared_data
def test_mnist_mlp_learns_to_97_5_percent_in_3_epochs(mnist_full, tmp_path):
    result = keras_cnn.train(mnist_config(mnist_full, tmp_path), verbose=0)
    assert result.status == "finished" and len(result.history) == 3
    assert result.final_val_accuracy >= 0.975, result.history
    assert result.history[0]["train_loss"] > result.history[-1]["train_loss"]


def test_the_session_mlp_learns_on_600_real_digits(trained_mlp):
    losses = [r["train_loss"] for r in trained_mlp.history]
    assert trained_mlp.status == "finished" and len(losses) == 5
    assert losses[-1] < 0.5 * losses[0] and trained_mlp.final_val_accuracy >= 0.8, trained_mlp.history


def test_run_directory_holds_the_documented_files(trained_mlp):
    import os

    run_dir = trained_mlp.run_dir
    for name in ("config.json", "history.csv", "curves.png", "lr.png", "model.keras", "normalization.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    record = json.load(open(os.path.join(run_dir, "config.json")))
    assert record["data"]["val_size"] == 60 and record["data"]["train_size"] == 540  # 10% of 600, stratified
    assert record["reproducibility"]["packages"]["tensorflow"].startswith("2.")
    with open(os.path.join(run_dir, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert float(rows[-1]["ema_val_accuracy"]) == pytest.approx(trained_mlp.ema_val_accuracy)
    with open(os.path.join(os.path.dirname(run_dir), "runs.csv")) as f:
        runs = list(csv.DictReader(f))
    assert runs[-1]["status"] == "finished" and runs[-1]["parameters"] == str(trained_mlp.model.count_params())


def test_cli_preset_smoke_twin_runs_in_process(mnist_small, tmp_path, capsys):
    rc = train_cli.main(["--preset", "mnist-mlp-smoke", "--data-dir", str(mnist_small), "--output-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "finished after 1 epoch(s) of mlp on mnist" in out
    assert (tmp_path / "mlp-mnist" / "history.csv").exists()


@pytest.mark.parametrize(
    "name", ["mnist-mlp", "mnist-cnn", "quickstart-mnist", "cifar10-alexnet", "cifar10-resnet20", "cifar10-fast"]
)
def test_preset_smoke_twins_train_a_few_steps(name, mnist_npz, cifar_folder, tmp_path, capsys):
    data = mnist_npz if name.endswith("mnist") or name.startswith("mnist") else cifar_folder
    rc = train_cli.main(
        [
            "--preset",
            f"{name}-smoke",
            "--data-dir",
            str(data),
            "--output-dir",
            str(tmp_path),
            "--set",
            "run.export=false",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "finished after 1 epoch(s)" in capsys.readouterr().out


def test_every_preset_has_a_smoke_twin():
    from keras_cnn.presets import PRESETS

    for name in PRESETS:
        smoke = preset(f"{name}-smoke")
        assert smoke.run.epochs == 1 and smoke.run.steps_per_epoch and smoke.data.train_limit


class Interrupt(Exception):
    pass


class CrashMidEpoch2(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch >= 8:  # epoch 2, after the step-6 checkpoint, before the step-12 one
            raise Interrupt


def test_resume_after_interruption_matches_an_uninterrupted_run(mnist_small, tmp_path):
    overrides = (
        "run.epochs=2",
        "run.checkpoint_every_steps=6",
        "run.steps_per_call=3",
        "data.batch_size=32",
        "ema.enabled=true",
        "model.dropout=0.2",
    )
    straight = keras_cnn.train(mnist_config(mnist_small, tmp_path / "a", *overrides), verbose=0)
    cfg = mnist_config(mnist_small, tmp_path / "b", *overrides)
    with pytest.raises(Interrupt):
        keras_cnn.train(cfg, callbacks=[CrashMidEpoch2()], verbose=0)
    resumed = keras_cnn.train(cfg, verbose=0)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for a, b in zip(straight.history, resumed.history):  # the interrupted epoch's row covers all of it
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["val_accuracy"] == b["val_accuracy"] and a["ema_val_accuracy"] == b["ema_val_accuracy"]
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_existing_name_with_other_config_is_refused_then_overwritten(mnist_small, tmp_path, capsys):
    base = [
        "--model",
        "linear",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_small),
        "--output-dir",
        str(tmp_path),
        "--name",
        "r",
        "--epochs",
        "1",
        "--set",
        "run.steps_per_epoch=2",
        "--set",
        "data.train_limit=400",
    ]
    assert train_cli.main(base) == 0
    before = (tmp_path / "r" / "history.csv").read_bytes()
    capsys.readouterr()
    assert train_cli.main(base + ["--lr", "0.05"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different config (optimizer.learning_rate)" in err and "--overwrite" in err
    assert (tmp_path / "r" / "history.csv").read_bytes() == before
    assert train_cli.main(base + ["--lr", "0.05", "--overwrite"]) == 0
    assert json.load(open(tmp_path / "r" / "config.json"))["config"]["optimizer"]["learning_rate"] == 0.05
    # The replacement trained from scratch, like the same command in an empty output dir.
    fresh = tmp_path / "fresh"
    assert train_cli.main([a if a != str(tmp_path) else str(fresh) for a in base] + ["--lr", "0.05"]) == 0
    import keras

    replaced = keras.models.load_model(tmp_path / "r" / "model.keras").get_weights()
    for a, b in zip(replaced, keras.models.load_model(fresh / "r" / "model.keras").get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_nan_loss_stops_the_run_as_diverged(mnist_small, tmp_path, capsys):
    argv = [
        "--model",
        "mlp",
        "--hidden",
        "64",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_small),
        "--output-dir",
        str(tmp_path),
        "--lr",
        "1e6",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--set",
        "optimizer.momentum=0.99",
    ]
    assert train_cli.main(argv) == 1
    with open(tmp_path / "runs.csv") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["status"] == "diverged" and row["epochs"] == "1"


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--set", "optimizer.lr=0.1"], "unknown field; optimizer has"),
        (["--set", "run.epochs=three"], "expected an integer"),
        (["--set", "nonsense"], "not section.field=value"),
        (["--set", "training.epochs=1"], "unknown section"),
        (["--batch-size", "0"], "data.batch_size must be at least 1"),
        (["--lr", "-0.1"], "optimizer.learning_rate must be greater than 0"),
        (["--optimizer", "sgdd"], "unknown optimizer.name 'sgdd'; choose one of: sgd"),
        (["--strategy", "tpu"], "choose one of: auto"),
        (["--precision", "mixed_float16"], "mixed_float16 is for GPUs"),
        (["--preset", "imagenet"], "unknown preset"),
        (["--epochs"], "expected one argument"),
        (["--set", "optimizer.label_smoothing=1.5"], "optimizer.label_smoothing must be in [0, 1)"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv, needle, mnist_small, tmp_path, capsys):
    rc = train_cli.main(
        ["--model", "linear", "--dataset", "mnist", "--data-dir", str(mnist_small), "--output-dir", str(tmp_path)]
        + argv
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not list(tmp_path.iterdir())


def test_mirrored_two_replicas_match_the_default_strategy(mnist_small, tmp_path):
    """No BN, no dropout: the summed per-replica gradients equal the single-replica ones."""
    common = (
        "run.epochs=1",
        "run.steps_per_epoch=6",
        "data.batch_size=64",
        "optimizer.weight_decay=1e-3",
        "run.precision=float32",
    )
    single = keras_cnn.train(mnist_config(mnist_small, tmp_path / "one", "run.strategy=default", *common), verbose=0)
    mirrored = keras_cnn.train(mnist_config(mnist_small, tmp_path / "two", "run.strategy=mirrored", *common), verbose=0)
    for a, b in zip(single.model.weights, mirrored.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.shared_data
def test_mirrored_with_batch_norm_dropout_and_l2_follows_the_single_replica_curve(mnist_full, tmp_path):
    """Synchronized BN keeps the statistics global; dropout masks differ per replica, hence a tolerance."""
    common = (
        "data.train_limit=3000",
        "data.val_limit=500",
        "run.epochs=3",
        "data.batch_size=100",
        "model.batch_norm=true",
        "model.dropout=0.2",
        "optimizer.weight_decay=5e-4",
        "optimizer.learning_rate=0.05",
        "run.precision=float32",
    )
    single = keras_cnn.train(mnist_config(mnist_full, tmp_path / "one", "run.strategy=default", *common), verbose=0)
    mirrored = keras_cnn.train(mnist_config(mnist_full, tmp_path / "two", "run.strategy=mirrored", *common), verbose=0)
    for a, b in zip(single.history, mirrored.history):
        assert np.isfinite(b["train_loss"]) and np.isfinite(b["val_loss"])
        assert abs(a["train_loss"] - b["train_loss"]) <= 0.05 * a["train_loss"] + 0.01, (a, b)
        assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 0.02, (a, b)


def test_evaluate_cli_reproduces_the_runs_final_ema_accuracy(trained_mlp, tmp_path, capsys):
    from keras_cnn.cli import evaluate

    out = tmp_path / "eval"
    assert evaluate.main(["--run", trained_mlp.run_dir, "--output-dir", str(out)]) == 0
    summary = json.load(open(out / "evaluation.json"))
    # model.keras holds the EMA weights, so it scores what the last epoch's EMA column says.
    assert summary["images"] == 60
    assert summary["accuracy"] == pytest.approx(trained_mlp.history[-1]["ema_val_accuracy"], abs=1e-4)
    assert summary["top5_accuracy"] >= summary["accuracy"] and 0 < summary["log_loss"] < 1.0
    with open(out / "per_class.csv") as f:
        per_class = list(csv.DictReader(f))
    assert len(per_class) == 10 and sum(int(r["support"]) for r in per_class) == 60
    confusion = np.loadtxt(out / "confusion_matrix.csv", delimiter=",", skiprows=1, usecols=range(1, 11))
    assert confusion.sum() == 60 and np.trace(confusion) / 60 == pytest.approx(summary["accuracy"])
    assert (out / "confusion_matrix.png").stat().st_size > 1000


def test_evaluate_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    from keras_cnn.cli import evaluate

    assert evaluate.main(["--run", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
    assert evaluate.main(["--saved-model", str(tmp_path)]) == 2
    assert "not a SavedModel directory" in capsys.readouterr().err


def test_init_from_warm_starts_and_refuses_another_architecture(trained_mlp, mnist_small, tmp_path, capsys):
    import os

    from keras_cnn.cli import evaluate

    argv = [
        "--model",
        "mlp",
        "--hidden",
        "128",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_small),
        "--output-dir",
        str(tmp_path),
        "--epochs",
        "1",
        "--lr",
        "1e-9",
        "--schedule",
        "constant",
        "--set",
        "run.steps_per_epoch=1",
        "--set",
        "run.export=false",
        "--init-from",
        trained_mlp.run_dir,
    ]
    assert train_cli.main(argv + ["--name", "tuned"]) == 0
    # One step at lr 1e-9 leaves the trained weights: the warm-started run scores like the source.
    assert evaluate.main(["--run", str(tmp_path / "tuned"), "--output-dir", str(tmp_path / "e")]) == 0
    accuracy = json.load(open(tmp_path / "e" / "evaluation.json"))["accuracy"]
    assert accuracy == pytest.approx(trained_mlp.history[-1]["ema_val_accuracy"], abs=2e-3)
    capsys.readouterr()
    assert train_cli.main(argv[:3] + ["64"] + argv[4:] + ["--name", "other"]) == 2
    assert "do not fit this model" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "other")


class _CtrlCAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGINT)


def test_runs_csv_adds_up_seconds_and_rate_across_sessions(mnist_small, tmp_path):
    """Interrupted, resumed, then extended: runs.csv's seconds cover all three sessions, its rate all epochs."""
    cfg = mnist_config(mnist_small, tmp_path, "run.epochs=2", "run.name=sessions", "schedule.name=constant")
    with pytest.raises(Interrupted):
        keras_cnn.train(cfg, callbacks=[_CtrlCAfterFirstEpoch()], verbose=0)
    first_epoch = float(next(csv.DictReader(open(tmp_path / "sessions" / "history.csv")))["seconds"])
    resumed = keras_cnn.train(cfg, verbose=0)
    (row,) = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert float(row["seconds"]) == pytest.approx(first_epoch + resumed.seconds, abs=0.11)
    extended = keras_cnn.train(cfg.replace(run={"epochs": 3}), verbose=0)
    (again,) = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert again["epochs"] == "3"
    assert float(again["seconds"]) == pytest.approx(float(row["seconds"]) + extended.seconds, abs=0.11)
    history = list(csv.DictReader(open(tmp_path / "sessions" / "history.csv")))
    seconds = sum(float(r["seconds"]) for r in history)
    images = sum(float(r["seconds"]) * float(r["images_per_sec"]) for r in history)
    assert float(again["images_per_sec"]) == pytest.approx(images / seconds, abs=0.11)
