"""KERAS_CNN_SMOKE=1: every command does seconds of the same work (the README's commands run as tests).

Only the command-line layer reads the variable: CLIs set `run.smoke` on the configs they train
(train() then runs presets.smoke's twin: a 512-image subset, one epoch of four steps, recorded in
config.json as resolved.smoke), and cap their own loops: searches run at most 2 trials, sweeps 2
seeds (or the first 2 folds), benchmarks and diagnostics a few steps. Results made this way are for
checking that commands work, never for reading accuracies off.
"""

import os

ENV = "KERAS_CNN_SMOKE"


def requested() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def assignments() -> list[str]:
    """The config assignment a CLI adds under KERAS_CNN_SMOKE=1."""
    return ["run.smoke=true"] if requested() else []


def cap(value: int | None, limit: int) -> int | None:
    """value, or at most `limit` under KERAS_CNN_SMOKE=1."""
    return min(value, limit) if requested() and value is not None else value
