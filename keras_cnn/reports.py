"""Run directories and flat CSV reports, written so a reader never sees half a file.

history.csv (one row per epoch) is rewritten whole by temp file + rename; runs.csv (one row
per finished run, shared by all runs of an output dir) is appended under an exclusive lock
with a single write, so concurrent runs cannot interleave rows.
"""
import csv
import fcntl
import io
import json
import os
import signal
import tempfile

HISTORY_COLUMNS = [
    "epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    "val_top5_accuracy", "ema_val_accuracy", "images_per_sec", "seconds",
]
RUNS_COLUMNS = [
    "run", "run_id", "model", "dataset", "parameters", "epochs", "best_val_accuracy", "final_val_accuracy",
    "seconds", "images_per_sec", "status",
]


_fault_counts = {}


def fault_point(site):
    """Fault injection for the reliability tests: KERAS_CNN_FAULT=<site>:<n> SIGKILLs this
    process the n-th time it reaches `site` (e.g. between writing a temp file and renaming it).
    Free when the variable is unset."""
    spec = os.environ.get("KERAS_CNN_FAULT")
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name == site:
        _fault_counts[site] = _fault_counts.get(site, 0) + 1
        if _fault_counts[site] == int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path, data, mode="w"):
    """Write a whole file so that readers see the old version or the new one, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fault_point("before_rename")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def csv_text(rows, columns, header=True):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_history(path, rows):
    atomic_write(path, csv_text(rows, HISTORY_COLUMNS))


def read_history(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [
            {k: (float(v) if k not in ("epoch", "step") and v not in ("", None) else (int(v) if v else v)) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def append_row(path, row, columns, *, unique=None):
    """Append one CSV row under an exclusive lock, writing the header if the file is new.

    unique: a column whose value may appear once; a row already there is not appended again
    (a run killed after appending and rerun must not report itself twice). One os.write of
    a whole line on an O_APPEND descriptor: readers never see half a row.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        empty = os.fstat(fd).st_size == 0
        if unique and not empty:
            with open(path, newline="") as f:
                if any(r.get(unique) == str(row[unique]) for r in csv.DictReader(f)):
                    return
        fault_point("before_append")
        os.write(fd, csv_text([row], columns, header=empty).encode())
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def plot_curves(history, path):
    """Loss and accuracy, train vs validation, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        loss_ax.plot(epochs, [r.get(key) for r in history], marker="o", label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation"), ("ema_val_accuracy", "validation (EMA)")):
        values = [r.get(key) for r in history]
        if any(v not in (None, "") for v in values):
            acc_ax.plot(epochs, values, marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def plot_learning_rate(steps, rates, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, rates)
    ax.set(xlabel="step", ylabel="learning rate", title="learning-rate schedule")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig, path):
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue(), mode="wb")


def save_model_atomically(model, path):
    """model.save writes its zip in place; write beside and rename so a kill never leaves half."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(tmp)
        fault_point("before_rename")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
