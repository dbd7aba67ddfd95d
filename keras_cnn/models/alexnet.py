"""The AlexNet-like CIFAR-10 net of the TensorFlow CIFAR-10 tutorial (cifar10.inference).

conv5x5-64 -> relu -> maxpool 3x3/2 -> LRN -> conv5x5-64 -> relu -> LRN -> maxpool 3x3/2
-> dense 384 -> dense 192 -> logits: 1,068,298 parameters at 24x24 inputs (the tutorial's
crops), 1,756,426 at 32x32.
"""
import keras

from keras_cnn.models import register
from keras_cnn.models.layers import (
    Conv2D,
    make_batch_norm,
    LocalResponseNormalization,
    apply_activation,
    check_rate,
    initializer,
    logits_layer,
    regularizer,
    width_multiplier,
)


def build_alexnet(
    input_shape,
    num_classes,
    *,
    activation="relu",
    kernel_initializer="glorot_uniform",
    dropout=0.0,
    weight_decay=0.0,
    batch_norm=False,
    lrn=True,
):
    check_rate("dropout", dropout)
    widen = width_multiplier(activation)

    def conv(x, name):
        x = Conv2D(
            64 * widen,
            5,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer=initializer(kernel_initializer),
            kernel_regularizer=regularizer(weight_decay),
            name=name,
        )(x)
        if batch_norm:
            x = make_batch_norm(f"{name}_bn")(x)
        return apply_activation(x, activation, name=f"{name}_{activation}")

    def norm(x, name):
        # Tutorial values: depth_radius=4, bias=1, alpha=0.001/9, beta=0.75.
        return LocalResponseNormalization(name=name)(x) if lrn else x

    def pool(x, name):
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)

    def dense(x, units, name):
        x = keras.layers.Dense(
            units * widen,
            kernel_initializer=initializer(kernel_initializer),
            kernel_regularizer=regularizer(weight_decay),
            name=name,
        )(x)
        x = apply_activation(x, activation, name=f"{name}_{activation}")
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
        return x

    inputs = keras.Input(shape=input_shape, name="images")
    x = norm(pool(conv(inputs, "conv1"), "pool1"), "norm1")
    # The tutorial normalizes before the second pool, the reverse of the first block.
    x = pool(norm(conv(x, "conv2"), "norm2"), "pool2")
    x = keras.layers.Flatten(name="flatten")(x)
    x = dense(x, 384, "fc1")
    x = dense(x, 192, "fc2")
    logits = logits_layer(num_classes, kernel_initializer, weight_decay)(x)
    return keras.Model(inputs, logits, name="alexnet")


register("alexnet", build_alexnet)
