"""Residual networks for CIFAR (He et al. 2015, "Deep Residual Learning", section 4.2).

`resnet{6n+2}`: a 3x3-16 stem, three stages of n basic blocks with 16/32/64 filters, global
average pooling, one dense layer. `resnet18`/`resnet34`: the ImageNet block layout with a
CIFAR stem (3x3-64, stride 1, no max pool) and 64..512 filters.

Shortcuts where the shape changes: `projection` (option B, 1x1 conv + BN, the default,
as in ../shared/bench/torch_reference.py) or `identity` (option A, parameter-free, the
paper's CIFAR choice: resnet20 then has 269,722 parameters).
"""
import keras

from keras_cnn.errors import choose
from keras_cnn.models import register
from keras_cnn.models.layers import (
    Conv2D,
    make_batch_norm,
    ZeroPadShortcut,
    apply_activation,
    check_rate,
    initializer,
    logits_dtype,
    logits_layer,
    regularizer,
)

# Blocks per stage.
CIFAR_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
IMAGENET_LAYOUTS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
# Maxout changes widths, which residual additions cannot follow.
RESNET_ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid")


def _conv_bn(x, filters, kernel_size, stride, name, opts):
    x = Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="same",
        use_bias=not opts["batch_norm"],
        kernel_initializer=initializer(opts["kernel_initializer"]),
        kernel_regularizer=regularizer(opts["weight_decay"]),
        name=f"{name}_conv",
    )(x)
    if opts["batch_norm"]:
        x = make_batch_norm(f"{name}_bn")(x)
    return x


def apply_basic_block(x, filters, stride, name, opts):
    """Two 3x3 convs with a shortcut; the activation follows the addition."""
    activation = opts["activation"]
    y = _conv_bn(x, filters, 3, stride, f"{name}_1", opts)
    y = apply_activation(y, activation, name=f"{name}_1_{activation}")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", opts)
    if stride != 1 or x.shape[-1] != filters:
        if opts["shortcut"] == "projection":
            x = _conv_bn(x, filters, 1, stride, f"{name}_0", opts)
        else:
            x = ZeroPadShortcut(filters, stride, name=f"{name}_0_pad")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, y])
    return apply_activation(x, activation, name=f"{name}_out")


def _build(input_shape, num_classes, stem_filters, stages, model_name, opts):
    check_rate("dropout", opts["dropout"])
    choose("activation for ResNets", opts["activation"], RESNET_ACTIVATIONS)
    choose("shortcut", opts["shortcut"], ("projection", "identity"))
    inputs = keras.Input(shape=input_shape, name="images")
    x = _conv_bn(inputs, stem_filters, 3, 1, "conv1", opts)
    x = apply_activation(x, opts["activation"], name="conv1_out")
    for s, (filters, blocks) in enumerate(stages):
        for b in range(blocks):
            stride = 2 if s > 0 and b == 0 else 1
            # Keras applications' names: stage 2 is the first after the conv1 stem.
            x = apply_basic_block(x, filters, stride, f"conv{s + 2}_block{b + 1}", opts)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if opts["dropout"]:
        x = keras.layers.Dropout(opts["dropout"], name="dropout")(x)
    logits = logits_layer(num_classes, opts["kernel_initializer"], opts["weight_decay"])(x)
    return keras.Model(inputs, logits, name=model_name)


def _options(args):
    return {k: args[k] for k in ("shortcut", "activation", "kernel_initializer", "dropout", "weight_decay", "batch_norm")}


def build_cifar_resnet(
    input_shape,
    num_classes,
    *,
    depth,
    shortcut="projection",
    activation="relu",
    kernel_initializer="he_normal",
    dropout=0.0,
    weight_decay=0.0,
    batch_norm=True,
):
    n = CIFAR_DEPTHS[depth]
    stages = [(16, n), (32, n), (64, n)]
    return _build(input_shape, num_classes, 16, stages, f"resnet{depth}", _options(locals()))


def build_imagenet_layout_resnet(
    input_shape,
    num_classes,
    *,
    depth,
    shortcut="projection",
    activation="relu",
    kernel_initializer="he_normal",
    dropout=0.0,
    weight_decay=0.0,
    batch_norm=True,
):
    stages = list(zip([64, 128, 256, 512], IMAGENET_LAYOUTS[depth]))
    return _build(input_shape, num_classes, 64, stages, f"resnet{depth}", _options(locals()))


for _depth in CIFAR_DEPTHS:
    register(f"resnet{_depth}", build_cifar_resnet, depth=_depth)
for _depth in IMAGENET_LAYOUTS:
    register(f"resnet{_depth}", build_imagenet_layout_resnet, depth=_depth)


def build_resnet9(
    input_shape,
    num_classes,
    *,
    activation="relu",
    kernel_initializer="he_normal",
    dropout=0.0,
    weight_decay=0.0,
    batch_norm=True,
    width=64,
):
    """Page's ResNet-9 (DAWNBench 2018), the fast CIFAR-10 net: 6.57M parameters at width 64.

    prep conv(w) -> [conv(2w), pool, residual(2 convs)] -> [conv(4w), pool] ->
    [conv(8w), pool, residual(2 convs)] -> global max pool -> dense, logits scaled by 1/8.
    """
    opts = dict(shortcut="identity", activation=activation, kernel_initializer=kernel_initializer,
                dropout=dropout, weight_decay=weight_decay, batch_norm=batch_norm)
    check_rate("dropout", dropout)
    choose("activation for ResNets", activation, RESNET_ACTIVATIONS)

    def conv(x, filters, name, pool=False):
        x = _conv_bn(x, filters, 3, 1, name, opts)
        x = apply_activation(x, activation, name=f"{name}_{activation}")
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
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(num_classes, use_bias=False, kernel_initializer=initializer(kernel_initializer),
                           kernel_regularizer=regularizer(weight_decay), dtype=logits_dtype(), name="fc")(x)
    # Page scales the logits by 0.125 so the initial softmax is not overconfident.
    logits = keras.layers.Rescaling(0.125, dtype=logits_dtype(), name="logits")(x)
    return keras.Model(inputs, logits, name="resnet9")


register("resnet9", build_resnet9)
