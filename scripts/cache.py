"""Thin wrapper: see keras_cnn/cli/cache.py (also installed as the `keras-cnn-cache` command)."""

import sys

from keras_cnn.cli.cache import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
