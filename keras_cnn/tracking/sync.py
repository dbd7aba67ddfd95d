"""A folder as a whole onto its MLflow run: what the uploader does at a run's end, and `track.py sync`.

A run folder becomes one MLflow run: the flattened config as params, every history.csv row as metrics
(step = epoch), tags, artifacts and the exported model. A search or sweep folder becomes a parent run
with one nested child per trial or arm seed (the run folders under <folder>/runs/). Everything comes
from the folder, which is the source of truth, and every upload is idempotent (session.py).
"""

import json
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from keras_cnn.config import TrainConfig
from keras_cnn.errors import RunDamaged, UsageError
from keras_cnn.hardware import cpu_model
from keras_cnn.io import read_csv
from keras_cnn.run_dir import RunDir
from keras_cnn.tracking import experiment_name, resolve_uri, state
from keras_cnn.tracking.session import Session

log = logging.getLogger("keras_cnn")

# What the folder kinds are recognised by.
PARENT_RECORDS = {"search": "search.json", "sweep": "sweep.json"}
# Config fields that are not params: where a run is written and tracked, and its epoch budget, which
# an extended run changes (MLflow params cannot change; it is the `epochs` tag instead).
NOT_PARAMS = {
    "run.epochs",
    "run.overwrite",
    "run.output_dir",
    "run.track",
    "run.tracking_uri",
    "run.experiment",
    "run.register",
}
# runs.csv columns -> run-level metrics; history.csv's per-epoch seconds and images_per_sec keep their names.
SUMMARY_METRICS = {
    "best_val_accuracy": "best_val_accuracy",
    "final_val_accuracy": "final_val_accuracy",
    "seconds": "run_seconds",
    "images_per_sec": "run_images_per_sec",
}
RUN_ARTIFACTS = ("config.json", "history.csv", "curves.png", "lr.png", "layer_stats.csv")
PARENT_ARTIFACTS = ("search.json", "sweep.json", "trials.csv", "sweep.csv", "search.png")


def flat_params(cfg: TrainConfig) -> dict[str, Any]:
    """`section.field` -> value, model options as `model.<option>` (the keys --set takes)."""
    out: dict[str, Any] = {}
    for section, fields in cfg.to_dict().items():
        for name, value in fields.items():
            if section == "model" and name == "options":
                out.update({f"model.{k}": v for k, v in value.items()})
            else:
                out[f"{section}.{name}"] = value
    return {k: _text(v) for k, v in out.items() if k not in NOT_PARAMS}


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def parent_folder(run_path: str) -> tuple[str, str] | None:
    """(folder, kind) of the search or sweep a run belongs to (<folder>/runs/<run>), or None."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(run_path)))
    for kind, record in PARENT_RECORDS.items():
        if os.path.isfile(os.path.join(folder, record)):
            return folder, kind
    return None


def run_status(run_dir: RunDir) -> dict[str, str] | None:
    """The run's runs.csv row (written when it ended), or None while it runs or after a kill."""
    run_id = run_dir.run_id()
    rows = [r for r in read_csv(os.path.join(run_dir.output_dir, "runs.csv")) if r.get("run_id") == run_id]
    return rows[-1] if rows else None


# --------------------------------------------------------------------------- a run


def open_run(run_path: str, uri: str, experiment: str | None = None) -> tuple[Session, dict[str, Any]]:
    """The run folder's MLflow run (created, with its parent's, when missing) and its record."""
    run_dir = RunDir(run_path)
    record = run_dir.read_record()
    cfg = TrainConfig.from_dict(record["config"])
    name = experiment_name(experiment or cfg.run.experiment, cfg.data.dataset)
    parent, kind = None, "run"
    found = parent_folder(run_path)
    if found:
        parent = open_parent(found[0], found[1], uri, name).run_id
        kind = "trial" if found[1] == "search" else "arm"
    resolved = record.get("resolved", {})
    tags = {
        "keras_cnn.kind": kind,
        "keras_cnn.run_dir": os.path.abspath(run_path),
        "keras_cnn.run_id": record.get("run_id", ""),
        "model": cfg.model.name,
        "dataset": cfg.data.dataset,
        "precision": resolved.get("precision", ""),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "mlflow.source.name": "keras_cnn",
    }
    commit = record.get("reproducibility", {}).get("git_commit")
    if commit:
        tags["mlflow.source.git.commit"] = commit
    session = Session(run_path, uri).open(
        name, identity=str(record.get("run_id", "")), run_name=run_dir.name, tags=tags, parent_run_id=parent
    )
    return session, record


def start_run(session: Session, record: dict[str, Any]) -> None:
    """What is known when a run starts: params and the tags that change over its life."""
    cfg = TrainConfig.from_dict(record["config"])
    session.log_params(flat_params(cfg))
    session.set_tags({"status": "running", "epochs": cfg.run.epochs})


def sync_run(
    run_path: str, uri: str | None = None, *, experiment: str | None = None, register: str | None = None
) -> dict[str, Any]:
    """Everything the run folder holds onto its MLflow run; returns what was done (for track.py)."""
    run_dir = RunDir(run_path)
    uri = uri or state.read(run_path).get("last_uri") or resolve_uri(None, run_dir.output_dir)
    session, record = open_run(run_path, uri, experiment)
    start_run(session, record)
    cfg = TrainConfig.from_dict(record["config"])
    history = run_dir.read_history()
    logged = session.log_history(history)
    session.log_files([run_dir.file(f) for f in RUN_ARTIFACTS] + _evaluations(run_path))
    ended = run_status(run_dir)
    status = ended["status"] if ended else "unfinished"
    if ended:
        session.set_tags({"parameters": ended.get("parameters", "")})
        session.log_summary(
            {metric: ended.get(column) for column, metric in SUMMARY_METRICS.items()}, step=len(history)
        )
        saved_model = os.path.join(run_dir.saved_model_dir, "1")
        if status == "finished" and os.path.isdir(saved_model):
            data = record["data"]
            session.log_model(saved_model, data["image_shape"], len(data["class_names"]), register or cfg.run.register)
        session.end(status)
    else:
        session.set_tags({"status": status})
    return {"run_id": session.run_id, "uri": uri, "epochs_logged": logged, "status": status}


