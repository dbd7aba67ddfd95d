"""Thin wrapper: see keras_cnn/cli/train.py (also installed as the `keras-cnn-train` command)."""

import sys

from keras_cnn.cli.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
