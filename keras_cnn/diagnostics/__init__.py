"""Babysitting the learning process (CS231n lecture 6): checks, their figures, and (in the training
layer, where a run can use it) the LayerStats callback.

    from keras_cnn import diagnostics as d
    d.initial_loss_check(model, images, labels, num_classes)
"""

from keras_cnn.diagnostics.checks import (
    Check,
    activation_check,
    gradient_check,
    initial_loss_check,
    likely_cause,
    lr_range_test,
    mean_loss,
    overfit_check,
    regularization_raises_loss_check,
    smooth_losses,
    suggest_learning_rate,
    update_ratio_check,
)
from keras_cnn.diagnostics.figures import compare_init, plot_activation_histograms, plot_lr_range
from keras_cnn.training.layer_stats import LayerStats, activation_layers, activation_statistics, kernels

__all__ = [
    "Check",
    "LayerStats",
    "activation_check",
    "activation_layers",
    "activation_statistics",
    "compare_init",
    "gradient_check",
    "initial_loss_check",
    "kernels",
    "likely_cause",
    "lr_range_test",
    "mean_loss",
    "overfit_check",
    "plot_activation_histograms",
    "plot_lr_range",
    "regularization_raises_loss_check",
    "smooth_losses",
    "suggest_learning_rate",
    "update_ratio_check",
]
