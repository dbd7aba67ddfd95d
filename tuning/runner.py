"""One trial = one keras_cnn.train run, with its trials.csv row kept current; shared by search and sweep."""

import json
import math
import os
import shutil
import time

import keras

import keras_cnn
from keras_cnn.errors import UsageError
from keras_cnn.io import write_json
from tuning.trials import upsert_trial

DIVERGENCE_FACTOR = 3.0


class DivergenceAbort(keras.callbacks.Callback):
    """CS231n's early abort: stop when the loss exceeds 3x its first value or is not finite."""

    def __init__(self, factor=DIVERGENCE_FACTOR):
        super().__init__()
        self.factor, self.initial, self.diverged = factor, None, False

    def on_train_batch_end(self, batch, logs=None):
        loss = logs["batch_loss"]
        if self.initial is None and math.isfinite(loss):
            self.initial = loss
        if not math.isfinite(loss) or (self.initial is not None and loss > self.factor * self.initial):
            self.diverged = True
            self.model.stop_training = True


def run_trial(cfg, trials_path, row, columns, *, verbose=0):
    """Train `cfg`, recording `row` as running, then finished/diverged (or failed, re-raising the error)."""
    upsert_trial(trials_path, {**row, "status": "running"}, columns)
    abort, start = DivergenceAbort(), time.perf_counter()
    try:
        result = keras_cnn.train(cfg, callbacks=[abort], verbose=verbose)
    except UsageError as err:
        upsert_trial(trials_path, {**row, "status": "failed", "error": str(err)}, columns)
        raise
    diverged = abort.diverged or result.status == "diverged"
    scored = [(r["val_accuracy"], r["val_loss"]) for r in result.history if r.get("val_accuracy") not in (None, "")]
    best_accuracy, best_loss = max(scored) if scored and not diverged else (None, None)
    row = {
        **row,
        "status": "diverged" if diverged else "finished",
        "best_val_accuracy": best_accuracy,
        "best_val_loss": best_loss,
        "epochs": len(result.history),
        "seconds": round(time.perf_counter() - start, 1),
    }
    upsert_trial(trials_path, row, columns)
    return row


def claim_folder(folder, record_file, record, overwrite, conflict):
    """A search or sweep folder belongs to one set of settings (`record`, kept in `record_file`):
    resuming it with others would mix their results, so that is refused with `conflict`, unless
    `overwrite`, which removes only this folder before starting over."""
    path = os.path.join(folder, record_file)
    record = json.loads(json.dumps(record))  # tuples as lists, as they read back
    if os.path.exists(path) and not overwrite:
        try:
            with open(path) as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None
        if previous != record:
            raise UsageError(conflict)
        return
    if overwrite and os.path.lexists(folder):
        shutil.rmtree(folder) if os.path.isdir(folder) and not os.path.islink(folder) else os.unlink(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {folder} ({err.strerror}); choose a writable --output-dir") from None
    write_json(path, record)
