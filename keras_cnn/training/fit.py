"""The fit phase: the epoch loop over a built run, checkpointing as it goes.

`Run` is everything the loop and the run callbacks need; `fit` returns how the loop ended.
A stop (a callback setting model.stop_training, a diverged loss, SIGINT/SIGTERM) takes effect
after the current compiled call; an interrupt writes a checkpoint first.
"""

import dataclasses
import math
import signal
import time

import numpy as np
import tensorflow as tf

from keras_cnn import interrupts
from keras_cnn.data.pipeline import make_dataset
from keras_cnn.errors import Interrupted
from keras_cnn.training.callbacks import epoch_logs
from keras_cnn.training.resume import Start

SUM = tf.distribute.ReduceOp.SUM


@dataclasses.dataclass
class Run:
    """One training run as the loop and its callbacks see it."""

    cfg: object  # TrainConfig
    run_dir: object  # RunDir
    data: object  # PreparedData
    built: object  # Built
    chief: bool
    steps_per_epoch: int
    history: list
    start: Start  # the checkpoint state resumed from

    @property
    def val_count(self):
        return len(self.data.validation) if self.data.validation is not None else 0

    def distributed(self, split, training, epoch=0, start=0):
        cfg, data = self.cfg, self.data
        return self.built.strategy.distribute_datasets_from_function(
            lambda ctx: make_dataset(
                split,
                cfg.data,
                training=training,
                seed=cfg.run.seed,
                epoch=epoch,
                normalizer=data.normalizer,
                input_context=ctx,
                start_batch=start,
            )
        )


@dataclasses.dataclass
class Outcome:
    status: str  # finished | diverged | stopped
    train_seconds: float = 0.0
    train_images: int = 0


def fit(run, callbacks):
    """Train from run.start to cfg.run.epochs; returns an Outcome. Raises Interrupted after a checkpoint."""
    model, cfg = run.built.model, run.cfg
    model.stop_training = bool(run.start.stopped)
    outcome = Outcome("stopped" if model.stop_training else "finished")
    val_ds = run.distributed(run.data.validation, False) if run.data.validation is not None else None
    callbacks.on_train_begin()
    start_batch = run.start.batch
    for epoch in range(run.start.epoch, cfg.run.epochs):
        if model.stop_training:
            break
        signum = _agreed_stop(run)
        if signum:  # at an epoch boundary the last checkpoint is already this position
            raise Interrupted(signum, f"at epoch {epoch + 1}, step {start_batch}")
        phase = run.built.enter_epoch(epoch)  # fine-tuning: what trains this epoch
        callbacks.on_epoch_begin(epoch)
        row, seconds, images = _train_epoch(run, callbacks, epoch, start_batch, outcome)
        if phase is not None:
            row["phase"] = phase
        start_batch = 0
        outcome.train_seconds += seconds
        outcome.train_images += images
        if outcome.status == "diverged":
            run.history.append(row)
            break
        if val_ds is not None:
            row.update(_validate(run.built, val_ds))
        run.history.append(row)
        callbacks.on_epoch_end(epoch, epoch_logs(row))
        if run.chief:
            run.run_dir.write_history(run.history)
        _checkpoint(run, epoch + 1, 0, best=_is_best(run.history), stopped=model.stop_training)
        if model.stop_training:
            outcome.status = "stopped"
    return outcome


