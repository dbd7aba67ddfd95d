"""keras_cnn: train the classic image classifiers with TensorFlow and Keras 3.

    import keras_cnn
    result = keras_cnn.train(config)          # a TrainConfig; see keras_cnn.config and keras_cnn.presets

Importing keras_cnn registers every Keras-serializable class it defines (custom layers, speed
kernels, the learning-rate schedule), so `keras.models.load_model("run/model.keras")` works in
any process that has imported it.
"""

from keras_cnn.commands import launched_for_help

__version__ = "0.1.0"
__all__ = ["RunResult", "models", "train"]

if not launched_for_help():  # `train.py --help` prints stored text and needs none of this
    from keras_cnn.quiet import quiet_tensorflow

    quiet_tensorflow()  # before anything below imports TensorFlow

    from keras_cnn import models  # (registers the model families, custom layers and kernels)
    from keras_cnn.api import train
    from keras_cnn.training import optim  # noqa: F401  (registers the learning-rate schedule)
    from keras_cnn.training.run import RunResult


def __getattr__(name):
    """The same names, imported on first use where the help-only start skipped them."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from keras_cnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    from keras_cnn import api, models
    from keras_cnn.training import optim  # noqa: F401
    from keras_cnn.training.run import RunResult

    return {"RunResult": RunResult, "models": models, "train": api.train}[name]
