"""tracking.json: which MLflow run a folder (run, search or sweep) is, on each tracking server.

    {"last_uri": URI, "mlflow": {URI: {"experiment_id": ..., "run_id": ..., "record_run_id": ...,
                                        "model_logged": bool, "registered": {NAME: VERSION}}}}

Keyed by tracking URI, so the same run tracked on two servers is two MLflow runs, each continued
on resume. Read and updated under a flock (tracking.lock), because the workers of one search may
create their shared parent run at the same moment.
"""

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from typing import Any

from keras_cnn.io import write_json

STATE_FILE = "tracking.json"
LOCK_FILE = "tracking.lock"


def state_path(folder: str) -> str:
    return os.path.join(folder, STATE_FILE)


def read(folder: str) -> dict[str, Any]:
    """The folder's tracking state; empty when it was never tracked (or the file is unreadable)."""
    try:
        with open(state_path(folder)) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def entry(folder: str, uri: str) -> dict[str, Any]:
    runs = read(folder).get("mlflow")
    found = runs.get(uri) if isinstance(runs, dict) else None
    return dict(found) if isinstance(found, dict) else {}


@contextlib.contextmanager
def locked(folder: str) -> Iterator[None]:
    fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(folder: str, uri: str, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into the folder's entry for `uri` and write tracking.json atomically."""
    state = read(folder)
    held = state.get("mlflow")
    runs: dict[str, Any] = dict(held) if isinstance(held, dict) else {}
    runs[uri] = {**(runs.get(uri) or {}), **fields}
    write_json(state_path(folder), {**state, "mlflow": runs, "last_uri": uri})
    return dict(runs[uri])
