"""A small configurable convnet: the MNIST CNN of the Keras examples and the labs' comparisons.

[conv KxK -> (BN) -> activation] per entry of `filters`, a 2x2 max pool after every
`pool_every` convs, then dropout, one hidden dense layer, dropout, logits. The default,
filters=(32, 64), kernel_size=3, dense=128, is the Keras mnist_cnn example (1,199,882
parameters on MNIST). `kernel_size` lets a lab compare stacked 3x3 convolutions with one
5x5 or 7x7 of the same receptive field (Simonyan & Zisserman 2014, section 2.3).
"""

from typing import Annotated, Any

import keras

from keras_cnn.models.layers import LayerOptions, shared_options
from keras_cnn.models.registry import Spec, register


def build_cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    filters: Annotated[tuple[int, ...], Spec("cnn conv widths, e.g. --filters 32 32 64 64", "counts")] = (32, 64),
    kernel_size: Annotated[int, Spec("cnn convolution size, e.g. 3, 5 or 7", "count")] = 3,
    pool_every: Annotated[int, Spec("cnn: a 2x2 max pool after every N convs", "count")] = 2,
    dense: Annotated[int, Spec("cnn: hidden dense width", "count")] = 128,
    **shared: Any,
) -> keras.Model:
    opts = LayerOptions(**shared)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    # The Keras example's convs are unpadded; with pools between them, padding keeps maps from vanishing.
    padding = "valid" if pool_every >= len(filters) else "same"
    for i, width in enumerate(filters, start=1):
        x = opts.conv(x, int(width) * opts.widen, int(kernel_size), f"conv{i}", padding=padding)
        x = opts.norm(x, f"conv{i}_bn")
        x = opts.act(x, f"conv{i}_{opts.activation}")
        if i % pool_every == 0 or i == len(filters):
            x = keras.layers.MaxPooling2D(2, name=f"pool{(i + pool_every - 1) // pool_every}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = opts.drop(x, "flatten_dropout")
    x = opts.act(opts.dense(x, dense * opts.widen, "fc1", bias=True), f"fc1_{opts.activation}")
    x = opts.drop(x, "fc1_dropout", rate=min(2 * opts.dropout, 0.5))
    return keras.Model(inputs, opts.logits(x, num_classes), name="cnn")


register("cnn", build_cnn, shared=shared_options(dropout=0.25))
