"""Thin wrapper: see tuning/tune.py (also installed as the `keras-cnn-tune` command)."""

import sys

from tuning.tune import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
