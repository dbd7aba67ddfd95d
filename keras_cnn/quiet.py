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


class muted_stderr:
    """Mute file descriptors 1 and 2 (C++ code writes there directly: LiteRT's converter and
    interpreter print INFO lines that no logging level reaches). KERAS_CNN_VERBOSE=1 keeps them."""

    def __enter__(self):
        self.saved = []
        if os.environ.get("KERAS_CNN_VERBOSE"):
            return self
        import sys

        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            self.saved.append((fd, os.dup(fd)))
            os.dup2(devnull, fd)
        os.close(devnull)
        return self

    def __exit__(self, *exc):
        for fd, saved in self.saved:
            os.dup2(saved, fd)
            os.close(saved)
        return False
