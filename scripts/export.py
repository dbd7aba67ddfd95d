"""Thin wrapper: see keras_cnn/cli/export.py (also installed as the `keras-cnn-export` command)."""

import sys

from keras_cnn.cli.export import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
