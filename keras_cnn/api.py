"""keras_cnn.train: one training job, with the callbacks every run gets (see keras_cnn/__init__.py)."""

from collections.abc import Sequence

import keras

from keras_cnn.config import TrainConfig
from keras_cnn.export import ExportOnFinish
from keras_cnn.tracking import check_installed
from keras_cnn.tracking.tracker import MlflowTracker
from keras_cnn.training.layer_stats import LayerStats
from keras_cnn.training.multi_label import ThresholdOnFinish
from keras_cnn.training.run import RunResult
from keras_cnn.training.run import train as _train


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
    if config.data.multi_label:  # before the export, which serves the threshold it chooses
        extra.append(ThresholdOnFinish())
    if config.run.export:
        extra.append(ExportOnFinish())
    if config.run.track == "mlflow":
        extra.append(MlflowTracker())
    return _train(config, callbacks=[*callbacks, *extra], verbose=verbose)
