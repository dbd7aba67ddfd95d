"""Thin wrapper: see keras_cnn/cli/prepare.py (also installed as the `keras-cnn-prepare` command)."""

import sys

from keras_cnn.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
