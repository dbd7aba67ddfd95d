"""Results across runs, searches and sweeps, with pandas: a leaderboard, best trials, a report.

    report = collect("runs")              # every runs.csv, history.csv, trials.csv, sweep.csv under it
    report.leaderboard(top=10)            # a DataFrame: best runs by validation accuracy, key settings
    write_report(report, "runs")          # runs/report.md and runs/report.png

CSV files of other shapes are skipped: a report never fails on a file it does not know.
"""

import dataclasses
import json
import os

import pandas as pd

from keras_cnn import plots
from keras_cnn.io import atomic_write
from keras_cnn.run_dir import RUNS_COLUMNS

# Settings shown beside each run: config path -> column.
KEY_SETTINGS = {
    "model.name": "model",
    "data.dataset": "dataset",
    "optimizer.name": "optimizer",
    "optimizer.learning_rate": "lr",
    "data.batch_size": "batch",
    "optimizer.weight_decay": "wd",
    "schedule.name": "schedule",
    "ema.enabled": "ema",
}
TRIAL_KEYS = {"trial_id", "status", "best_val_accuracy"}
SWEEP_KEYS = {"arm", "mean_val_accuracy", "std_val_accuracy"}


@dataclasses.dataclass
class Report:
    root: str
    runs: pd.DataFrame  # one row per run (runs.csv rows + settings + run_dir)
    searches: dict  # search folder -> trials DataFrame
    sweeps: dict  # sweep folder -> sweep.csv DataFrame
    skipped: list  # CSV files of unknown shape

    def leaderboard(self, top=10):
        if self.runs.empty:
            return self.runs
        columns = [
            "run",
            *KEY_SETTINGS.values(),
            "epochs",
            "best_val_accuracy",
            "final_val_accuracy",
            "seconds",
            "images_per_sec",
            "status",
        ]
        ranked = self.runs.sort_values("best_val_accuracy", ascending=False, na_position="last")
        return ranked[[c for c in columns if c in ranked]].head(top).reset_index(drop=True)

    def best_trials(self, top=3):
        out = {}
        for folder, trials in self.searches.items():
            scored = trials[pd.to_numeric(trials["best_val_accuracy"], errors="coerce").notna()].copy()
            scored["best_val_accuracy"] = pd.to_numeric(scored["best_val_accuracy"])
            out[folder] = scored.sort_values("best_val_accuracy", ascending=False).head(top).reset_index(drop=True)
        return out


def _read(path):
    try:
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError):
        return None


def _settings(run_dir):
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    out = {}
    for path, column in KEY_SETTINGS.items():
        section, field = path.split(".")
        value = config.get(section, {}).get(field) if isinstance(config.get(section), dict) else None
        out[column] = value
    return out


def collect(root):
    """Every CSV keras_cnn writes under `root`, sorted into runs, searches and sweeps."""
    runs, searches, sweeps, skipped = [], {}, {}, []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".csv")):
            path = os.path.join(directory, name)
            table = _read(path)
            if name == "runs.csv" and table is not None and {"run", "best_val_accuracy"} <= set(table):
                for row in table.to_dict("records"):
                    run_dir = os.path.join(directory, str(row["run"]))
                    runs.append(
                        {**row, **_settings(run_dir), "run_dir": run_dir, "run": os.path.relpath(run_dir, root)}
                    )
            elif name == "trials.csv" and table is not None and TRIAL_KEYS <= set(table):
                if "sweep.csv" not in files:  # a sweep's trials are its arms' runs, summarized by sweep.csv
                    searches[os.path.relpath(directory, root)] = table
            elif name == "sweep.csv" and table is not None and SWEEP_KEYS <= set(table):
                sweeps[os.path.relpath(directory, root)] = table
            elif name not in (
                "history.csv",
                "layer_stats.csv",
                "per_class.csv",
                "confusion_matrix.csv",
                "diagnostics.csv",
                "activations.csv",
                "compare_init.csv",
            ):
                skipped.append(os.path.relpath(path, root))
    frame = pd.DataFrame(
        runs,
        columns=list(dict.fromkeys([*RUNS_COLUMNS, *KEY_SETTINGS.values(), "run_dir", *(k for r in runs for k in r)])),
    )
    if not frame.empty:
        frame["best_val_accuracy"] = pd.to_numeric(frame["best_val_accuracy"], errors="coerce")
    return Report(root, frame, searches, sweeps, skipped)


def markdown(report, top=10):
    """The report as Markdown: leaderboard, each search's best trials, each sweep's arms."""
    lines = [f"# Results under `{report.root}`", "", f"## Leaderboard: best {top} runs by validation accuracy", ""]
    board = report.leaderboard(top)
    lines += [table(board) if not board.empty else "No finished runs.", ""]
    for folder, best in report.best_trials().items():
        lines += [
            f"## Search `{folder}`: best trials",
            "",
            table(best.drop(columns=[c for c in ("run_dir", "error", "tuner_id") if c in best])),
            "",
        ]
    for folder, sweep in report.sweeps.items():
        lines += [f"## Sweep `{folder}`", "", table(sweep), ""]
    if report.skipped:
        lines += ["Skipped (not a keras_cnn table): " + ", ".join(f"`{p}`" for p in report.skipped), ""]
    lines += ["![validation curves of the top runs](report.png)", ""]
    return "\n".join(lines)


def table(frame):
    # A field a row does not have (a linear model's hidden sizes, a sweep without folds) is blank, not "nan".
    return frame.astype(object).where(frame.notna(), "").to_markdown(index=False, floatfmt=".4g")


def plot_top_curves(report, path, top=5):
    """Validation accuracy per epoch of the top runs, overlaid."""
    fig, ax = plots.plt.subplots(figsize=(7, 4.5))
    for row in report.leaderboard(top).itertuples():
        history = _read(os.path.join(report.root, row.run, "history.csv"))
        if history is not None and "val_accuracy" in history:
            ax.plot(
                history["epoch"], history["val_accuracy"], marker="o", label=f"{row.run} ({row.best_val_accuracy:.4f})"
            )
    ax.set(xlabel="epoch", ylabel="validation accuracy", title=f"top {top} runs")
    plots.epoch_axis(ax)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    plots.save_figure(fig, path)


def write_report(report, out_dir, top=10):
    atomic_write(os.path.join(out_dir, "report.md"), markdown(report, top))
    plot_top_curves(report, os.path.join(out_dir, "report.png"))
