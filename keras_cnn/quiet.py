"""Keep TensorFlow's start-up chatter off the terminal; KERAS_CNN_VERBOSE=1 shows it."""

import os


def quiet_tensorflow():
    """Import TensorFlow with stderr muted.

    TF 2.21 logs oneDNN/CUDA notices before absl logging is initialised, where
    TF_CPP_MIN_LOG_LEVEL cannot reach them, so stderr is muted while TF loads and probes its
    devices. An import failure still raises, and its traceback prints after the restore.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_CNN_VERBOSE"):
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
        tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
