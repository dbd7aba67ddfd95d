"""Progress a person can read anywhere: a live bar in a terminal, timed lines in logs and notebooks.

verbose=0 prints nothing but the closing summary's absence of news (errors still print);
verbose=1 (default) prints the opening summary, progress and one line per epoch; verbose=2
also prints a line at every epoch's validation and the non-terminal progress every 5 s.
"""

import sys
import time

from keras_cnn.console import format_duration
from keras_cnn.training.callbacks import RunCallback
from keras_cnn.training.class_weights import class_counts, describe_counts

LOG_INTERVAL = 30.0  # seconds between progress lines when stdout is not a terminal


class Progress(RunCallback):
    """Keras Progbar-style in a terminal (step n/N, ETA, running loss/accuracy, img/s); outside one,
    a line at most every LOG_INTERVAL seconds, so logs stay readable."""

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = LOG_INTERVAL if verbose < 2 else 5.0

    def _print(self, text, end="\n"):
        self.stream.write(text + end)
        self.stream.flush()

    def on_train_begin(self, logs=None):
        if not self.verbose:
            return
        run = self.run
        built, data = run.built, run.data
        self._print(
            f"{built.model.name}: {built.model.count_params():,} parameters, input {'x'.join(map(str, data.image_shape))}, "
            f"{data.num_classes} classes; {len(data.train):,} training / {run.val_count:,} validation images; "
            f"precision {built.precision}, {_strategy_words(built.strategy)}; "
            f"{run.steps_per_epoch} steps per epoch of {run.cfg.data.batch_size}, {run.cfg.run.epochs} epochs -> {run.run_dir.path}"
        )
        weights = built.trainer.class_weights
        if weights is not None or _imbalanced(data.train.labels, data.num_classes):
            self._print(
                describe_counts(data.train.labels, data.class_names, None if weights is None else weights.numpy())
            )
        if built.fine_tuning is not None:
            self._print(built.fine_tuning.describe())
        if run.cfg.data.multi_label:
            self._print(
                "multi-label: one sigmoid per class, binary cross-entropy; acc is the exact-match ratio "
                "(every class right at 0.5)"
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start, self.last_line = epoch + 1, time.perf_counter(), time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if not self.verbose:
            return
        done, total = batch + 1, self.run.steps_per_epoch
        rate = logs.get("images_per_sec") or 0.0
        eta = (total - done) * self.run.cfg.data.batch_size / rate if rate else 0.0
        stats = f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} {logs.get('images_per_sec', 0):,.0f} img/s"
        if self.tty:
            filled = int(20 * done / total)
            bar = "=" * max(filled - 1, 0) + (">" if filled < 20 else "=") + "." * (20 - filled)
            self._print(
                f"\repoch {self.epoch}/{self.params['epochs']} {done}/{total} [{bar}] ETA {format_duration(eta)} "
                f"{stats}   ",
                end="",
            )
        elif time.perf_counter() - self.last_line >= self.interval:
            self.last_line = time.perf_counter()
            self._print(
                f"epoch {self.epoch}/{self.params['epochs']} step {done}/{total} ETA {format_duration(eta)} {stats}"
            )

    def on_epoch_end(self, epoch, logs=None):
        if not self.verbose:
            return
        val = f" val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f}" if "val_accuracy" in logs else ""
        ema = f" ema_val_acc {logs['ema_val_accuracy']:.4f}" if "ema_val_accuracy" in logs else ""
        phase = self.run.built.fine_tuning.phase if self.run.built.fine_tuning is not None else None
        line = (
            f"epoch {epoch + 1}/{self.params['epochs']}{f' ({phase})' if phase else ''} loss {logs['loss']:.4f} acc {logs['accuracy']:.4f}{val}{ema} "
            f"lr {logs['learning_rate']:.4g} {logs['images_per_sec']:,.0f} img/s {format_duration(logs['seconds'])}"
        )
        self._print(("\r" if self.tty else "") + line + (" " * 12 if self.tty else ""))


def _imbalanced(labels, num_classes):
    """The smallest class has under half the largest's images: worth a line at the run's start."""
    counts = class_counts(labels, num_classes)
    return counts.min() * 2 < counts.max()


def summary_line(result, cfg, runs_csv):
    """The closing line: status, epochs, speed, and the accuracy of the weights that were saved."""

    def pct(value):
        return f"{value:.4f}" if value is not None else "n/a"

    if cfg.data.multi_label:  # "accuracy" is the exact-match ratio at 0.5; mAP says more (config.json)
        accuracy = (
            f"final validation exact-match accuracy {pct(result.final_val_accuracy)} "
            "(every class right at 0.5; mAP and the chosen threshold are in config.json)"
        )
    elif result.ema_val_accuracy is not None:
        accuracy = (
            f"final validation accuracy {pct(result.ema_val_accuracy)} with the saved EMA weights "
            f"({pct(result.final_val_accuracy)} raw, best raw {pct(result.best_val_accuracy)})"
        )
    else:
        accuracy = f"final validation accuracy {pct(result.final_val_accuracy)} (best {pct(result.best_val_accuracy)})"
    return (
        f"Run {result.run_dir}: {result.status} after {len(result.history)} epoch(s) of {cfg.model.name} on "
        f"{cfg.data.dataset} in {format_duration(result.seconds)} ({result.images_per_sec:,.0f} training img/s); "
        f"{accuracy}. History in history.csv, curves in curves.png, model in model.keras, one row in {runs_csv}."
    )


def _strategy_words(strategy):
    """'one device', '2 replicas (MirroredStrategy)': the user's words, not TensorFlow's private class names."""
    replicas = strategy.num_replicas_in_sync
    name = type(strategy).__name__
    if name.startswith("_Default"):
        return "one device"
    return f"{replicas} replica{'s' if replicas > 1 else ''} ({name.lstrip('_')})"