def _train_epoch(run, callbacks, epoch, start_batch, outcome):
    """One epoch (or its remainder after a resume); returns (history row, seconds, images seen)."""
    built, cfg, steps = run.built, run.cfg, run.steps_per_epoch
    iterator = iter(run.distributed(run.data.train, True, epoch, start_batch))
    # Mid-epoch resume carries the partial sums, so the epoch's row covers all of it.
    totals = np.array(run.start.totals) if start_batch and run.start.totals else np.zeros(3)
    batch, started, carried = start_batch, time.perf_counter(), totals[2]
    while batch < steps and outcome.status == "finished" and not built.model.stop_training:
        n = _call_size(cfg, batch, steps, first=int(built.optimizer.iterations.numpy()) == 0)
        call = interrupts.call_responsively(built.trainer.train_steps, iterator, n)
        totals += call
        batch += n
        rate = (totals[2] - carried) / max(time.perf_counter() - started, 1e-9)
        logs = {
            "loss": totals[0] / totals[2],
            "accuracy": totals[1] / totals[2],
            "batch_loss": call[0] / call[2],
            "learning_rate": _current_lr(built),
            "images_per_sec": rate,
        }
        if not math.isfinite(logs["loss"]):
            outcome.status = "diverged"
        callbacks.on_train_batch_end(batch - 1, logs)
        _stop_if_interrupted(run, epoch, batch, totals)
        every = cfg.run.checkpoint_every_steps
        if every and batch % every == 0 and batch < steps and outcome.status == "finished":
            _checkpoint(run, epoch, batch, totals=totals)
    seconds = time.perf_counter() - started
    row = {
        "epoch": epoch + 1,
        "step": int(built.optimizer.iterations.numpy()),
        "lr": _current_lr(built),
        "train_loss": totals[0] / max(totals[2], 1),
        "train_accuracy": totals[1] / max(totals[2], 1),
        "images_per_sec": (totals[2] - carried) / max(seconds, 1e-9),
        "seconds": seconds,
    }
    return row, seconds, int(totals[2] - carried)


def _call_size(cfg, batch, steps, first):
    """Steps in the next compiled call: steps_per_call, cut at the epoch's end and the next
    checkpoint boundary; the run's very first call is one step, so callbacks see the true initial loss."""
    if first:
        return 1
    n = min(cfg.run.steps_per_call, steps - batch)
    every = cfg.run.checkpoint_every_steps
    if every:
        n = min(n, every - batch % every)
    return n


def _current_lr(built):
    step = built.optimizer.iterations
    return float(built.schedule(tf.maximum(step - 1, 0)))


def _validate(built, val_ds):
    metrics = interrupts.call_responsively(built.trainer.evaluate, val_ds)
    out = {
        "val_loss": metrics["loss"],
        "val_accuracy": metrics["accuracy"],
        "val_top5_accuracy": metrics["top5_accuracy"],
    }
    if built.ema is not None:
        built.ema.swap()
        try:
            out["ema_val_accuracy"] = interrupts.call_responsively(built.trainer.evaluate, val_ds)["accuracy"]
        finally:
            built.ema.swap()
    return out


def _checkpoint(run, epoch, batch, *, totals=None, best=False, stopped=False):
    if not run.chief:
        return
    # The completed epochs' rows travel with the checkpoint, so history.csv can always be rebuilt from it.
    state = {
        "epoch": epoch,
        "batch": batch,
        "totals": [float(t) for t in totals] if totals is not None else None,
        "stopped": bool(stopped),
        "history": [r for r in run.history if r["epoch"] <= epoch],
    }
    run.run_dir.save_checkpoint(run.built.checkpoint_groups(), state, keep=run.cfg.run.keep_checkpoints, best=best)


def _agreed_stop(run):
    """The signal number of a stop request, or 0. Under several workers the request is all-reduced,
    so every worker stops at the same step or none does (one alone would hang the others' all-reduce)."""
    signum = interrupts.stop_requested() or 0
    strategy = run.built.strategy
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        agreed = strategy.reduce(SUM, strategy.run(lambda: tf.constant(float(signum))), axis=None)
        signum = signum or (int(signal.SIGTERM) if float(agreed) > 0 else 0)
    return signum


def _stop_if_interrupted(run, epoch, batch, totals):
    """SIGINT/SIGTERM: checkpoint this exact position, then raise Interrupted."""
    signum = _agreed_stop(run)
    if not signum:
        return
    # At the epoch's last step this records (epoch, steps_per_epoch): a resume then only validates.
    _checkpoint(run, epoch, batch, totals=totals)
    raise Interrupted(signum, f"at epoch {epoch + 1}, step {batch}")


def _is_best(history):
    accs = [r.get("val_accuracy") for r in history if r.get("val_accuracy") not in (None, "")]
    return bool(accs) and accs[-1] >= max(accs)
