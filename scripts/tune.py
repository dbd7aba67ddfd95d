"""Thin wrapper: see tuning/tune.py (also installed as the `keras-cnn-tune` command)."""

import sys

from keras_cnn.cli.launch import run

if __name__ == "__main__":
    sys.exit(run("tune"))