def _evaluations(run_path: str) -> list[str]:
    """evaluate.py's output folders inside the run (eval-<split>...)."""
    try:
        return sorted(os.path.join(run_path, e) for e in os.listdir(run_path) if e.startswith("eval-"))
    except OSError:
        return []


# ------------------------------------------------------------------ a search or sweep


def open_parent(folder: str, kind: str, uri: str, experiment: str) -> Session:
    """The search's or sweep's own MLflow run (created when missing)."""
    tags = {"keras_cnn.kind": kind, "keras_cnn.run_dir": os.path.abspath(folder), "mlflow.source.name": "keras_cnn"}
    return Session(folder, uri).open(
        experiment, identity=f"{kind}:{os.path.abspath(folder)}", run_name=os.path.basename(folder), tags=tags
    )


def parent_params(folder: str, kind: str) -> dict[str, str]:
    record = _read_json(os.path.join(folder, PARENT_RECORDS[kind]))
    params = {k: v if isinstance(v, (str, int, float)) else json.dumps(v, sort_keys=True) for k, v in record.items()}
    return {k: str(v) for k, v in params.items() if k != "base"}  # the base config is each child's params


def start_parent(folder: str, kind: str, uri: str, experiment: str) -> Session:
    session = open_parent(folder, kind, uri, experiment)
    session.log_params(parent_params(folder, kind))
    session.set_tags({"status": "running"})
    return session


def end_parent(folder: str, kind: str, uri: str, experiment: str, status: str) -> None:
    """At the search's or sweep's end: its tables and plots, and its status (kept locally first)."""
    state.update(folder, uri, status=status)
    session = start_parent(folder, kind, uri, experiment)
    session.log_files([os.path.join(folder, f) for f in PARENT_ARTIFACTS])
    session.end(status)


def log_failed_trial(folder: str, kind: str, uri: str, experiment: str, trial: Mapping[str, Any], error: str) -> None:
    """A trial refused before its run folder was made: a FAILED child holding its values and the error."""
    parent = start_parent(folder, kind, uri, experiment)
    trial_id = str(trial["trial_id"])
    with state.locked(folder):
        failed = dict(state.entry(folder, uri).get("failed_trials") or {})
        if trial_id in failed:
            return
        tags = {"keras_cnn.kind": "trial" if kind == "search" else "arm", "mlflow.parentRunId": parent.run_id}
        experiment_id = state.entry(folder, uri)["experiment_id"]
        run = parent.client.create_run(experiment_id, run_name=f"trial_{trial_id}", tags=tags)
        failed[trial_id] = run.info.run_id
        state.update(folder, uri, failed_trials=failed)
    child = Session(folder, uri)
    child.run_id = run.info.run_id
    child.log_params({k: v for k, v in trial.items() if "." in k or k in ("trial_id", "seed", "arm")})
    child.set_tags({"error": error[:5000]})
    child.end("failed")


def sync_folder(path: str, uri: str | None = None, *, experiment: str | None = None) -> list[dict[str, Any]]:
    """`track.py sync`: a run folder, or a search or sweep folder with every run under it."""
    path = os.path.abspath(path)
    if os.path.isfile(os.path.join(path, "config.json")):
        return [sync_run(path, uri, experiment=experiment)]
    for kind, record_file in PARENT_RECORDS.items():
        if os.path.isfile(os.path.join(path, record_file)):
            return _sync_parent(path, kind, uri, experiment)
    raise UsageError(f"{path} is not a run, search or sweep folder (no config.json, search.json or sweep.json)")


def _sync_parent(folder: str, kind: str, uri: str | None, experiment: str | None) -> list[dict[str, Any]]:
    uri = uri or state.read(folder).get("last_uri") or resolve_uri(None, os.path.dirname(folder))
    runs_root = os.path.join(folder, "runs")
    children = sorted(os.path.join(runs_root, e) for e in _listdir(runs_root))
    children = [c for c in children if os.path.isfile(os.path.join(c, "config.json"))]
    name = experiment or _parent_experiment(folder, kind, children)
    done = [sync_run(child, uri, experiment=name) for child in children]
    recorded = state.entry(folder, uri).get("status")
    session = start_parent(folder, kind, uri, name)
    session.log_files([os.path.join(folder, f) for f in PARENT_ARTIFACTS])
    if recorded:
        session.end(recorded)
    done.append({"run_id": session.run_id, "uri": uri, "status": recorded or "unfinished", "epochs_logged": 0})
    return done


def _parent_experiment(folder: str, kind: str, children: list[str]) -> str:
    """The experiment the parent was created in, else the first child's (they share one)."""
    for child in children:
        try:
            cfg = RunDir(child).read_config()
        except (RunDamaged, UsageError):
            continue
        return experiment_name(cfg.run.experiment, cfg.data.dataset)
    record = _read_json(os.path.join(folder, PARENT_RECORDS[kind]))
    dataset = (record.get("base") or {}).get("data", {}).get("dataset", "cifar10")
    return experiment_name(None, dataset)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
