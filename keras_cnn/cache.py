"""The one folder keras_cnn writes outside the folders a user names: $KERAS_CNN_CACHE_DIR,
default ~/.cache/keras_cnn (decoded datasets, and crash logs of commands that had no run folder)."""

import os

CACHE_ENV = "KERAS_CNN_CACHE_DIR"


def cache_dir(*parts, create=True):
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "keras_cnn")
    path = os.path.join(root, *parts)
    if create:
        os.makedirs(path, exist_ok=True)
    return path
