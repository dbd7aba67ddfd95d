"""Fully connected baselines: softmax regression (`linear`) and multi-layer perceptrons (`mlp`)."""
import keras

from keras_cnn.models import register
from keras_cnn.models.layers import (
    make_batch_norm,
    apply_activation,
    check_rate,
    initializer,
    logits_layer,
    regularizer,
    width_multiplier,
)


def build_mlp(
    input_shape,
    num_classes,
    *,
    hidden=(64,),
    activation="relu",
    kernel_initializer="glorot_uniform",
    dropout=0.0,
    weight_decay=0.0,
    batch_norm=False,
):
    """Flatten -> [Dense -> (BN) -> activation -> (dropout)] per hidden size -> Dense logits."""
    check_rate("dropout", dropout)
    hidden = [int(h) for h in hidden]
    inputs = keras.Input(shape=input_shape, name="images")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden, start=1):
        x = keras.layers.Dense(
            units * width_multiplier(activation),
            use_bias=not batch_norm,
            kernel_initializer=initializer(kernel_initializer),
            kernel_regularizer=regularizer(weight_decay),
            name=f"fc{i}",
        )(x)
        if batch_norm:
            x = make_batch_norm(f"fc{i}_bn")(x)
        x = apply_activation(x, activation, name=f"fc{i}_{activation}")
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    logits = logits_layer(num_classes, kernel_initializer, weight_decay)(x)
    name = "mlp" if hidden else "linear"
    return keras.Model(inputs, logits, name=name)


def build_linear(input_shape, num_classes, *, kernel_initializer="glorot_uniform", weight_decay=0.0):
    """Softmax regression: one dense layer from pixels to class scores."""
    return build_mlp(
        input_shape,
        num_classes,
        hidden=(),
        kernel_initializer=kernel_initializer,
        weight_decay=weight_decay,
    )


register("linear", build_linear)
register("mlp", build_mlp)
