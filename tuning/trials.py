"""trials.csv: the search's source of truth, one row per trial whatever its state.

Rows are replaced in place by trial_id under an exclusive lock and the file is rewritten
atomically, so workers sharing a search directory never lose or duplicate a row.
"""

from keras_cnn import plots
from keras_cnn.io import read_csv, rewrite_locked

RESULT_COLUMNS = ["best_val_accuracy", "best_val_loss", "epochs", "seconds", "seed", "run_dir", "tuner_id", "error"]


def columns_for(hp_columns):
    return ["trial_id", "status", *hp_columns, *RESULT_COLUMNS]


def read_trials(path):
    return read_csv(path)


def upsert_trial(path, row, columns):
    """Insert or replace the row with row['trial_id'], under the table's lock."""
    clean = {k: ("" if v is None else v) for k, v in row.items()}

    def update(rows):
        kept = [r for r in rows if r["trial_id"] != str(row["trial_id"])] + [clean]
        return sorted(kept, key=lambda r: str(r["trial_id"]))

    rewrite_locked(path, update, columns)


def plot_search(rows, hyperparameters, path):
    """Validation accuracy against each numeric hyperparameter (log axes where sampled in log space)."""
    numeric = [p for p in hyperparameters.space if type(p).__name__ in ("Float", "Int")]
    if not numeric or not rows:
        return
    fig, axes = plots.plt.subplots(1, len(numeric), figsize=(4.5 * len(numeric), 3.8), squeeze=False)
    for ax, p in zip(axes[0], numeric):
        for status, marker, color in (
            ("finished", "o", "tab:blue"),
            ("diverged", "x", "tab:red"),
            ("stopped", "s", "tab:orange"),
        ):
            pts = [
                (float(r[p.name]), float(r["best_val_accuracy"] or 0))
                for r in rows
                if r["status"] == status and r.get(p.name)
            ]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, label=status)
        if getattr(p, "sampling", None) == "log":
            ax.set_xscale("log")
        ax.set(xlabel=p.name, ylabel="best validation accuracy")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    plots.save_figure(fig, path)
