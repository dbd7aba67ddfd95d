"""The leaderboard read back from MLflow: report.py --from-mlflow URI --experiment NAME.

Every MLflow run keras_cnn logged (tag keras_cnn.kind = run, trial or arm) becomes one row with the
columns of a local report's leaderboard (reports.py), so last month's search on the server and
today's runs on disk read the same way. Trials and arms are named <search>/<run>, as in a folder.
"""

from typing import Any

import pandas as pd

from keras_cnn.errors import UsageError
from keras_cnn.reports import KEY_SETTINGS
from keras_cnn.tracking.session import EPOCH_MARKER, client
from keras_cnn.tracking.sync import SUMMARY_METRICS

RUN_KINDS = ("run", "trial", "arm")
PARENT_KINDS = ("search", "sweep")
PAGE = 1000


def experiments(uri: str, name: str | None) -> list[Any]:
    """The experiment called `name`, or every experiment keras_cnn made (keras_cnn-<dataset>) when None."""
    mlflow = client(uri)
    if name:
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            known = ", ".join(sorted(e.name for e in mlflow.search_experiments())) or "none"
            raise UsageError(f"MLflow at {uri} has no experiment {name!r} (it has: {known}); pass one of those")
        return [found]
    return list(mlflow.search_experiments())


def runs(uri: str, name: str | None) -> pd.DataFrame:
    """One row per keras_cnn run in the experiment(s), best validation accuracy first."""
    mlflow = client(uri)
    ids = [e.experiment_id for e in experiments(uri, name)]
    found, token = [], None
    while ids:
        page = mlflow.search_runs(ids, filter_string="tags.`keras_cnn.kind` != ''", max_results=PAGE, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            break
    parents = {r.info.run_id: r.info.run_name for r in found if r.data.tags.get("keras_cnn.kind") in PARENT_KINDS}
    rows = [_row(mlflow, r, parents) for r in found if r.data.tags.get("keras_cnn.kind") in RUN_KINDS]
    columns = ["run", *KEY_SETTINGS.values(), "epochs", *SUMMARY_METRICS, "status", "kind", "run_id", "mlflow_run_id"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in SUMMARY_METRICS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.sort_values("best_val_accuracy", ascending=False, na_position="last").reset_index(drop=True)


def _row(mlflow: Any, run: Any, parents: dict[str, str]) -> dict[str, Any]:
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    parent = parents.get(tags.get("mlflow.parentRunId", ""))
    row: dict[str, Any] = {
        "run": f"{parent}/{run.info.run_name}" if parent else run.info.run_name,
        "kind": tags.get("keras_cnn.kind"),
        "status": tags.get("status", run.info.status.lower()),
        "run_id": tags.get("keras_cnn.run_id", ""),
        "mlflow_run_id": run.info.run_id,
        "epochs": int(metrics.get(EPOCH_MARKER, 0)),  # the marker's latest value: the last epoch trained
    }
    row.update({column: params.get(key) for key, column in KEY_SETTINGS.items()})
    row["model"] = tags.get("model", row["model"])
    row["dataset"] = tags.get("dataset", row["dataset"])
    row.update({column: metrics.get(metric) for column, metric in SUMMARY_METRICS.items()})
    if row["best_val_accuracy"] is None and "val_accuracy" in metrics:  # still running, or killed
        history = mlflow.get_metric_history(run.info.run_id, "val_accuracy")
        row["best_val_accuracy"] = max(m.value for m in history) if history else None
    return row
