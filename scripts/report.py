"""Thin wrapper: see keras_cnn/cli/report.py (also installed as the `keras-cnn-report` command)."""

import sys

from keras_cnn.cli.launch import run

if __name__ == "__main__":
    sys.exit(run("report"))
