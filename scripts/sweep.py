"""Thin wrapper: see tuning/sweep.py (also installed as the `keras-cnn-sweep` command)."""

import sys

from keras_cnn.cli.launch import run

if __name__ == "__main__":
    sys.exit(run("sweep"))
