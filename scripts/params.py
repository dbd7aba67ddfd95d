"""Thin wrapper: see keras_cnn/cli/params.py (also installed as the `keras-cnn-params` command)."""

import sys

from keras_cnn.cli.params import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
