"""A search's or sweep's MLflow parent run, kept by the process that runs the search or sweep.

    parent = ParentTracker(search_dir, "search", base_config)
    parent.start()                                   # the parent run, its settings as params
    cfg = parent.child_config(trial_config)          # children: same server, same experiment
    parent.failed_trial(row, error)                  # a trial refused before it ran
    parent.end("finished")

Each call is synchronous but bounded (session.HTTP_BOUNDS) and guarded: a failure warns once and
the search goes on; `track.py sync <folder>` completes the parent and every child later.
"""

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from keras_cnn.config import TrainConfig
from keras_cnn.tracking import experiment_name, mark_failed, recently_failed, resolve_uri, state, sync
from keras_cnn.tracking.session import describe

log = logging.getLogger("keras_cnn")


class ParentTracker:
    def __init__(self, folder: str, kind: str, base: TrainConfig):
        self.folder, self.kind = os.path.abspath(folder), kind
        self.enabled = base.run.track == "mlflow"
        self.uri = resolve_uri(base.run.tracking_uri, os.path.dirname(self.folder))
        self.experiment = experiment_name(base.run.experiment, base.data.dataset)

    def child_config(self, cfg: TrainConfig) -> TrainConfig:
        """A trial's config, tracked on the parent's server and in its experiment (MLflow nests runs
        of one experiment only)."""
        if not self.enabled:
            return cfg
        return cfg.replace(run={"track": "mlflow", "tracking_uri": self.uri, "experiment": self.experiment})

    def start(self) -> None:
        self._guard(lambda: sync.start_parent(self.folder, self.kind, self.uri, self.experiment))

    def failed_trial(self, trial: Mapping[str, Any], error: str) -> None:
        run_dir = str(trial.get("run_dir") or "")
        if run_dir and state.entry(run_dir, self.uri).get("run_id"):
            return  # the trial's own tracker made its MLflow run and ended it as failed
        self._guard(lambda: sync.log_failed_trial(self.folder, self.kind, self.uri, self.experiment, trial, error))

    def end(self, status: str) -> None:
        self._guard(lambda: sync.end_parent(self.folder, self.kind, self.uri, self.experiment, status))

    def _guard(self, job: Callable[[], None]) -> None:
        if not self.enabled or recently_failed(self.uri):
            return
        try:
            job()
        except Exception as err:  # the server's problem is never the search's
            mark_failed(self.uri)
            log.warning(
                "warning: MLflow tracking at %s failed (%s); the %s goes on untracked. "
                "Upload it later with: python scripts/track.py sync %s",
                self.uri,
                describe(err),
                self.kind,
                self.folder,
            )
