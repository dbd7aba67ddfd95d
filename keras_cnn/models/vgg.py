"""VGG-11/13/16/19 (Simonyan & Zisserman 2014) for 32x32 inputs, batch norm on by default.

The CIFAR form: 3x3 convs in five blocks, each ending in a 2x2 max pool, so a 32x32 input
reaches 1x1x512, then global average pooling and one 512 -> classes dense layer (no
4096-wide FC layers); inputs larger than 32x32 (224 px) pool down to the same 512 features.
"""

from typing import Any

import keras

from keras_cnn.models.layers import LayerOptions, shared_options
from keras_cnn.models.registry import register

# Convolution widths per block; len(block) convs, then a max pool.
SPECS = {
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def build_vgg(input_shape: tuple[int, ...], num_classes: int, *, depth: int, **shared: Any) -> keras.Model:
    opts = LayerOptions(**shared)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for b, widths in enumerate(SPECS[depth], start=1):
        for c, filters in enumerate(widths, start=1):
            name = f"block{b}_conv{c}"
            x = opts.norm(opts.conv(x, filters * opts.widen, 3, name), f"{name}_bn")
            x = opts.act(x, f"{name}_{opts.activation}")
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = opts.drop(x, "dropout")
    return keras.Model(inputs, opts.logits(x, num_classes), name=f"vgg{depth}")


for _depth in SPECS:
    register(
        f"vgg{_depth}", build_vgg, shared=shared_options(kernel_initializer="he_normal", batch_norm=True), depth=_depth
    )
