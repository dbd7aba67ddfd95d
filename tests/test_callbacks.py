"""Keras's own callbacks plug into keras_cnn.train: the hooks, the log names, stop_training, restore_best_weights."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn import checkpoints
from keras_cnn.cli import train as train_cli
from keras_cnn.errors import UsageError
from keras_cnn.run_dir import RunDir

from conftest import mnist_config

QUICK = ("run.epochs=3", "data.batch_size=64", "run.steps_per_call=2")


def test_hooks_params_and_log_names_are_kerass(mnist_small, tmp_path):
    seen = {"begin": 0, "batches": [], "epochs": [], "end": None}
    recorder = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: seen.__setitem__("begin", seen["begin"] + 1),
        on_train_batch_end=lambda batch, logs: seen["batches"].append((batch, sorted(logs))),
        on_epoch_end=lambda epoch, logs: seen["epochs"].append((epoch, dict(logs))),
        on_train_end=lambda logs: seen.__setitem__("end", dict(logs)),
    )
    result = keras_cnn.train(
        mnist_config(mnist_small, tmp_path, *QUICK, "ema.enabled=true"), callbacks=[recorder], verbose=0
    )
    assert seen["begin"] == 1 and seen["end"]["status"] == "finished"
    assert recorder.model is result.model and recorder.params["epochs"] == 3 and recorder.params["steps"] == 8
    assert [e for e, _ in seen["epochs"]] == [0, 1, 2]  # counted from 0, as in model.fit
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "ema_val_accuracy"} <= set(
        seen["epochs"][0][1]
    )
    assert seen["epochs"][-1][1]["val_accuracy"] == pytest.approx(result.history[-1]["val_accuracy"])
    assert seen["batches"][0] == (0, ["accuracy", "batch_loss", "images_per_sec", "learning_rate", "loss"])
    assert seen["batches"][-1][0] == 7  # the epoch's last batch index


def test_csv_logger_writes_kerass_columns(mnist_small, tmp_path):
    log = tmp_path / "log.csv"
    result = keras_cnn.train(
        mnist_config(mnist_small, tmp_path, *QUICK), callbacks=[keras.callbacks.CSVLogger(str(log))], verbose=0
    )
    rows = list(csv.DictReader(open(log)))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    assert float(rows[-1]["val_loss"]) == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)


def test_early_stopping_ends_the_run_and_its_best_weights_reach_model_keras_and_the_export(mnist_small, tmp_path):
    # min_delta 10: no epoch ever improves on the first, so the run stops after epoch 2 and restores epoch 1.
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0, restore_best_weights=True)
    cfg = mnist_config(mnist_small, tmp_path, *QUICK, "run.epochs=5", "run.name=stop")
    result = keras_cnn.train(cfg, callbacks=[stop], verbose=0)
    assert result.status == "stopped" and len(result.history) == 2
    run = RunDir(tmp_path / "stop")
    _, arrays = checkpoints.read(run.file("checkpoints", "ckpt-e0001-b000000.npz"))
    epoch1 = checkpoints.group(arrays, "model")
    saved = keras.models.load_model(run.model_path)
    for a, b in zip(saved.variables, epoch1):
        np.testing.assert_array_equal(a.numpy(), b)
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8))
    served = tf.saved_model.load(run.file("saved_model", "1")).signatures["serving_default"](images=images)[
        "probabilities"
    ]
    expected = tf.nn.softmax(saved(run.load_normalizer()(images), training=False))
    np.testing.assert_allclose(served.numpy(), expected.numpy(), atol=1e-6)
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert rows[-1]["status"] == "stopped" and rows[-1]["epochs"] == "2"
    # The same command again: the run stays stopped (its checkpoint says so), nothing trains.
    again = keras_cnn.train(cfg, verbose=0)
    assert again.status == "stopped" and len(again.history) == 2


def test_terminate_on_nan_ends_a_diverging_run(mnist_small, tmp_path):
    watcher = keras.callbacks.TerminateOnNaN()
    result = keras_cnn.train(
        mnist_config(mnist_small, tmp_path, *QUICK, "optimizer.learning_rate=1e6", "optimizer.momentum=0.99"),
        callbacks=[watcher],
        verbose=0,
    )
    assert result.status == "diverged" and len(result.history) == 1 and result.model.stop_training


@pytest.mark.parametrize(
    "callback",
    [
        keras.callbacks.ReduceLROnPlateau(),
        keras.callbacks.LearningRateScheduler(lambda e: 0.1),
        keras.callbacks.BackupAndRestore("unused"),
        object(),
    ],
)
def test_callbacks_that_fight_the_loop_are_refused(callback, mnist_small, tmp_path):
    with pytest.raises(UsageError) as err:
        keras_cnn.train(mnist_config(mnist_small, tmp_path, *QUICK), callbacks=[callback], verbose=0)
    assert "not supported" in str(err.value) or "must be keras.callbacks.Callback" in str(err.value)
    assert not os.listdir(tmp_path)


def test_early_stopping_flag_on_the_cli(mnist_small, tmp_path, capsys):
    argv = [
        "--model",
        "mlp",
        "--data-dir",
        str(mnist_small),
        "--output-dir",
        str(tmp_path),
        "--epochs",
        "6",
        "--lr",
        "1e-12",
        "--early-stopping",
        "1",
        "--quiet",
    ]  # a rate this small changes nothing: validation loss never improves
    assert train_cli.main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert rows[-1]["status"] == "stopped" and rows[-1]["epochs"] == "2"


MONITORED = {  # epoch log name -> history.csv column, and which way is better
    "loss": ("train_loss", min),
    "accuracy": ("train_accuracy", max),
    "val_loss": ("val_loss", min),
    "val_accuracy": ("val_accuracy", max),
    "val_top5_accuracy": ("val_top5_accuracy", max),
    "ema_val_accuracy": ("ema_val_accuracy", max),
}


def test_early_stopping_and_model_checkpoint_infer_the_direction_of_every_logged_metric(mnist_small, tmp_path):
    """mode="auto" works as with a compiled Keras model: each callback's best is the history's best."""
    stops = {m: keras.callbacks.EarlyStopping(monitor=m, patience=10) for m in MONITORED}
    saves = {
        m: keras.callbacks.ModelCheckpoint(
            str(tmp_path / f"best-{m}.weights.h5"), monitor=m, save_best_only=True, save_weights_only=True
        )
        for m in MONITORED
    }
    cfg = mnist_config(mnist_small, tmp_path / "runs", *QUICK, "ema.enabled=true", "optimizer.learning_rate=0.3")
    result = keras_cnn.train(cfg, callbacks=[*stops.values(), *saves.values()], verbose=0)
    assert result.status == "finished"
    for monitor, (column, better) in MONITORED.items():
        values = [float(r[column]) for r in result.history]
        assert len(set(values)) > 1, (monitor, values)  # the direction matters on this run
        assert float(stops[monitor].best) == pytest.approx(better(values), rel=1e-6), monitor
        assert float(saves[monitor].best) == pytest.approx(better(values), rel=1e-6), monitor
        assert (tmp_path / f"best-{monitor}.weights.h5").is_file()


@pytest.mark.parametrize(
    "callback",
    [keras.callbacks.EarlyStopping(monitor="val_acc"), keras.callbacks.ModelCheckpoint("x.keras", monitor="acc")],
)
def test_a_monitor_the_run_does_not_log_is_refused_before_training(callback, mnist_small, tmp_path):
    with pytest.raises(UsageError, match="which a keras_cnn run does not log; monitor one of: loss, val_loss"):
        keras_cnn.train(mnist_config(mnist_small, tmp_path, *QUICK), callbacks=[callback], verbose=0)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("monitor", MONITORED)
def test_reduce_lr_on_plateau_is_refused_whatever_it_monitors(monitor, mnist_small, tmp_path):
    with pytest.raises(UsageError, match="ReduceLROnPlateau is not supported: the schedule owns the learning rate"):
        keras_cnn.train(
            mnist_config(mnist_small, tmp_path, *QUICK),
            callbacks=[keras.callbacks.ReduceLROnPlateau(monitor=monitor)],
            verbose=0,
        )
    assert not os.listdir(tmp_path)
