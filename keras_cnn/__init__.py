"""keras_cnn: train the classic image classifiers with TensorFlow and Keras 3.

    import keras_cnn
    result = keras_cnn.train(config)          # a TrainConfig; see keras_cnn.config and keras_cnn.presets

Importing keras_cnn registers every Keras-serializable class it defines (custom layers, speed
kernels, the learning-rate schedule), so `keras.models.load_model("run/model.keras")` works in
any process that has imported it.
"""

from keras_cnn.quiet import quiet_tensorflow

quiet_tensorflow()  # before anything below imports TensorFlow

from collections.abc import Sequence  # noqa: E402

import keras  # noqa: E402

from keras_cnn import models  # noqa: E402  (registers the model families, custom layers and kernels)
from keras_cnn.config import TrainConfig  # noqa: E402
from keras_cnn.export import ExportOnFinish  # noqa: E402
from keras_cnn.tracking import check_installed  # noqa: E402
from keras_cnn.tracking.tracker import MlflowTracker  # noqa: E402
from keras_cnn.training import optim  # noqa: E402,F401  (registers the learning-rate schedule)
from keras_cnn.training.layer_stats import LayerStats  # noqa: E402
from keras_cnn.training.run import RunResult  # noqa: E402
from keras_cnn.training.run import train as _train  # noqa: E402

__version__ = "0.1.0"
__all__ = ["RunResult", "models", "train"]


def train(config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = (), verbose: int = 1) -> RunResult:
    """Run one training job described by a TrainConfig; returns a RunResult.

    callbacks: keras.callbacks.Callback instances (EarlyStopping, CSVLogger, TerminateOnNaN,
    LambdaCallback, your own), called with Keras's hooks and log names; see
    keras_cnn.training.callbacks. Callbacks that set the learning rate or restore runs are refused.
    verbose: 0 silent, 1 progress and one line per epoch, 2 more often.

    Besides the caller's callbacks, a run gets per-layer statistics (config.run.layer_stats) and,
    the export of <run>/saved_model/1 when it finishes (config.run.export) and, last, the upload
    to an experiment tracker (config.run.track; keras_cnn.tracking).
    """
    check_installed(config.run.track)  # one line naming the extra, before anything runs
    extra = []
    if config.run.layer_stats:
        extra.append(LayerStats())
    if config.run.export:
        extra.append(ExportOnFinish())
    if config.run.track == "mlflow":
        extra.append(MlflowTracker())
    return _train(config, callbacks=[*callbacks, *extra], verbose=verbose)
