"""Thin wrapper: see keras_cnn/cli/evaluate.py (also installed as the `keras-cnn-evaluate` command)."""

import sys

from keras_cnn.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
