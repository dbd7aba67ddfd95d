"""Thin wrapper: see keras_cnn/cli/track.py (also installed as the `keras-cnn-track` command)."""

import sys

from keras_cnn.cli.track import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
