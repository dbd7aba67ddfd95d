"""trials.csv: the search's source of truth, one row per trial whatever its state.

Rows are replaced in place by trial_id under an exclusive lock and the file is rewritten
atomically, so workers sharing a search directory never lose or duplicate a row.
"""
import csv
import fcntl
import os

from keras_cnn.reports import atomic_write, csv_text

RESULT_COLUMNS = ["best_val_accuracy", "best_val_loss", "epochs", "seconds", "seed", "run_dir", "tuner_id"]


def columns_for(hp_columns):
    return ["trial_id", "status", *hp_columns, *RESULT_COLUMNS]


def read_trials(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def upsert_trial(path, row, columns):
    """Insert or replace the row with row['trial_id']."""
    lock_path = f"{path}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            rows = [r for r in read_trials(path) if r["trial_id"] != row["trial_id"]]
            rows.append({k: ("" if v is None else v) for k, v in row.items()})
            rows.sort(key=lambda r: r["trial_id"])
            known = list(columns) + [c for r in rows for c in r if c not in columns]
            atomic_write(path, csv_text(rows, list(dict.fromkeys(known))))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def plot_search(rows, space, path):
    """Validation accuracy against each numeric hyperparameter (log axes where sampled in log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_cnn.reports import _save_figure
    from tuning.spaces import column

    numeric = [p for p, s in space.items() if "values" not in s]
    if not numeric or not rows:
        return
    fig, axes = plt.subplots(1, len(numeric), figsize=(4.5 * len(numeric), 3.8), squeeze=False)
    for ax, p in zip(axes[0], numeric):
        for status, marker, color in (("finished", "o", "tab:blue"), ("diverged", "x", "tab:red"), ("stopped", "s", "tab:orange")):
            pts = [(float(r[column(p)]), float(r["best_val_accuracy"] or 0)) for r in rows if r["status"] == status and r.get(column(p))]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, label=status)
        if space[p].get("sampling") == "log":
            ax.set_xscale("log")
        ax.set(xlabel=column(p), ylabel="best validation accuracy")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
