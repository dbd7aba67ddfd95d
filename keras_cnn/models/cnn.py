"""A small configurable convnet: the MNIST CNN of the Keras examples and the labs' "2 vs 4 conv layers".

[conv3x3 -> (BN) -> activation] per entry of `filters`, a 2x2 max pool after every
`pool_every` convs, then dropout, one hidden dense layer, dropout, logits. The default,
filters=(32, 64), dense=128, is the Keras mnist_cnn example (1,199,882 parameters on MNIST).
"""
import keras

from keras_cnn.models import register
from keras_cnn.models.layers import (
    Conv2D,
    apply_activation,
    check_rate,
    initializer,
    logits_layer,
    make_batch_norm,
    regularizer,
    width_multiplier,
)


def build_cnn(
    input_shape,
    num_classes,
    *,
    filters=(32, 64),
    pool_every=2,
    dense=128,
    activation="relu",
    kernel_initializer="glorot_uniform",
    dropout=0.25,
    weight_decay=0.0,
    batch_norm=False,
):
    check_rate("dropout", dropout)
    widen = width_multiplier(activation)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for i, width in enumerate(filters, start=1):
        name = f"conv{i}"
        x = Conv2D(
            int(width) * widen, 3, padding="valid" if pool_every >= len(filters) else "same",
            use_bias=not batch_norm, kernel_initializer=initializer(kernel_initializer),
            kernel_regularizer=regularizer(weight_decay), name=name,
        )(x)
        if batch_norm:
            x = make_batch_norm(f"{name}_bn")(x)
        x = apply_activation(x, activation, name=f"{name}_{activation}")
        if i % pool_every == 0 or i == len(filters):
            x = keras.layers.MaxPooling2D(2, name=f"pool{(i + pool_every - 1) // pool_every}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="flatten_dropout")(x)
    x = keras.layers.Dense(dense * widen, kernel_initializer=initializer(kernel_initializer),
                           kernel_regularizer=regularizer(weight_decay), name="fc1")(x)
    x = apply_activation(x, activation, name=f"fc1_{activation}")
    if dropout:
        x = keras.layers.Dropout(min(2 * dropout, 0.5), name="fc1_dropout")(x)
    logits = logits_layer(num_classes, kernel_initializer, weight_decay)(x)
    return keras.Model(inputs, logits, name="cnn")


register("cnn", build_cnn)
