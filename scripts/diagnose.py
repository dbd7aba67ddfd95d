"""Thin wrapper: see keras_cnn/cli/diagnose.py (also installed as the `keras-cnn-diagnose` command)."""

import sys

from keras_cnn.cli.diagnose import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
