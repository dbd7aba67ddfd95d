"""Checkpoints that resume exactly: model, optimizer and EMA variables plus the loop position.

One .npz per checkpoint, written atomically (temp file + rename), so a kill during a write
leaves the previous checkpoint intact. The last `keep` are kept, and `best.npz` when asked.
"""
import glob
import io
import json
import os
import re

import numpy as np

from keras_cnn.errors import UsageError
from keras_cnn.reports import atomic_write

PATTERN = re.compile(r"ckpt-e(\d+)-b(\d+)\.npz$")


def _variables(model, optimizer, ema):
    # model.variables, not weights: dropout's seed-generator state must resume too.
    groups = {"model": list(model.variables), "optimizer": list(optimizer.variables)}
    if ema is not None:
        groups["ema"] = list(ema.shadows)
    return groups


def save(run_dir, model, optimizer, ema, *, epoch, batch, keep=3, chief=True, best=False, totals=None):
    if not chief:
        return
    directory = os.path.join(run_dir, "checkpoints")
    os.makedirs(directory, exist_ok=True)
    arrays = {"state": np.frombuffer(json.dumps({"epoch": epoch, "batch": batch, "totals": list(map(float, totals)) if totals is not None else None}).encode(), np.uint8)}
    for group, variables in _variables(model, optimizer, ema).items():
        for i, v in enumerate(variables):
            arrays[f"{group}/{i}"] = np.asarray(v.numpy())
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    atomic_write(os.path.join(directory, f"ckpt-e{epoch:04d}-b{batch:06d}.npz"), payload, mode="wb")
    if best:
        atomic_write(os.path.join(directory, "best.npz"), payload, mode="wb")
    for stale in list_checkpoints(run_dir)[:-keep]:
        os.unlink(stale)


def list_checkpoints(run_dir):
    found = glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.npz"))
    return sorted(p for p in found if PATTERN.search(p))


def restore_latest(run_dir, model, optimizer, ema):
    """Load the newest checkpoint into the variables; returns {"epoch", "batch"} to resume at."""
    paths = list_checkpoints(run_dir)
    if not paths:
        return {"epoch": 0, "batch": 0, "totals": None}
    return restore(paths[-1], model, optimizer, ema)


def restore(path, model, optimizer, ema=None, *, weights_only=False):
    with np.load(path) as archive:
        groups = {"model": list(model.variables)} if weights_only else _variables(model, optimizer, ema)
        for group, variables in groups.items():
            stored = sorted((k for k in archive.files if k.startswith(f"{group}/")), key=lambda k: int(k.split("/")[1]))
            if len(stored) != len(variables):
                raise UsageError(f"checkpoint {path} holds {len(stored)} {group} variables, the run has {len(variables)}; it belongs to another model")
            for key, variable in zip(stored, variables):
                value = archive[key]
                if tuple(value.shape) != tuple(variable.shape):
                    raise UsageError(
                        f"checkpoint {path} does not fit this model: {variable.path} is {tuple(variable.shape)} "
                        f"here, {tuple(value.shape)} there (a different model or class count?)"
                    )
                variable.assign(value)
        return json.loads(archive["state"].tobytes().decode())


def restore_weights(path, model):
    """Model weights from a checkpoint for export: the EMA values where the run kept an EMA."""
    try:
        archive = np.load(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read checkpoint {path} ({err})") from None
    with archive:
        has_ema = any(k.startswith("ema/") for k in archive.files)
    restore(path, model, None, weights_only=True)
    if has_ema:
        with np.load(path) as archive:
            averaged = [v for v in model.weights if v.dtype == "float32"]  # WeightEMA's order
            keys = sorted((k for k in archive.files if k.startswith("ema/")), key=lambda k: int(k.split("/")[1]))
            for key, variable in zip(keys, averaged):
                variable.assign(archive[key])
