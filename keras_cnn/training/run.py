"""keras_cnn.train(config): the one function that builds and runs a training job.

The CLI, the tuner, the diagnostics and the tests all come through here. A run lives in
<output_dir>/<name>/; rerunning the same config with the same name resumes it.
"""
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid

import keras
import numpy as np
import tensorflow as tf

from keras_cnn import reports
from keras_cnn.config import SCHEMA_VERSION, TrainConfig
from keras_cnn.data import prepare_data
from keras_cnn.data.pipeline import make_dataset
from keras_cnn.errors import UsageError, choose
from keras_cnn.models import create_model
from keras_cnn.training import checkpoints
from keras_cnn.training.loop import Trainer
from keras_cnn.training.optim import WeightEMA, build_optimizer, check_optimizer_config, per_example_loss
from keras_cnn.training.precision import resolve_precision
from keras_cnn.training.provenance import reproducibility_record
from keras_cnn.training.strategy import get_strategy, is_chief

log = logging.getLogger("keras_cnn")


@dataclasses.dataclass
class RunResult:
    run_dir: str
    status: str  # finished | diverged | stopped
    history: list
    model: keras.Model
    final_val_accuracy: float | None
    best_val_accuracy: float | None
    seconds: float
    images_per_sec: float
    class_names: list


def run_name(cfg):
    return cfg.run.name or f"{cfg.model.name}-{cfg.data.dataset}"


def validate(cfg):
    check_optimizer_config(cfg.optimizer, cfg.schedule)
    choose("normalization", cfg.data.normalization, ("none", "center", "standardize", "pca_whiten"))
    choose("on_corrupt policy", cfg.data.on_corrupt, ("skip", "error"))
    for label, value in (("epochs", cfg.run.epochs), ("batch size", cfg.data.batch_size), ("steps per call", cfg.run.steps_per_call)):
        if value < 1:
            raise UsageError(f"{label} must be at least 1, got {value}")
    if cfg.ema.enabled and not 0 < cfg.ema.decay < 1:
        raise UsageError(f"ema.decay must be in (0, 1), got {cfg.ema.decay}")


