"""One folder's MLflow run on one tracking server, and uploads that can be repeated safely.

Every upload asks the server what it holds first (metric steps, params, the logged model), so the
training-time uploader and `track.py sync` can both run over the same folder, any number of times,
and each epoch's metrics land once. Only MlflowClient is used (never the fluent `mlflow.start_run`
API), so nothing here touches the process-wide active run or tracking URI of a user's own code.
"""

import importlib.metadata
import logging
import os
import pathlib
import shutil
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from keras_cnn.io import make_private_dir
from keras_cnn.tracking import state

log = logging.getLogger("keras_cnn")

# MLflow's limits per log_batch call (params, tags, metrics) and a param value's length.
MAX_PARAMS, MAX_TAGS, MAX_METRICS, MAX_PARAM_LENGTH = 100, 100, 1000, 6000
# Bounds on each HTTP request, unless the user set them: MLflow's own defaults (7 retries with
# exponential backoff, 120 s timeout) could keep one call busy for many minutes.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a progress bar per artifact copy, on the training screen
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # two "View run at" lines per run on stdout
}
# The metric whose steps say which epochs a run already holds (logged in the same batch as the rest).
EPOCH_MARKER = "epoch"
SERVED_MODEL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "served.py")
STATUSES = {"finished": "FINISHED", "diverged": "FAILED", "failed": "FAILED", "stopped": "FINISHED"}


def client(uri: str):
    """An MlflowClient for `uri` with bounded HTTP calls and MLflow's INFO logging kept off the screen."""
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)
    from mlflow import MlflowClient  # its import sets the "mlflow" logger to INFO: quieted after it

    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A warning per retry of a refused connection: the uploader's own one-line warning says it once.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    # MLflow's advice on logging models (type hints, an input example): the tensor signature covers both.
    warnings.filterwarnings(
        "ignore", message=".*(type hints to the `predict`|input example was not)", category=UserWarning
    )
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def describe(err: BaseException) -> str:
    """A tracking failure in a few words: what the network said, not MLflow's nested retry report."""
    text = " ".join(str(err).split())
    for cause, words in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Name or service not known", "unknown host"),
        ("No space left", "no space left on the artifact store"),
    ):
        if cause in text:
            return words
    text = text or type(err).__name__
    return text if len(text) < 200 else text[:197] + "..."


