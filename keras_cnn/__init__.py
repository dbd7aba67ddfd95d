"""keras_cnn: train the classic image classifiers with TensorFlow and Keras 3."""
__version__ = "0.1.0"


def train(config, callbacks=()):
    """Run one training job described by a TrainConfig; returns a RunResult.

    callbacks: keras_cnn.training.loop.Callback instances (epoch/batch hooks, stop_training).
    """
    from keras_cnn.training.run import train as _train

    return _train(config, callbacks=callbacks)
