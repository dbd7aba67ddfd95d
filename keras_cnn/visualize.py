"""What ConvNets learn (seed 001, days 8-9): first-layer filters, activation maps, class saliency.

    filters = first_layer_filters(model)                 # (n, kh, kw, 3|1) in [0, 1], one per filter
    maps = activation_maps(model, x, ["conv1_relu"])     # {layer: (H, W, C)} for one image
    saliency = class_saliency(model, x, class_index)     # (H, W): |d score / d pixel|, max over channels

Saliency follows Simonyan et al. 2014 ("Deep inside convolutional networks"): the gradient of the
class score (the logit, before softmax) with respect to the input image.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_cnn import plots
from keras_cnn.errors import UsageError


def first_layer_filters(model):
    """The first convolution's kernels, each scaled to [0, 1] on its own (as in CS231n's pictures)."""
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise UsageError(f"{model.name} has no convolution; filters are a convnet's (try alexnet, vgg11, resnet20)")
    kernel = np.transpose(convs[0].kernel.numpy(), (3, 0, 1, 2))  # (out, kh, kw, in)
    if kernel.shape[-1] not in (1, 3):
        kernel = kernel.mean(-1, keepdims=True)
    low = kernel.min(axis=(1, 2, 3), keepdims=True)
    high = kernel.max(axis=(1, 2, 3), keepdims=True)
    return (kernel - low) / np.maximum(high - low, 1e-12), convs[0].name


def activation_maps(model, image, layer_names):
    """Each named layer's output for one (normalized) image."""
    missing = [n for n in layer_names if n not in {layer.name for layer in model.layers}]
    if missing:
        convs = ", ".join(layer.name for layer in model.layers if "conv" in layer.name)[:300]
        raise UsageError(f"{model.name} has no layer {missing[0]!r}; its convolution layers: {convs}")
    probe = keras.Model(model.inputs[0], [model.get_layer(n).output for n in layer_names])
    outputs = probe(image[None], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {n: tf.cast(o[0], tf.float32).numpy() for n, o in zip(layer_names, outputs)}


def class_saliency(model, image, class_index):
    x = tf.constant(image[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.cast(model(x, training=False), tf.float32)[0, class_index]
    return np.abs(tape.gradient(score, x)[0].numpy()).max(-1)


def plot_filters(filters, layer_name, path):
    n = len(filters)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plots.plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, f in zip(axes.flat, filters):
        ax.imshow(
            f[..., 0] if f.shape[-1] == 1 else f, cmap="gray" if f.shape[-1] == 1 else None, interpolation="nearest"
        )
    fig.suptitle(f"{layer_name}: {n} filters", fontsize=9)
    fig.tight_layout()
    plots.save_figure(fig, path)


def plot_activation_maps(maps, path, channels=16):
    fig, axes = plots.plt.subplots(len(maps), channels, figsize=(channels * 0.8, len(maps) * 0.95), squeeze=False)
    for row, (name, values) in zip(axes, maps.items()):
        for c, ax in enumerate(row):
            ax.axis("off")
            if c < values.shape[-1]:
                ax.imshow(values[..., c], cmap="viridis", interpolation="nearest")
        row[0].set_title(name, fontsize=7, loc="left")
    fig.tight_layout()
    plots.save_figure(fig, path)


def plot_saliency(image_uint8, saliency, class_name, path):
    fig, (left, right) = plots.plt.subplots(1, 2, figsize=(6, 3))
    left.imshow(image_uint8[..., 0] if image_uint8.shape[-1] == 1 else image_uint8, cmap="gray")
    left.set_title("image", fontsize=9)
    right.imshow(saliency, cmap="hot")
    right.set_title(f"saliency for '{class_name}'", fontsize=9)
    for ax in (left, right):
        ax.axis("off")
    fig.tight_layout()
    plots.save_figure(fig, path)
