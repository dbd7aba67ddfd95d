"""Fully connected baselines: softmax regression (`linear`) and multi-layer perceptrons (`mlp`)."""

from typing import Annotated, Any

import keras

from keras_cnn.models.layers import LayerOptions, shared_options
from keras_cnn.models.registry import Spec, register


def build_mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    hidden: Annotated[tuple[int, ...], Spec("MLP hidden sizes, e.g. --hidden 100 100", "counts")] = (64,),
    **shared: Any,
) -> keras.Model:
    """Flatten -> [Dense -> (BN) -> activation -> (dropout)] per hidden size -> Dense logits."""
    opts = LayerOptions(**shared)
    inputs = keras.Input(shape=input_shape, name="images")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate((int(h) for h in hidden), start=1):
        x = opts.dense(x, units * opts.widen, f"fc{i}")
        x = opts.norm(x, f"fc{i}_bn")
        x = opts.act(x, f"fc{i}_{opts.activation}")
        x = opts.drop(x, f"fc{i}_dropout")
    return keras.Model(inputs, opts.logits(x, num_classes), name="mlp" if hidden else "linear")


def build_linear(input_shape: tuple[int, ...], num_classes: int, **shared: Any) -> keras.Model:
    """Softmax regression: one dense layer from pixels to class scores."""
    return build_mlp(input_shape, num_classes, hidden=(), **shared)


register("linear", build_linear, shared=shared_options(only=("kernel_initializer", "init_scale", "weight_decay")))
register("mlp", build_mlp, shared=shared_options())
