"""The curves a run draws: a loss spike must not flatten the rest, and epochs are whole numbers."""

import matplotlib.pyplot as plt

from keras_cnn import plots


def _history(losses):
    return [
        {"epoch": i + 1, "train_loss": loss, "val_loss": loss * 1.1, "train_accuracy": 0.5, "val_accuracy": 0.5}
        for i, loss in enumerate(losses)
    ]


def _integer_ticks(ax):
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    return ticks and all(float(t).is_integer() for t in ticks)


def test_an_early_loss_spike_puts_the_loss_on_a_log_axis():
    fig = plots.curves_figure(_history([4000.0, 2.1, 1.2, 0.9]))
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
    plt.close(fig)


def test_a_smooth_curve_and_a_diverged_one_stay_linear():
    for losses in ([2.3, 1.9, 1.6, 1.4], [2.3, float("nan"), float("inf")], [0.0, 0.5]):
        fig = plots.curves_figure(_history(losses))
        assert fig.axes[0].get_yscale() == "linear", losses
        plt.close(fig)


def test_epoch_axes_tick_whole_epochs_only():
    for n in (2, 3, 5, 7):
        fig = plots.curves_figure(_history([2.0 - 0.1 * i for i in range(n)]))
        fig.canvas.draw()
        assert all(_integer_ticks(ax) for ax in fig.axes), [list(ax.get_xticks()) for ax in fig.axes]
        plt.close(fig)


def test_curves_png_is_written_for_a_history_with_missing_values(tmp_path):
    history = _history([2.0, 1.0])
    history[0]["val_loss"] = ""  # a run stopped before its first validation pass
    plots.plot_curves(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
