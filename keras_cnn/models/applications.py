"""Pretrained-able backbones from `keras.applications`, as keras_cnn models named `keras_<name>`.

    create_model("keras_mobilenetv2", (96, 96, 3), 5)            # random init
    train.py --model keras_resnet50 --weights imagenet --data-dir photos/

Each is `keras.applications.<Name>(include_top=False)` at the run's input size, called as one
nested layer named "backbone", with keras_cnn's head: global average pooling, dropout and the
float32 logits. Nothing of an architecture is copied here: Keras builds it, and
`--weights imagenet` loads its weights the way Keras does (keras_cnn.models.pretrained).

With pretrained weights (`--weights`), the backbone's BatchNorm layers are frozen in inference mode
unless `--train-bn` (freeze_batch_norm, applied by training.build); from random weights they train.

Inputs are raw pixels (0..255): a `BackbonePreprocessing` layer at the front applies the scaling
the backbone was trained with (caffe, torch, [-1, 1], or none where the backbone has its own
Rescaling inside), so training, evaluation, model.keras and the SavedModel all see the same
thing, and keras_cnn's data normalization is `backbone` (no-op) for these models. Grayscale
inputs are repeated to three channels.
"""

import keras

from keras_cnn.errors import UsageError
from keras_cnn.models.layers import LayerOptions, shared_options
from keras_cnn.models.registry import register

PREFIX = "keras_"
BACKBONE = "backbone"  # the nested model's layer name: what freezing and --weights address

# keras.applications' `preprocess_input` modes, as numbers: (channel order, mean, std) on 0..255 pixels.
CAFFE_MEAN = (103.939, 116.779, 123.68)  # BGR
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PREPROCESSING = ("caffe", "torch", "tf", "builtin")

# keras.applications class -> its preprocess_input mode and its smallest input side. "builtin": the
# model starts with its own Rescaling/Normalization (EfficientNet, ConvNeXt, MobileNetV3). One line
# adds another (e.g. "Xception": ("tf", 71)); each costs the test suite a training run and an export.
APPLICATIONS = {
    "ResNet50": ("caffe", 32),
    "ResNet50V2": ("tf", 32),
    "MobileNetV2": ("tf", 32),
    "MobileNetV3Small": ("builtin", 32),
    "MobileNetV3Large": ("builtin", 32),
    "EfficientNetB0": ("builtin", 32),
    "EfficientNetV2B0": ("builtin", 32),
    "EfficientNetV2S": ("builtin", 32),
    "ConvNeXtTiny": ("builtin", 32),
    "DenseNet121": ("torch", 32),
}


def registered_name(application: str) -> str:
    return PREFIX + application.lower()


def is_application(model_name: str) -> bool:
    return model_name.startswith(PREFIX)


@keras.saving.register_keras_serializable(package="keras_cnn")
class BackbonePreprocessing(keras.layers.Layer):
    """Raw pixels (0..255) -> what a keras.applications backbone expects, computed in float32.

    caffe: RGB -> BGR minus the ImageNet channel means; torch: /255, minus mean, over std (ImageNet);
    tf: [-1, 1]; builtin: unchanged (the backbone rescales itself). One channel is repeated to three.
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        if mode not in PREPROCESSING:
            raise ValueError(f"unknown backbone preprocessing {mode!r}")
        self.mode = mode

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        if x.shape[-1] == 1:
            x = keras.ops.concatenate([x, x, x], axis=-1)
        if self.mode == "caffe":
            return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(CAFFE_MEAN, "float32")
        if self.mode == "torch":
            mean = keras.ops.convert_to_tensor(TORCH_MEAN, "float32")
            return (x / 255.0 - mean) / keras.ops.convert_to_tensor(TORCH_STD, "float32")
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def build_application(
    input_shape,
    num_classes,
    *,
    application: str,
    preprocessing: str,
    min_side: int,
    **shared,
):
    if min(input_shape[:2]) < min_side:
        raise UsageError(
            f"model {registered_name(application)!r} needs inputs of at least {min_side}x{min_side} pixels; these are "
            f"{input_shape[0]}x{input_shape[1]}: resize them (train.py --image-size {max(min_side, 96)})"
        )
    opts = LayerOptions(**shared)
    inputs = keras.Input(shape=input_shape, name="images")
    x = BackbonePreprocessing(preprocessing, name="preprocessing")(inputs)
    x = make_backbone(application, (*input_shape[:2], 3))(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = opts.drop(x, "head_dropout")
    return keras.Model(inputs, opts.logits(x, num_classes), name=registered_name(application))


def freeze_batch_norm(model: keras.Model) -> None:
    """BatchNorm on its moving statistics, with its scale and offset fixed (torchvision's
    FrozenBatchNorm2d), while the rest of the backbone trains: fine-tuning on a few thousand photos
    would otherwise overwrite the statistics of ImageNet's million. `trainable=False` is what does
    it in Keras 3: the guide's `backbone(x, training=False)` is overridden by the outer model's
    training=True there (keras-team/keras#20285), and BatchNormalization uses batch statistics
    only when it is both training and trainable."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif isinstance(layer, keras.Model):
            freeze_batch_norm(layer)


def make_backbone(application: str, input_shape, weights=None) -> keras.Model:
    """keras.applications.<application> without its classifier, named BACKBONE."""
    backbone = getattr(keras.applications, application)(include_top=False, weights=weights, input_shape=input_shape)
    backbone.name = BACKBONE  # after building: EfficientNetV2 looks its block layout up by its name
    return backbone


HEAD_SHARED = shared_options(only=("dropout", "weight_decay"), dropout=0.2)

for _application, (_preprocessing, _min_side) in APPLICATIONS.items():
    register(
        registered_name(_application),
        build_application,
        shared=HEAD_SHARED,
        application=_application,
        preprocessing=_preprocessing,
        min_side=_min_side,
    )