def train(cfg: TrainConfig, callbacks=()):
    validate(cfg)
    precision = resolve_precision(cfg.run.precision)
    # First TF work of the run: MultiWorkerMirroredStrategy must exist before the runtime starts.
    strategy = get_strategy(cfg.run.strategy)
    run_dir = os.path.join(cfg.run.output_dir, run_name(cfg))
    chief = is_chief()
    replace_existing = _check_run_dir(run_dir, cfg)
    keras.utils.set_random_seed(cfg.run.seed)
    # Data and model errors surface before anything is written, so a bad flag leaves no trace.
    data = prepare_data(cfg.data, seed=cfg.run.seed)
    replicas = strategy.num_replicas_in_sync
    if cfg.data.batch_size % replicas:
        raise UsageError(f"batch size {cfg.data.batch_size} does not split over {replicas} replicas; use a multiple of {replicas}")
    steps_per_epoch = len(data.train) // cfg.data.batch_size
    if steps_per_epoch < 1:
        raise UsageError(f"{len(data.train)} training images make no full batch of {cfg.data.batch_size}; lower --batch-size")
    if cfg.run.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.run.steps_per_epoch)
    total_steps = steps_per_epoch * cfg.run.epochs

    model_options = cfg.model.options()
    if cfg.optimizer.name != "adamw" and cfg.optimizer.weight_decay:
        model_options["weight_decay"] = cfg.optimizer.weight_decay  # L2 via the model, never both
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        with strategy.scope():
            model = create_model(cfg.model.name, data.image_shape, data.num_classes, **model_options)
            if replicas > 1:
                _synchronize_batch_norm(model)
            optimizer, schedule = build_optimizer(
                cfg.optimizer, cfg.schedule, num_replicas=replicas, steps_per_epoch=steps_per_epoch,
                total_steps=total_steps, precision=precision,
            )
            optimizer.build(model.trainable_variables)
            ema = WeightEMA(model, cfg.ema.decay) if cfg.ema.enabled else None
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    trainer = Trainer(
        model, optimizer, per_example_loss(cfg.optimizer, data.num_classes), strategy,
        global_batch_size=cfg.data.batch_size, ema=ema, jit_compile=cfg.run.jit_compile,
    )
    # A run being replaced (--overwrite, other config) must not resume from the old checkpoints.
    state = {"epoch": 0, "batch": 0, "totals": None} if replace_existing else checkpoints.restore_latest(run_dir, model, optimizer, ema)
    if cfg.run.init_from and not (state["epoch"] or state["batch"]):
        _warm_start(model, ema, cfg.run.init_from)
    # Only now, with data, model and warm start known good, does the run touch the disk.
    if chief:
        _create_run_dir(run_dir, cfg, replace_existing, data, {"precision": precision, "replicas": replicas})
    start_epoch, start_batch = state["epoch"], state["batch"]
    history = [r for r in reports.read_history(os.path.join(run_dir, "history.csv")) if r["epoch"] <= start_epoch]
    if chief:
        data.normalizer.save(run_dir)
        _plot_schedule(schedule, total_steps, run_dir)
    if start_epoch or start_batch:
        log.info("resuming %s at epoch %d, batch %d", run_dir, start_epoch + 1, start_batch)

    def distributed(split, training, epoch=0, start=0):
        return strategy.distribute_datasets_from_function(
            lambda ctx: make_dataset(
                split, cfg.data, training=training, seed=cfg.run.seed, epoch=epoch,
                normalizer=data.normalizer, input_context=ctx, start_batch=start,
            )
        )

    val_ds = distributed(data.validation, False) if data.validation is not None else None
    progress = _Progress(cfg.run.epochs, steps_per_epoch)
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard")) if chief else None
    status, train_seconds, train_images = "finished", 0.0, 0
    run_start = time.perf_counter()
    callbacks = list(callbacks)
    if cfg.run.layer_stats and chief:
        from keras_cnn.diagnostics import LayerStats

        probe = data.validation if data.validation is not None else data.train
        images = data.normalizer(probe.images[:256])
        callbacks.append(LayerStats(run_dir, (images, tf.constant(probe.labels[:256]))))
    for cb in callbacks:
        cb.on_train_begin(trainer)
    first_call = int(optimizer.iterations.numpy()) == 0

    for epoch in range(start_epoch, cfg.run.epochs):
        for cb in callbacks:
            cb.on_epoch_begin(trainer, epoch + 1)
        iterator = iter(distributed(data.train, True, epoch, start_batch))
        # Mid-epoch resume carries the partial sums, so the epoch's row covers all of it.
        totals = np.array(state["totals"]) if start_batch and state.get("totals") else np.zeros(3)
        batch, epoch_start, carried = start_batch, time.perf_counter(), totals[2]
        while batch < steps_per_epoch and status == "finished":
            n = min(cfg.run.steps_per_call, steps_per_epoch - batch)
            if cfg.run.checkpoint_every_steps:  # stop the call at the next checkpoint boundary
                n = min(n, cfg.run.checkpoint_every_steps - batch % cfg.run.checkpoint_every_steps)
            if first_call:  # one step alone, so callbacks see the true initial loss
                n, first_call = 1, False
            call_totals = trainer.train_steps(iterator, n)
            totals += call_totals
            batch += n
            # loss/accuracy: the epoch so far; batch_loss: this call's steps alone.
            logs = {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2],
                    "batch_loss": call_totals[0] / call_totals[2]}
            if not math.isfinite(logs["loss"]):
                status = "diverged"
            progress.update(epoch + 1, batch, logs, (totals[2] - carried) / (time.perf_counter() - epoch_start))
            for cb in callbacks:
                cb.on_batch_end(trainer, int(optimizer.iterations.numpy()), logs)
            if trainer.stop_training and status == "finished":
                status = "stopped"
            if cfg.run.checkpoint_every_steps and batch % cfg.run.checkpoint_every_steps == 0 and batch < steps_per_epoch and status == "finished":
                checkpoints.save(run_dir, model, optimizer, ema, epoch=epoch, batch=batch, keep=cfg.run.keep_checkpoints, chief=chief, totals=totals)
        start_batch = 0
        seconds = time.perf_counter() - epoch_start
        train_seconds += seconds
        train_images += int(totals[2] - carried)
        row = {
            "epoch": epoch + 1,
            "step": int(optimizer.iterations.numpy()),
            "lr": float(schedule(optimizer.iterations - 1 if optimizer.iterations.numpy() else 0)),
            "train_loss": totals[0] / max(totals[2], 1),
            "train_accuracy": totals[1] / max(totals[2], 1),
            "images_per_sec": (totals[2] - carried) / seconds,
            "seconds": seconds,
        }
        if status == "diverged":
            history.append(row)
            break
        if val_ds is not None:
            metrics = trainer.evaluate(val_ds)
            row.update(val_loss=metrics["loss"], val_accuracy=metrics["accuracy"], val_top5_accuracy=metrics["top5_accuracy"])
            if ema is not None:
                ema.swap()
                row["ema_val_accuracy"] = trainer.evaluate(val_ds)["accuracy"]
                ema.swap()
        history.append(row)
        progress.epoch_done(row)
        for cb in callbacks:
            cb.on_epoch_end(trainer, epoch + 1, row)
        if chief:
            reports.write_history(os.path.join(run_dir, "history.csv"), history)
            _tensorboard(writer, row)
        best = _is_best(history)
        checkpoints.save(run_dir, model, optimizer, ema, epoch=epoch + 1, batch=0, keep=cfg.run.keep_checkpoints, chief=chief, best=best)
        if trainer.stop_training:
            status = "stopped" if status == "finished" else status
            break

    if ema is not None and status != "diverged":
        ema.swap()  # the saved model carries the averaged weights
    if chief:
        reports.write_history(os.path.join(run_dir, "history.csv"), history)
        if history:
            reports.plot_curves(history, os.path.join(run_dir, "curves.png"))
        if status != "diverged":
            reports.save_model_atomically(model, os.path.join(run_dir, "model.keras"))
            if cfg.run.export:
                _export_saved_model(run_dir, model)
    result = _result(run_dir, status, history, model, run_start, train_seconds, train_images, data.class_names)
    for cb in callbacks:
        cb.on_train_end(trainer, {"status": status})
    if chief:  # once per run id: a rerun of a finished (or killed-while-reporting) run adds no row
        reports.append_row(os.path.join(cfg.run.output_dir, "runs.csv"), {
            "run": run_name(cfg), "run_id": _run_id(run_dir), "model": cfg.model.name, "dataset": cfg.data.dataset,
            "parameters": model.count_params(), "epochs": len(history),
            "best_val_accuracy": _fmt(result.best_val_accuracy), "final_val_accuracy": _fmt(result.final_val_accuracy),
            "seconds": round(result.seconds, 1), "images_per_sec": round(result.images_per_sec, 1), "status": status,
        }, reports.RUNS_COLUMNS, unique="run_id")
    progress.summary(result, cfg)
    return result


