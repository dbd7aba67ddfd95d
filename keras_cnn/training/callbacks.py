"""Run callbacks: keras.callbacks.Callback subclasses, driven through keras.callbacks.CallbackList.

The loop calls the Keras hooks with Keras's names, so Keras's own callbacks work unchanged:
- on_train_begin / on_epoch_begin(epoch) / on_train_batch_end(batch, logs) / on_epoch_end(epoch, logs)
  / on_train_end(logs); epochs and batches count from 0, as in model.fit;
- on_train_batch_end runs once per compiled call (run.steps_per_call steps; the run's first call
  is a single step) with `loss` and `accuracy` over the epoch so far, `batch_loss` over this call;
- epoch logs: loss, accuracy, val_loss, val_accuracy, val_top5_accuracy, ema_val_accuracy,
  learning_rate, images_per_sec, seconds; on_train_end's logs carry `status`;
- setting `self.model.stop_training = True` ends the run after the current call.

A `RunCallback` also sees the run (config, run directory, data, built model) through set_run, and
two hooks Keras has not: on_run_end(status) once the run's files are on disk (history.csv, plots,
model, its runs.csv row), and on_run_interrupted(status) when a signal or an error ends the run
before that ("interrupted" or "failed"; the exception then propagates).
"""

import os

import keras
import tensorflow as tf

from keras_cnn.errors import UsageError

# Callbacks that would fight the loop: the schedule owns the learning rate, and runs resume by themselves.
REFUSED = {
    "ReduceLROnPlateau": "the schedule owns the learning rate; choose --schedule (piecewise, cosine, ...) instead",
    "LearningRateScheduler": "the schedule owns the learning rate; choose --schedule or schedule.* settings instead",
    "BackupAndRestore": "runs resume by themselves from their checkpoints; rerun the same command instead",
}


class RunCallback(keras.callbacks.Callback):
    """A Keras callback that is also given the run before on_train_begin (set_run)."""

    run = None

    def set_run(self, run):
        self.run = run

    def on_run_end(self, status):
        pass

    def on_run_interrupted(self, status):
        pass


# The epoch log names a callback can monitor, and which way is better. Keras infers the direction
# from the compiled metrics' `_direction`; a keras_cnn model is not compiled with metrics (the loop
# computes them), so mode="auto" is resolved here, as a compiled model would resolve it.
MONITOR_DIRECTIONS = {
    "loss": "min",
    "val_loss": "min",
    "accuracy": "max",
    "val_accuracy": "max",
    "val_top5_accuracy": "max",
    "ema_val_accuracy": "max",
}


def check_callbacks(callbacks):
    """Keras callbacks are welcome, except those that set the learning rate or restore runs; those
    that monitor a metric get its direction (mode="auto") and must name one the run logs."""
    for cb in callbacks:
        if not isinstance(cb, keras.callbacks.Callback):
            raise UsageError(f"callbacks must be keras.callbacks.Callback instances; got {type(cb).__name__}")
        for base in type(cb).__mro__:
            if base.__name__ in REFUSED and base.__module__.startswith("keras"):
                raise UsageError(f"{type(cb).__name__} is not supported: {REFUSED[base.__name__]}")
        if any(b.__name__ == "MonitorCallback" and b.__module__.startswith("keras") for b in type(cb).__mro__):
            _set_direction(cb)  # EarlyStopping, ModelCheckpoint (Keras's base class is not public)
    return list(callbacks)


def _set_direction(cb):
    if cb.monitor not in MONITOR_DIRECTIONS:
        raise UsageError(
            f"{type(cb).__name__} monitors {cb.monitor!r}, which a keras_cnn run does not log; "
            f"monitor one of: {', '.join(MONITOR_DIRECTIONS)}"
        )
    if cb.mode == "auto":
        cb.mode = MONITOR_DIRECTIONS[cb.monitor]


def epoch_logs(row):
    """A history.csv row's numbers under Keras's log names (Keras callbacks take numbers only: the
    fine-tuning phase, a word, stays in history.csv)."""
    names = {"train_loss": "loss", "train_accuracy": "accuracy", "lr": "learning_rate"}
    return {names.get(k, k): v for k, v in row.items() if k not in ("epoch", "step", "phase") and v not in (None, "")}


class TensorBoardScalars(RunCallback):
    """Scalars as keras.callbacks.TensorBoard lays them out, so curves overlay in TensorBoard:
    <run>/tensorboard/train and /validation with the same tags (epoch_loss, epoch_accuracy, ...),
    plus batch_loss and batch_learning_rate per compiled call in train/."""

    def on_train_begin(self, logs=None):
        root = self.run.run_dir.tensorboard_dir
        self.train_writer = tf.summary.create_file_writer(os.path.join(root, "train"))
        self.val_writer = tf.summary.create_file_writer(os.path.join(root, "validation"))

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.run.built.optimizer.iterations.numpy())
        with self.train_writer.as_default(step=step):
            tf.summary.scalar("batch_loss", logs["batch_loss"])
            tf.summary.scalar("batch_learning_rate", logs["learning_rate"])

    def on_epoch_end(self, epoch, logs=None):
        for writer, prefix in ((self.train_writer, ""), (self.val_writer, "val_")):
            with writer.as_default(step=epoch):
                for key, value in logs.items():
                    if prefix and key.startswith(prefix):
                        tf.summary.scalar(f"epoch_{key[len(prefix) :]}", value)
                    elif not prefix and not key.startswith(("val_", "ema_val_")):
                        tf.summary.scalar(f"epoch_{key}", value)
                if prefix and "ema_val_accuracy" in logs:
                    tf.summary.scalar("epoch_ema_accuracy", logs["ema_val_accuracy"])
            writer.flush()

    def on_train_end(self, logs=None):
        self.train_writer.close()
        self.val_writer.close()
