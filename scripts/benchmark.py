"""Thin wrapper: see keras_cnn/cli/benchmark.py (also installed as the `keras-cnn-benchmark` command)."""

import sys

from keras_cnn.cli.launch import run

if __name__ == "__main__":
    sys.exit(run("benchmark"))
