"""train(config): one training job in phases: check, load data, build, resume, fit, finish.

The CLI, the tuner, the diagnostics and the tests all come through here (via keras_cnn.train,
which adds export-on-finish and layer statistics as callbacks). A run lives in
<output_dir>/<name>/; rerunning the same config with the same name resumes it.
"""

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_cnn import interrupts, plots
from keras_cnn.config import TrainConfig, validate
from keras_cnn.data import check_full_batch, prepare_data
from keras_cnn.errors import Interrupted, UsageError
from keras_cnn.io import read_csv
from keras_cnn.kernels import enabled as fast_kernels_enabled
from keras_cnn.presets import smoke
from keras_cnn.run_dir import RunDir, append_run_row
from keras_cnn.training import resume
from keras_cnn.training.build import build_training
from keras_cnn.training.callbacks import RunCallback, TensorBoardScalars, check_callbacks
from keras_cnn.training.class_weights import class_weights
from keras_cnn.training.fit import Run, fit
from keras_cnn.training.progress import Progress, summary_line
from keras_cnn.training.provenance import reproducibility_record
from keras_cnn.training.strategy import get_strategy, is_chief

log = logging.getLogger("keras_cnn")


@dataclasses.dataclass
class RunResult:
    run_dir: str
    status: str  # finished | diverged | stopped
    history: list[dict[str, Any]]
    model: keras.Model
    final_val_accuracy: float | None  # the raw weights' last validation accuracy
    best_val_accuracy: float | None
    ema_val_accuracy: float | None  # the saved EMA weights' last validation accuracy (with --ema)
    seconds: float
    images_per_sec: float
    class_names: list[str]


def train(cfg: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = (), verbose: int = 1) -> RunResult:
    """Run the job `cfg` describes; returns a RunResult. See keras_cnn.train for the callbacks."""
    cfg = smoke(cfg) if cfg.run.smoke else cfg  # seconds of the same work (CLIs: KERAS_CNN_SMOKE=1)
    cfg = validate(cfg)  # 1. every value checked by rule, before anything is written
    callbacks = check_callbacks(callbacks)
    strategy = get_strategy(cfg.run.strategy)  # first TF work: multi_worker needs it before the runtime starts
    run_dir, chief = RunDir.for_config(cfg), is_chief()
    with (
        interrupts.handle_signals("stopping after the current step (a checkpoint is written)"),
        run_dir.lock(enabled=chief),
    ):
        mode = resume.decide(run_dir, cfg)  # 2. resume, extend, replace, or a new run
        keras.utils.set_random_seed(cfg.run.seed)
        data = prepare_data(cfg.data, verbose=verbose)  # 3. data errors surface before the disk is touched
        interrupts.raise_if_requested("while loading data")
        steps = steps_per_epoch(cfg, len(data.train), strategy.num_replicas_in_sync)
        weights = class_weights(cfg.optimizer.class_weight, data.train.labels, data.class_names)
        built = build_training(
            cfg,
            image_shape=data.input_shape,
            num_classes=data.num_classes,
            steps_per_epoch=steps,
            strategy=strategy,
            class_weights=weights,
        )  # 4. build
        start, mode = resume.starting_point(run_dir, built, cfg, mode)  # 5. resume or warm start
        if chief:  # 6. only now, with data, model and checkpoint known good, is anything written
            record = _new_record(cfg, data, built)
            if start.weights:
                record["weights"] = start.weights
            resume.prepare(run_dir, cfg, mode, record)
            _write_run_files(run_dir, cfg, data, built, steps)
        run = Run(cfg, run_dir, data, built, chief, steps, list(start.history), start)
        callback_list = _callback_list(run, callbacks, verbose)
        if start.epoch >= cfg.run.epochs or start.stopped:
            log.info(
                "run %s already ended after %d epoch(s); nothing to train (raise --epochs to extend it)",
                run_dir.path,
                start.epoch,
            )
        elif start.epoch or start.batch:
            log.info("resuming %s at epoch %d, batch %d", run_dir.path, start.epoch + 1, start.batch)
        started = time.perf_counter()
        try:
            outcome = fit(run, callback_list)  # 7. the epochs
            return _finish(run, callback_list, outcome, time.perf_counter() - started, mode, verbose)  # 8.
        except BaseException as err:
            status = "interrupted" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "failed"
            for cb in _run_callbacks(callback_list):
                cb.on_run_interrupted(status)
            raise


def steps_per_epoch(cfg, num_train, replicas):
    if cfg.data.batch_size % replicas:
        raise UsageError(
            f"batch size {cfg.data.batch_size} does not split over {replicas} replicas; use a multiple of {replicas}"
        )
    check_full_batch(num_train, cfg.data.batch_size)
    steps = num_train // cfg.data.batch_size
    return min(steps, cfg.run.steps_per_epoch) if cfg.run.steps_per_epoch else steps


def _write_run_files(run_dir, cfg, data, built, steps):
    """What a run's folder holds from the start: the normalization and the learning-rate plan."""
    run_dir.save_normalizer(data.normalizer)
    total = steps * cfg.run.epochs
    plots.plot_learning_rate(
        np.arange(total), built.schedule(tf.range(total, dtype=tf.float32)).numpy(), run_dir.file("lr.png")
    )


