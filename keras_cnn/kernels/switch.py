"""The one switch for every speed kernel: KERAS_CNN_FAST_KERNELS=0 or set_enabled(False)."""

import contextlib
import os

_enabled = os.environ.get("KERAS_CNN_FAST_KERNELS", "1") != "0"


def enabled():
    return _enabled


def set_enabled(flag):
    global _enabled
    _enabled = bool(flag)


@contextlib.contextmanager
def disabled():
    """The plain Keras path inside the block (for parity tests and A/B benchmarks)."""
    previous = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(previous)
