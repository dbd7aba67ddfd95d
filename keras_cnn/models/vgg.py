"""VGG-11/13/16/19 (Simonyan & Zisserman 2014) for 32x32 inputs, batch norm on by default.

The CIFAR form: 3x3 convs in five blocks, each ending in a 2x2 max pool, so a 32x32
input reaches 1x1x512, then one 512 -> classes dense layer (no 4096-wide FC layers).
"""
import keras

from keras_cnn.models import register
from keras_cnn.models.layers import (
    Conv2D,
    make_batch_norm,
    apply_activation,
    check_rate,
    initializer,
    logits_layer,
    regularizer,
    width_multiplier,
)

# Convolution widths per block; len(block) convs, then a max pool.
SPECS = {
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def build_vgg(
    input_shape,
    num_classes,
    *,
    depth,
    activation="relu",
    kernel_initializer="he_normal",
    dropout=0.0,
    weight_decay=0.0,
    batch_norm=True,
):
    check_rate("dropout", dropout)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for b, widths in enumerate(SPECS[depth], start=1):
        for c, filters in enumerate(widths, start=1):
            name = f"block{b}_conv{c}"
            x = Conv2D(
                filters * width_multiplier(activation),
                3,
                padding="same",
                use_bias=not batch_norm,  # BN's beta makes a conv bias redundant
                kernel_initializer=initializer(kernel_initializer),
                kernel_regularizer=regularizer(weight_decay),
                name=name,
            )(x)
            if batch_norm:
                x = make_batch_norm(f"{name}_bn")(x)
            x = apply_activation(x, activation, name=f"{name}_{activation}")
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    # Global pooling instead of Flatten so inputs larger than 32x32 still end in 512 features.
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = logits_layer(num_classes, kernel_initializer, weight_decay)(x)
    return keras.Model(inputs, logits, name=f"vgg{depth}")


for _depth in SPECS:
    register(f"vgg{_depth}", build_vgg, depth=_depth)