def _new_record(cfg, data, built):
    return {
        "run_id": uuid.uuid4().hex[:12],  # tells this run from an earlier one of the same name
        "config": cfg.to_dict(),
        # What the config resolved to: the split actually carved and where the data came from.
        "data": {
            "source": data.description,
            "train_size": len(data.train),
            "val_size": data.val_size,
            "split_seed": cfg.data.split_seed,
            "image_shape": list(data.image_shape),
            "input_shape": list(data.input_shape),
            "placement": type(data.train).__name__,
            "class_names": data.class_names,
            "normalization": data.normalizer.to_dict(),
        },
        # What "auto" settings became on this machine.
        "resolved": {
            "precision": built.precision,
            "replicas": built.strategy.num_replicas_in_sync,
            "fast_kernels": fast_kernels_enabled(),
            "smoke": cfg.run.smoke,
            "class_weights": None
            if built.trainer.class_weights is None
            else built.trainer.class_weights.numpy().tolist(),
        },
        "reproducibility": reproducibility_record(cfg),
    }


def _callback_list(run, callbacks, verbose):
    """The caller's callbacks first (they decide stops and restore weights), then progress and TensorBoard."""
    ours = [Progress(verbose)] + ([TensorBoardScalars()] if run.chief else [])
    everything = [*callbacks, *ours]
    for cb in everything:
        if isinstance(cb, RunCallback):
            cb.set_run(run)
    return keras.callbacks.CallbackList(
        everything, model=run.built.model, epochs=run.cfg.run.epochs, steps=run.steps_per_epoch, verbose=0
    )


def _finish(run, callbacks, outcome, seconds, mode, verbose):
    """Averaged weights in, on_train_end (EarlyStopping restores, export-on-finish writes), then save."""
    built, cfg = run.built, run.cfg
    if built.ema is not None and outcome.status != "diverged":
        built.ema.swap()  # the saved model carries the averaged weights
    callbacks.on_train_end({"status": outcome.status})
    if run.chief:
        run.run_dir.write_history(run.history)
        if run.history:
            plots.plot_curves(run.history, run.run_dir.file("curves.png"))
        if outcome.status != "diverged":
            run.run_dir.save_model(built.model)
    result = _result(run, outcome, seconds)
    if run.chief:  # once per run id: a rerun adds no row; an extended run replaces its row
        append_run_row(
            cfg.run.output_dir,
            {
                "run": run.run_dir.name,
                "run_id": run.run_dir.run_id(),
                "model": cfg.model.name,
                "dataset": cfg.data.dataset,
                "parameters": built.model.count_params(),
                "epochs": len(run.history),
                "best_val_accuracy": _fmt(result.best_val_accuracy),
                "final_val_accuracy": _fmt(result.final_val_accuracy),
                "seconds": round(_earlier_seconds(run, mode) + result.seconds, 1),
                "images_per_sec": round(_history_rate(run.history), 1),
                "status": outcome.status,
            },
            replace=mode == resume.Mode.EXTEND,
        )
    for cb in _run_callbacks(callbacks):
        cb.on_run_end(outcome.status)
    if verbose:
        print(summary_line(result, cfg, os.path.join(cfg.run.output_dir, "runs.csv")), flush=True)
    return result


def _earlier_seconds(run, mode):
    """Wall seconds of the run's earlier sessions, so runs.csv adds them up: an extended run's own
    row; after a kill or Ctrl-C (no row yet), the epochs its checkpoint carried."""
    if mode == resume.Mode.EXTEND:
        rows = [
            r
            for r in read_csv(os.path.join(run.cfg.run.output_dir, "runs.csv"))
            if r.get("run_id") == run.run_dir.run_id()
        ]
        if rows and rows[-1].get("seconds") not in (None, ""):
            return float(rows[-1]["seconds"])
    return sum(float(r.get("seconds") or 0) for r in run.start.history)


def _history_rate(history):
    """Training images per second over every epoch of every session (each row: its rate x its seconds)."""
    seconds = sum(float(r.get("seconds") or 0) for r in history)
    images = sum(float(r.get("images_per_sec") or 0) * float(r.get("seconds") or 0) for r in history)
    return images / seconds if seconds else 0.0


def _run_callbacks(callback_list):
    return [cb for cb in callback_list.callbacks if isinstance(cb, RunCallback)]


def _result(run, outcome, seconds):
    history, diverged = run.history, outcome.status == "diverged"
    accs = [r.get("val_accuracy") for r in history if r.get("val_accuracy") not in (None, "")]
    ema = history[-1].get("ema_val_accuracy") if history and run.built.ema is not None and not diverged else None
    return RunResult(
        run_dir=run.run_dir.path,
        status=outcome.status,
        history=history,
        model=run.built.model,
        final_val_accuracy=accs[-1] if accs and not diverged else None,
        best_val_accuracy=max(accs) if accs else None,
        ema_val_accuracy=ema if ema not in (None, "") else None,
        seconds=seconds,
        images_per_sec=outcome.train_images / outcome.train_seconds if outcome.train_seconds else 0.0,
        class_names=run.data.class_names,
    )


def _fmt(value):
    return "" if value is None else round(value, 4)
