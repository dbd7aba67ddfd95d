"""Thin wrapper: see keras_cnn/cli/params.py (also installed as the `keras-cnn-params` command)."""

import sys

from keras_cnn.cli.launch import run

if __name__ == "__main__":
    sys.exit(run("params"))
