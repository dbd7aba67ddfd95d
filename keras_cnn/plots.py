"""Every PNG the toolkit draws, written atomically; matplotlib's headless backend chosen here, once."""

import io as _io

import matplotlib

matplotlib.use("Agg")  # no display on servers or in CI; the only place the backend is chosen

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from keras_cnn.io import atomic_write  # noqa: E402


def save_figure(fig, path):
    """Render `fig` to PNG at `path` atomically and release it."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue(), mode="wb")


def plot_curves(history, path):
    """Loss and accuracy, train vs validation, one panel each."""
    save_figure(curves_figure(history), path)


def curves_figure(history):
    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    losses = []
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [_number(r.get(key)) for r in history]
        losses += values
        loss_ax.plot(epochs, values, marker="o", label=label)
    for key, label in (
        ("train_accuracy", "train"),
        ("val_accuracy", "validation"),
        ("ema_val_accuracy", "validation (EMA)"),
    ):
        values = [_number(r.get(key)) for r in history]
        if any(not math.isnan(v) for v in values):
            acc_ax.plot(epochs, values, marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    if loss_scale(losses) == "log":
        loss_ax.set_yscale("log")
        loss_ax.set_title("loss (log scale)")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def loss_scale(values):
    """Log where the finite losses are positive and span more than a factor of 10: one early spike
    (a diverging first epoch, a warm restart) then no longer flattens the rest of the curve."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 10:
        return "log"
    return "linear"


def epoch_axis(ax):
    """Epochs are whole numbers: ticks on integers only (matplotlib puts 2.5 between 2 and 3)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_learning_rate(steps, rates, path):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, rates)
    ax.set(xlabel="step", ylabel="learning rate", title="learning-rate schedule")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
