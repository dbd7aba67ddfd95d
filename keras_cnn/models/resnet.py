"""Residual networks for CIFAR (He et al. 2015, "Deep Residual Learning", section 4.2).

`resnet{6n+2}`: a 3x3-16 stem, three stages of n basic blocks with 16/32/64 filters, global
average pooling, one dense layer. `resnet18`/`resnet34`: the ImageNet block layout with 64..512
filters, a CIFAR stem (3x3-64, stride 1, no max pool) on small inputs and the ImageNet stem (7x7-64
stride 2, 3x3 max pool stride 2) on inputs of 128 px and more. `resnet9`: Page's DAWNBench net.

Shortcuts where the shape changes: `projection` (option B, 1x1 conv + BN, the default,
as in ../shared/bench/torch_reference.py) or `identity` (option A, parameter-free, the
paper's CIFAR choice: resnet20 then has 269,722 parameters).
"""

from typing import Annotated, Any

import keras

from keras_cnn.errors import choose
from keras_cnn.models.layers import LayerOptions, ZeroPadShortcut, shared_options
from keras_cnn.models.registry import Spec, register

# Blocks per stage.
CIFAR_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
IMAGENET_LAYOUTS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
# Maxout changes widths, which residual additions cannot follow.
RESNET_ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid", "noisy_relu")
RESNET_SHARED = shared_options(kernel_initializer="he_normal", batch_norm=True)
Shortcut = Annotated[
    str, Spec("ResNet shortcut where the shape changes: projection (B) or identity (A)", ("projection", "identity"))
]


def _options(shared: dict[str, Any]) -> LayerOptions:
    choose("activation for ResNets", shared["activation"], RESNET_ACTIVATIONS)
    return LayerOptions(**shared)


def _conv_bn(x, filters, kernel_size, stride, name, opts):
    return opts.norm(opts.conv(x, filters, kernel_size, f"{name}_conv", strides=stride), f"{name}_bn")


def apply_basic_block(x, filters, stride, name, opts, shortcut):
    """Two 3x3 convs with a shortcut; the activation follows the addition."""
    y = opts.act(_conv_bn(x, filters, 3, stride, f"{name}_1", opts), f"{name}_1_{opts.activation}")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", opts)
    if stride != 1 or x.shape[-1] != filters:
        if shortcut == "projection":
            x = _conv_bn(x, filters, 1, stride, f"{name}_0", opts)
        else:
            x = ZeroPadShortcut(filters, stride, name=f"{name}_0_pad")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, y])
    return opts.act(x, f"{name}_out")


# From this input side on, ResNet-18/34 use the ImageNet stem (7x7/2 conv, 3x3/2 max pool): at 224 px
# the CIFAR stem would run the first stage on 224x224 maps, 16x the work of the ImageNet net.
IMAGENET_STEM_FROM = 128


def _build(input_shape, num_classes, stem_filters, stages, model_name, shortcut, opts, imagenet_stem=False):
    inputs = keras.Input(shape=input_shape, name="images")
    if imagenet_stem:
        x = opts.act(_conv_bn(inputs, stem_filters, 7, 2, "conv1", opts), "conv1_out")
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    else:
        x = opts.act(_conv_bn(inputs, stem_filters, 3, 1, "conv1", opts), "conv1_out")
    for s, (filters, blocks) in enumerate(stages):
        for b in range(blocks):
            stride = 2 if s > 0 and b == 0 else 1
            # Keras applications' names: stage 2 is the first after the conv1 stem.
            x = apply_basic_block(x, filters, stride, f"conv{s + 2}_block{b + 1}", opts, shortcut)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = opts.drop(x, "dropout")
    return keras.Model(inputs, opts.logits(x, num_classes), name=model_name)


# Goyal et al. 2017, section 5.1: each block starts as the identity, which helps large-batch training.
ZeroInitResidual = Annotated[bool, Spec("ResNet: start the last BatchNorm of every residual block at gamma 0")]


def _zero_init_residual(model: keras.Model, enabled: bool) -> keras.Model:
    """gamma = 0 in the BatchNorm ending each block's residual branch (torchvision's zero_init_residual)."""
    for layer in model.layers if enabled else ():
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.endswith("_2_bn"):
            layer.gamma.assign(keras.ops.zeros_like(layer.gamma))
    return model


def build_cifar_resnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    depth: int,
    shortcut: Shortcut = "projection",
    zero_init_residual: ZeroInitResidual = False,
    **shared: Any,
) -> keras.Model:
    n = CIFAR_DEPTHS[depth]
    model = _build(
        input_shape, num_classes, 16, [(16, n), (32, n), (64, n)], f"resnet{depth}", shortcut, _options(shared)
    )
    return _zero_init_residual(model, zero_init_residual)


def build_imagenet_layout_resnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    depth: int,
    shortcut: Shortcut = "projection",
    zero_init_residual: ZeroInitResidual = False,
    **shared: Any,
) -> keras.Model:
    stages = list(zip([64, 128, 256, 512], IMAGENET_LAYOUTS[depth]))
    large = min(input_shape[:2]) >= IMAGENET_STEM_FROM
    model = _build(
        input_shape, num_classes, 64, stages, f"resnet{depth}", shortcut, _options(shared), imagenet_stem=large
    )
    return _zero_init_residual(model, zero_init_residual)


for _depth in CIFAR_DEPTHS:
    register(f"resnet{_depth}", build_cifar_resnet, shared=RESNET_SHARED, depth=_depth)
for _depth in IMAGENET_LAYOUTS:
    register(f"resnet{_depth}", build_imagenet_layout_resnet, shared=RESNET_SHARED, depth=_depth)


def build_resnet9(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    width: Annotated[int, Spec("resnet9: base width (64)", "count")] = 64,
    **shared: Any,
) -> keras.Model:
    """Page's ResNet-9 (DAWNBench 2018), the fast CIFAR-10 net: 6.57M parameters at width 64.

    prep conv(w) -> [conv(2w), pool, residual(2 convs)] -> [conv(4w), pool] ->
    [conv(8w), pool, residual(2 convs)] -> global max pool -> dense, logits scaled by 1/8.
    """
    opts = _options(shared)

    def conv(x, filters, name, pool=False):
        x = opts.act(_conv_bn(x, filters, 3, 1, name, opts), f"{name}_{opts.activation}")
        return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x) if pool else x

    def residual(x, filters, name):
        y = conv(conv(x, filters, f"{name}_1"), filters, f"{name}_2")
        return keras.layers.Add(name=f"{name}_add")([x, y])

    inputs = keras.Input(shape=input_shape, name="images")
    x = conv(inputs, width, "prep")
    x = residual(conv(x, 2 * width, "layer1", pool=True), 2 * width, "layer1_res")
    x = conv(x, 4 * width, "layer2", pool=True)
    x = residual(conv(x, 8 * width, "layer3", pool=True), 8 * width, "layer3_res")
    x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    x = opts.drop(x, "dropout")
    x = opts.logits(x, num_classes, name="fc", use_bias=False)
    # Page scales the logits by 0.125 so the initial softmax is not overconfident.
    logits = keras.layers.Rescaling(0.125, dtype=x.dtype, name="logits")(x)
    return keras.Model(inputs, logits, name="resnet9")


register("resnet9", build_resnet9, shared=RESNET_SHARED)
