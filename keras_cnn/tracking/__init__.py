"""Experiment tracking: runs, searches and sweeps logged to MLflow (`--track mlflow`).

    python scripts/train.py --model resnet20 --track mlflow          # sqlite runs/mlflow.db, or $MLFLOW_TRACKING_URI
    python scripts/track.py sync runs/resnet20-cifar10               # upload what a failed server missed

The run folder stays the source of truth; MLflow gets a copy. A run's MLflow run id lives in
<folder>/tracking.json, so a resumed run continues the same MLflow run, and every upload first asks
the server what it already holds, so nothing is logged twice (session.py). Training never waits on
the server: uploads run on a background thread with bounded HTTP timeouts (tracker.py); when the
server is down, the run warns once and goes on, and `track.py sync` completes it later (sync.py).

Layers: state.py (where the run id is kept), session.py (one MLflow run's uploads, idempotent),
sync.py (a run, search or sweep folder as a whole), tracker.py (the training-time uploader),
served.py (the pyfunc model over the exported SavedModel), leaderboard.py (runs read back).
MLflow is the `mlflow` extra, imported only where tracking is asked for.
"""

import importlib.util
import os
import time

from keras_cnn.errors import UsageError

EXTRA = "pip install -e '.[mlflow]'"
# After a server failed, this process leaves it alone for a while: a search of 50 trials against a
# server that is down warns once, not 50 times, and loses no time on it (track.py sync catches up).
RETRY_AFTER_SECONDS = 300.0
_failed_at: dict[str, float] = {}


def mark_failed(uri: str) -> None:
    _failed_at[uri] = time.monotonic()


def recently_failed(uri: str) -> bool:
    return uri in _failed_at and time.monotonic() - _failed_at[uri] < RETRY_AFTER_SECONDS


def check_installed(tracker: str, what: str = "--track mlflow") -> None:
    """One line naming the extra when `what` (a flag or a command) needs MLflow and it is not installed."""
    if tracker == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise UsageError(f"{what} needs MLflow, which is not installed; install it with: {EXTRA}")


def resolve_uri(tracking_uri: str | None, output_dir: str) -> str:
    """run.tracking_uri, else $MLFLOW_TRACKING_URI, else a SQLite store <output_dir>/mlflow.db."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{os.path.abspath(os.path.join(output_dir, 'mlflow.db'))}"


def experiment_name(experiment: str | None, dataset: str) -> str:
    """run.experiment, else one experiment per dataset (runs on one dataset compare with each other)."""
    return experiment or f"keras_cnn-{dataset}"
