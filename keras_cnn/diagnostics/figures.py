"""The diagnostics' figures: the LR range test, activation histograms, and CS231n's initializer comparison."""

import math

import keras
import numpy as np

from keras_cnn import plots
from keras_cnn.models import create_model
from keras_cnn.training.layer_stats import activation_statistics


def plot_lr_range(rates, losses, smoothed, suggestion, lowest, path):
    fig, ax = plots.plt.subplots(figsize=(6, 4))
    ax.plot(rates, losses, color="tab:gray", alpha=0.4, label="loss per step")
    ax.plot(rates, smoothed, color="tab:blue", label="smoothed")
    ax.axvline(suggestion, color="tab:green", ls="--", label=f"suggested lr {suggestion:.2g}")
    ax.axvline(lowest, color="tab:red", ls=":", label=f"minimum {lowest:.2g}")
    ax.set_xscale("log")
    top = np.nanpercentile(losses, 95) * 1.2
    ax.set_ylim(min(losses) * 0.9, top)
    ax.set(xlabel="learning rate", ylabel="training loss", title="learning-rate range test")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plots.save_figure(fig, path)


def plot_activation_histograms(stats, path):
    n = len(stats)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plots.plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, s in zip(axes.flat, stats):
        ax.hist(s["values"].ravel(), bins=50, color="tab:blue")
        ax.set_title(f"{s['layer']}\nmean {s['mean']:.2f} std {s['std']:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    plots.save_figure(fig, path)


# ------------------------------------------------------------------ compare initializers


INIT_EXPERIMENT = {  # CS231n lecture 6: label -> (initializer, scale)
    "small random (std 0.01)": ("random_normal", None),
    "large random (std 1.0)": ("random_normal", 1.0),
    "Xavier (glorot_uniform)": ("glorot_uniform", None),
    "He (he_normal)": ("he_normal", None),
}


def compare_init(path, *, activations=("tanh", "relu"), depth=10, width=500, samples=1000, seed=0):
    """CS231n's experiment: a deep MLP's activation std per layer under four initializations."""
    x = np.random.default_rng(seed).normal(size=(samples, 1, 1, width)).astype("float32")
    table = []
    fig, axes = plots.plt.subplots(1, len(activations), figsize=(6 * len(activations), 4), squeeze=False)
    for ax, activation in zip(axes[0], activations):
        for label, (init, scale) in INIT_EXPERIMENT.items():
            keras.utils.set_random_seed(seed)
            options = {"init_scale": scale} if scale is not None else {}
            model = create_model(
                "mlp",
                (1, 1, width),
                10,
                hidden=[width] * depth,
                activation=activation,
                kernel_initializer=init,
                **options,
            )
            stds = [s["std"] for s in activation_statistics(model, x)]
            ax.plot(range(1, len(stds) + 1), stds, marker="o", label=label)
            table.append(
                {
                    "activation": activation,
                    "initializer": label,
                    **{f"layer{i + 1}_std": float(f"{s:.4g}") for i, s in enumerate(stds)},
                }
            )
        ax.set_yscale("log")
        ax.set(xlabel="layer", ylabel="activation std", title=f"{depth}-layer {activation} MLP, width {width}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plots.save_figure(fig, path)
    return table
