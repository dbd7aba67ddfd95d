"""The small Inception of Zhang et al. 2017 ("Understanding deep learning requires rethinking
generalization", appendix A, figure 3), a ~1.6M-parameter CIFAR-10 net for seed 001's Inception vs
ResNet comparison.

Conv module: conv -> BN -> ReLU. Inception module (c1, c3): a 1x1 module with c1 filters beside a 3x3
module with c3, concatenated. Downsample module (c3): a stride-2 3x3 module beside a stride-2 3x3 max
pool, concatenated. Network: conv 96 3x3 -> inception (32, 32), (32, 48) -> downsample 80 ->
inception (112, 48), (96, 64), (80, 80), (48, 96) -> downsample 96 -> inception (176, 160) x 2 ->
global average pooling -> dense. (The paper pools a fixed 7x7 map of its 28x28 crops; global pooling
gives the same on those and also takes 32x32 inputs.)
"""

from typing import Annotated, Any

import keras

from keras_cnn.models.layers import LayerOptions, shared_options
from keras_cnn.models.registry import Spec, register

# (kind, filters): "inception" takes (c1, c3), "downsample" takes c3.
SPEC = [
    ("inception", (32, 32)),
    ("inception", (32, 48)),
    ("downsample", 80),
    ("inception", (112, 48)),
    ("inception", (96, 64)),
    ("inception", (80, 80)),
    ("inception", (48, 96)),
    ("downsample", 96),
    ("inception", (176, 160)),
    ("inception", (176, 160)),
]


def build_inception(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    stem_filters: Annotated[int, Spec("inception: filters of the 3x3 stem convolution", "count")] = 96,
    **shared: Any,
) -> keras.Model:
    opts = LayerOptions(**shared)

    def module(x, filters, size, name, strides=1, padding="same"):
        x = opts.conv(x, filters, size, f"{name}_conv", strides=strides, padding=padding)
        return opts.act(opts.norm(x, f"{name}_bn"), f"{name}_{opts.activation}")

    inputs = keras.Input(shape=input_shape, name="images")
    x = module(inputs, stem_filters, 3, "stem")
    for i, (kind, filters) in enumerate(SPEC, start=1):
        name = f"{kind}{i}"
        if kind == "inception":
            branches = [module(x, filters[0], 1, f"{name}_1x1"), module(x, filters[1], 3, f"{name}_3x3")]
        else:
            branches = [
                module(x, filters, 3, f"{name}_3x3", strides=2, padding="valid"),
                keras.layers.MaxPooling2D(3, strides=2, name=f"{name}_pool")(x),
            ]
        x = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = opts.drop(x, "dropout")
    return keras.Model(inputs, opts.logits(x, num_classes), name="inception")


register("inception", build_inception, shared=shared_options(kernel_initializer="he_normal", batch_norm=True))