def _warm_start(model, ema, source):
    """Fine-tuning: start from another run's final weights (model.keras) or a checkpoint's."""
    if os.path.isdir(source):
        path = os.path.join(source, "model.keras")
        if not os.path.isfile(path):
            raise UsageError(f"--init-from {source} has no model.keras; give a finished run or a checkpoint .npz")
        weights = keras.models.load_model(path).weights
        if [tuple(w.shape) for w in weights] != [tuple(w.shape) for w in model.weights]:
            raise UsageError(f"--init-from {source} holds another architecture or class count; its weights do not fit this model")
        for target, value in zip(model.weights, weights):
            target.assign(value.numpy())
    elif os.path.isfile(source):
        checkpoints.restore_weights(source, model)
    else:
        raise UsageError(f"--init-from {source} does not exist; give a run directory or a checkpoint .npz")
    if ema is not None:  # the average starts from the warm-started weights, not the random ones
        for shadow, variable in zip(ema.shadows, ema.sources):
            shadow.assign(variable.value)


def _remove_stale_temp_files(run_dir):
    """Temp files of a writer that was killed before its rename (one process owns a run dir)."""
    for directory in (run_dir, os.path.join(run_dir, "checkpoints"), os.path.join(run_dir, "saved_model")):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if name.startswith((".tmp-", ".staging-")) or (name.startswith(".") and name.count(".") >= 2 and not name.startswith("..")):
                path = os.path.join(directory, name)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)


