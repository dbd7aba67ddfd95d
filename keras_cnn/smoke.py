"""KERAS_CNN_SMOKE=1: every command does seconds of the same work (the README's commands run as tests).

Training runs become their smoke twins (presets.smoke: a 512-image subset, one epoch of four
steps), recorded in config.json as resolved.smoke; searches run at most 2 trials, sweeps 2 seeds (or the first 2 folds),
benchmarks and diagnostics a few steps. Results made this way are for checking that commands
work, never for reading accuracies off.
"""
import os

ENV = "KERAS_CNN_SMOKE"


def enabled():
    return os.environ.get(ENV, "") not in ("", "0")


def cap(value, limit):
    """value, or at most `limit` under KERAS_CNN_SMOKE=1."""
    return min(value, limit) if enabled() and value is not None else value
