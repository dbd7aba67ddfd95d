"""Thin wrapper: see keras_cnn/cli/report.py (also installed as the `keras-cnn-report` command)."""

import sys

from keras_cnn.cli.report import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
