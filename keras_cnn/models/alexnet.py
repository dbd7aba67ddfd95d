"""The AlexNet-like CIFAR-10 net of the TensorFlow CIFAR-10 tutorial (cifar10.inference).

conv5x5-64 -> relu -> maxpool 3x3/2 -> LRN -> conv5x5-64 -> relu -> LRN -> maxpool 3x3/2
-> dense 384 -> dense 192 -> logits: 1,068,298 parameters at 24x24 inputs (the tutorial's
crops), 1,756,426 at 32x32; above 64 px a global average pool replaces the flatten (224-px photos).
Local response normalization (Krizhevsky et al. 2012, section
3.3) with the tutorial's settings by default: depth radius 4, bias 1, alpha 0.001/9, beta 0.75.
"""

from typing import Annotated, Any

import keras

from keras_cnn.models.layers import LayerOptions, LocalResponseNormalization, shared_options
from keras_cnn.models.registry import Spec, register

# Inputs larger than this end in global average pooling rather than the tutorial's flatten.
GLOBAL_POOL_ABOVE = 64


def build_alexnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    lrn: Annotated[bool, Spec("alexnet: local response normalization")] = True,
    lrn_depth_radius: Annotated[int, Spec("alexnet LRN: channels each side (4)", "size")] = 4,
    lrn_bias: Annotated[float, Spec("alexnet LRN: bias (1.0)", "rate")] = 1.0,
    lrn_alpha: Annotated[float, Spec("alexnet LRN: alpha, multiplying the plain sum (0.001/9)", "nonneg")] = 0.001
    / 9.0,
    lrn_beta: Annotated[float, Spec("alexnet LRN: beta (0.75)", "nonneg")] = 0.75,
    **shared: Any,
) -> keras.Model:
    opts = LayerOptions(**shared)

    def conv(x, name):
        x = opts.norm(opts.conv(x, 64 * opts.widen, 5, name), f"{name}_bn")
        return opts.act(x, f"{name}_{opts.activation}")

    def norm(x, name):
        if not lrn:
            return x
        return LocalResponseNormalization(
            depth_radius=int(lrn_depth_radius), bias=lrn_bias, alpha=lrn_alpha, beta=lrn_beta, name=name
        )(x)

    def pool(x, name):
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)

    def dense(x, units, name):
        x = opts.act(opts.dense(x, units * opts.widen, name, bias=True), f"{name}_{opts.activation}")
        return opts.drop(x, f"{name}_dropout")

    inputs = keras.Input(shape=input_shape, name="images")
    x = norm(pool(conv(inputs, "conv1"), "pool1"), "norm1")
    # The tutorial normalizes before the second pool, the reverse of the first block.
    x = pool(norm(conv(x, "conv2"), "norm2"), "pool2")
    if min(input_shape[:2]) > GLOBAL_POOL_ABOVE:  # a dense layer over a 56x56 map would hold 77M weights
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    x = dense(dense(x, 384, "fc1"), 192, "fc2")
    return keras.Model(inputs, opts.logits(x, num_classes), name="alexnet")


register("alexnet", build_alexnet, shared=shared_options())
