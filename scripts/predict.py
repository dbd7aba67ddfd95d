"""Thin wrapper: see keras_cnn/cli/predict.py (also installed as the `keras-cnn-predict` command)."""

import sys

from keras_cnn.cli.predict import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