def _run_id(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        return json.load(f).get("run_id", "")


def _export_saved_model(run_dir, model):
    """<run>/saved_model/1/: the version TensorFlow Serving loads straight from the run."""
    from keras_cnn.export import write_saved_model
    from keras_cnn.data import Normalizer

    version_dir = os.path.join(run_dir, "saved_model", "1")
    if os.path.isdir(version_dir):
        return  # a rerun of a finished run: the export is already there
    with open(os.path.join(run_dir, "config.json")) as f:
        record = json.load(f)
    write_saved_model(model, record, Normalizer.load(run_dir), version_dir)


def _synchronize_batch_norm(model):
    """Batch statistics over the global batch when there are several replicas.

    Otherwise each replica normalizes by its own slice and updates its own moving
    statistics, which then differ between workers (seen here under
    MultiWorkerMirroredStrategy: identical kernels, different moving means). Synchronized
    BN makes a distributed step compute what one replica would on the whole batch.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def _fmt(value):
    return "" if value is None else round(value, 4)


def _is_best(history):
    accs = [r.get("val_accuracy") for r in history if r.get("val_accuracy") not in (None, "")]
    return bool(accs) and accs[-1] >= max(accs)


def _result(run_dir, status, history, model, run_start, train_seconds, train_images, class_names):
    accs = [r.get("val_accuracy") for r in history if r.get("val_accuracy") not in (None, "")]
    return RunResult(
        run_dir=run_dir, status=status, history=history, model=model,
        final_val_accuracy=accs[-1] if accs and status != "diverged" else None,
        best_val_accuracy=max(accs) if accs else None,
        seconds=time.perf_counter() - run_start,
        images_per_sec=train_images / train_seconds if train_seconds else 0.0,
        class_names=class_names,
    )


def _check_run_dir(run_dir, cfg):
    """Refuse to mix two configs in one run dir; True when --overwrite must replace it."""
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        return False
    try:
        with open(config_path) as f:
            existing = json.load(f).get("config", {})
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {config_path} ({err}); pass --overwrite to replace the run") from None
    differs = _differences(existing, cfg.to_dict(), ignore={"run.overwrite"})
    if differs and not cfg.run.overwrite:
        raise UsageError(
            f"run {run_dir} exists with a different config ({', '.join(differs[:4])}); "
            "choose another --name, or pass --overwrite to replace it"
        )
    return bool(differs)


def _create_run_dir(run_dir, cfg, replace_existing, data, resolved):
    if replace_existing:
        trash = f"{run_dir}.replaced-{os.getpid()}"
        os.replace(run_dir, trash)  # atomic: a reader never sees a half-deleted run
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create run directory {run_dir} ({err.strerror}); choose a writable --output-dir") from None
    _remove_stale_temp_files(run_dir)
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        record = {
            "run_id": uuid.uuid4().hex[:12],  # tells this run from an earlier one of the same name
            "config": cfg.to_dict(),
            # What the config resolved to: the split actually carved and where the data came from.
            "data": {
                "source": data.description, "train_size": len(data.train), "val_size": data.val_size,
                "split_seed": cfg.data.split_seed, "image_shape": list(data.image_shape),
                "class_names": data.class_names, "normalization": data.normalizer.to_dict(),
            },
            "resolved": resolved,  # what "auto" settings became on this machine
            "reproducibility": reproducibility_record(cfg),
            "schema_version": SCHEMA_VERSION,
        }
        reports.write_json(config_path, record)


def _differences(old, new, ignore, prefix=""):
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        path = f"{prefix}{k}"
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, ignore, f"{path}.")
        elif path not in ignore and (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            out.append(path)
    return out


def _plot_schedule(schedule, total_steps, run_dir):
    steps = np.arange(max(total_steps, 1))
    rates = schedule(tf.constant(steps, tf.float32)).numpy()
    reports.plot_learning_rate(steps, rates, os.path.join(run_dir, "lr.png"))


def _tensorboard(writer, row):
    with writer.as_default(step=row["epoch"]):
        for key, value in row.items():
            if key != "epoch" and value not in (None, ""):
                tf.summary.scalar(key, value)
    writer.flush()


class _Progress:
    """A live line on a terminal; one plain line per epoch otherwise (logs, CI)."""

    def __init__(self, epochs, steps_per_epoch):
        self.epochs, self.steps = epochs, steps_per_epoch
        self.tty = sys.stdout.isatty()

    def update(self, epoch, batch, logs, images_per_sec):
        if self.tty:
            done = int(20 * batch / self.steps)
            sys.stdout.write(
                f"\repoch {epoch}/{self.epochs} [{'=' * done}{'.' * (20 - done)}] "
                f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} {images_per_sec:,.0f} img/s"
            )
            sys.stdout.flush()

    def epoch_done(self, row):
        val = f" val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f}" if "val_accuracy" in row else ""
        ema = f" ema_val_acc {row['ema_val_accuracy']:.4f}" if "ema_val_accuracy" in row else ""
        line = (
            f"epoch {row['epoch']}/{self.epochs} loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
            f"{val}{ema} lr {row['lr']:.4g} {row['images_per_sec']:,.0f} img/s {row['seconds']:.1f}s"
        )
        print(("\r" if self.tty else "") + line + (" " * 10 if self.tty else ""), flush=True)

    def summary(self, result, cfg):
        acc = f"{result.final_val_accuracy:.4f}" if result.final_val_accuracy is not None else "n/a"
        best = f"{result.best_val_accuracy:.4f}" if result.best_val_accuracy is not None else "n/a"
        print(
            f"Run {result.run_dir}: {result.status} after {len(result.history)} epoch(s) of {cfg.model.name} on "
            f"{cfg.data.dataset} in {result.seconds:.1f}s ({result.images_per_sec:,.0f} training img/s); "
            f"final validation accuracy {acc} (best {best}). History in history.csv, curves in curves.png, "
            f"model in model.keras, one row appended to {os.path.join(cfg.run.output_dir, 'runs.csv')}.",
            flush=True,
        )
