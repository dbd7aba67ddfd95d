"""Thin wrapper: see tuning/sweep.py (also installed as the `keras-cnn-sweep` command)."""

import sys

from tuning.sweep import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
