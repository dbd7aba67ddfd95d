"""The model zoo: `create_model(name, input_shape, num_classes, **options)`, `list_models()`.

Importing this package registers every family (mlp, cnn, alexnet, vgg, resnet) and every
custom layer they use, so `keras.models.load_model` finds them.
"""

from keras_cnn.models import alexnet, applications, cnn, inception, mlp, resnet, vgg  # noqa: F401  (each registers its models)
from keras_cnn.models.registry import (
    Option,
    Spec,
    all_options,
    check_options,
    create_model,
    list_models,
    model_options,
    register,
)

__all__ = ["Option", "Spec", "all_options", "check_options", "create_model", "list_models", "model_options", "register"]
