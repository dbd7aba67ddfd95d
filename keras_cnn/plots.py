"""Every PNG the toolkit draws, written atomically; matplotlib's headless backend chosen here, once."""

import io as _io

import matplotlib

matplotlib.use("Agg")  # no display on servers or in CI; the only place the backend is chosen

import matplotlib.pyplot as plt  # noqa: E402

from keras_cnn.io import atomic_write  # noqa: E402


def save_figure(fig, path):
    """Render `fig` to PNG at `path` atomically and release it."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue(), mode="wb")


def plot_curves(history, path):
    """Loss and accuracy, train vs validation, one panel each."""
    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        loss_ax.plot(epochs, [r.get(key) for r in history], marker="o", label=label)
    for key, label in (
        ("train_accuracy", "train"),
        ("val_accuracy", "validation"),
        ("ema_val_accuracy", "validation (EMA)"),
    ):
        values = [r.get(key) for r in history]
        if any(v not in (None, "") for v in values):
            acc_ax.plot(epochs, values, marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_learning_rate(steps, rates, path):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, rates)
    ax.set(xlabel="step", ylabel="learning rate", title="learning-rate schedule")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
