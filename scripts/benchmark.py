"""Thin wrapper: see keras_cnn/cli/benchmark.py (also installed as the `keras-cnn-benchmark` command)."""

import sys

from keras_cnn.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