def _artifact_location(uri: str, experiment: str) -> str | None:
    """A local SQLite store keeps artifacts beside its database (MLflow's default is ./mlruns in the
    working directory, outside the folder the user named); a server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    root = os.path.dirname(uri[len("sqlite:///") :])
    return pathlib.Path(root, "mlflow-artifacts", experiment).as_uri()


class Session:
    """The MLflow run of `folder` on `uri`, found through tracking.json or created."""

    def __init__(self, folder: str, uri: str):
        self.folder, self.uri = folder, uri
        self.client = client(uri)
        self.run_id: str = ""
        self._steps: set[int] | None = None

    # ------------------------------------------------------------------ the run itself

    def open(
        self,
        experiment: str,
        *,
        identity: str,
        run_name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
    ) -> "Session":
        """Continue the folder's MLflow run, or create it (in `experiment`, nested under `parent_run_id`).

        `identity` tells this folder's contents from an earlier folder of the same name (a run's
        record run_id): a folder replaced with --overwrite gets a new MLflow run."""
        from mlflow.exceptions import MlflowException

        with state.locked(self.folder):
            known = state.entry(self.folder, self.uri)
            if known.get("run_id") and known.get("identity") == identity:
                try:
                    run = self.client.get_run(known["run_id"])
                    if run.info.lifecycle_stage == "active":
                        self.run_id = run.info.run_id
                        if run.info.status != "RUNNING":
                            self.client.update_run(self.run_id, status="RUNNING")
                        return self
                except MlflowException as err:  # deleted on the server, or a server with a fresh database
                    if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise
            experiment_id = self._experiment_id(experiment)
            all_tags = {**tags, "mlflow.runName": run_name}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = self.client.create_run(experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
            state.update(
                self.folder,
                self.uri,
                experiment_id=experiment_id,
                run_id=self.run_id,
                identity=identity,
                model_logged=False,
                registered={},
            )
        return self

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage != "active":
                self.client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name, artifact_location=_artifact_location(self.uri, name)))
        except MlflowException:  # another worker created it a moment ago
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def end(self, status: str) -> None:
        """keras_cnn's status as a tag, and the MLflow run status it maps to (KILLED for interrupts)."""
        self.set_tags({"status": status})
        self.client.set_terminated(self.run_id, STATUSES.get(status, "KILLED"))

    # ------------------------------------------------------------------ uploads, each idempotent

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params not yet on the run (MLflow refuses to change a logged param; identity keys never change)."""
        from mlflow.entities import Param

        held = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(params.items()) if k not in held]
        for chunk in _chunks(new, MAX_PARAMS):
            self.client.log_batch(self.run_id, params=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        for chunk in _chunks([RunTag(k, str(v)) for k, v in sorted(tags.items())], MAX_TAGS):
            self.client.log_batch(self.run_id, tags=chunk)

    def logged_epochs(self) -> set[int]:
        if self._steps is None:
            self._steps = {m.step for m in self.client.get_metric_history(self.run_id, EPOCH_MARKER)}
        return self._steps

    def log_history(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Each history row (step = its epoch) the run does not hold yet; returns how many were logged."""
        from mlflow.entities import Metric

        done, now = self.logged_epochs(), int(time.time() * 1000)
        todo = [r for r in rows if int(r["epoch"]) not in done]
        per_row = max(len(r) for r in todo) if todo else 1
        for chunk in _chunks(todo, max(1, MAX_METRICS // per_row)):
            # The epoch marker goes with its row's metrics, in one request: a row is on the server whole or not at all.
            metrics = [
                Metric(key, float(value), now, int(row["epoch"]))
                for row in chunk
                for key, value in row.items()
                if value not in (None, "") and key != EPOCH_MARKER
            ]
            metrics += [Metric(EPOCH_MARKER, float(row["epoch"]), now, int(row["epoch"])) for row in chunk]
            self.client.log_batch(self.run_id, metrics=metrics)
            done.update(int(r["epoch"]) for r in chunk)
        return len(todo)

    def log_summary(self, metrics: Mapping[str, Any], step: int) -> None:
        """Run-level numbers (best and final accuracy, seconds) at step = epochs trained, once per step."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        new = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if v not in (None, "") and step not in {m.step for m in self.client.get_metric_history(self.run_id, k)}
        ]
        if new:
            self.client.log_batch(self.run_id, metrics=new)

    def log_files(self, paths: Iterable[str], artifact_dir: str | None = None) -> None:
        """Files (re-uploading one replaces it) or whole folders, as they are on disk now."""
        for path in paths:
            if os.path.isdir(path):
                self.client.log_artifacts(self.run_id, path, os.path.join(artifact_dir or "", os.path.basename(path)))
            elif os.path.isfile(path):
                self.client.log_artifact(self.run_id, path, artifact_dir)

    def log_model(self, saved_model_dir: str, image_shape: list[int], classes: int, register: str | None) -> None:
        """The exported SavedModel as an MLflow pyfunc model (artifact `model`), registered as `register`."""
        entry = state.entry(self.folder, self.uri)
        if not entry.get("model_logged"):
            staging = make_private_dir(self.folder, ".tmp-mlflow-model-")
            try:
                target = os.path.join(staging, "model")
                _save_pyfunc(target, saved_model_dir, image_shape, classes)
                self.client.log_artifacts(self.run_id, target, "model")
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            entry = state.update(self.folder, self.uri, model_logged=True)
        registered = dict(entry.get("registered") or {})
        if register and register not in registered:
            registered[register] = self._register(register)
            state.update(self.folder, self.uri, registered=registered)

    def _register(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/model"
        return str(self.client.create_model_version(name, source, run_id=self.run_id).version)


def _save_pyfunc(target: str, saved_model_dir: str, image_shape: list[int], classes: int) -> None:
    """A "model from code" (served.py): it loads the SavedModel with TensorFlow alone, so the model
    loads with mlflow.pyfunc.load_model where keras_cnn is not installed."""
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *image_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes), "probabilities")]),
    )
    mlflow.pyfunc.save_model(
        target,
        python_model=SERVED_MODEL_FILE,
        artifacts={"saved_model": saved_model_dir},
        signature=signature,
        # Named, so MLflow does not load the model in a subprocess to infer them.
        pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in ("tensorflow", "mlflow", "numpy")],
    )


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
