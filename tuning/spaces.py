"""Search spaces: data (TOML) or a Python function, every hyperparameter named by its config path.

As data, a space maps config paths (`section.field`) to ranges or choices:

    {"optimizer.learning_rate": {"min": 1e-4, "max": 1.0, "sampling": "log"},
     "model.dropout": {"min": 0.0, "max": 0.5},
     "optimizer.name": {"values": ["sgd", "adam"]}}

mapped to KerasTuner's hp.Float / hp.Int / hp.Choice in one place (`Space.define`). Built-in
spaces live in tuning/spaces/*.toml (one per model family); a user's TOML file replaces them.

As Python, a file defines `space(hp)` returning {config path: value}, drawing each value from
KerasTuner's `hp` under the config path's name; conditional spaces are allowed:

    def space(hp):
        model = hp.Choice("model.name", ["mlp", "cnn"])
        out = {"model.name": model, "optimizer.learning_rate": hp.Float("optimizer.learning_rate", 1e-3, 1, sampling="log")}
        if model == "mlp":
            out["model.hidden"] = hp.Choice("model.hidden", ["100", "200,200"])
        return out
"""

import hashlib
import importlib.util
import math
import os
import tomllib
from collections.abc import Callable
from typing import Any

import keras_tuner

from keras_cnn.config import TrainConfig, apply_overrides, validate_field
from keras_cnn.errors import UsageError

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "spaces")
FAMILIES = {"mlp": "mlp", "linear": "mlp", "cnn": "cnn", "alexnet": "cnn"}


class Space:
    """A search space: `define(hp)` draws {config path: value}; `record` identifies it for resuming."""

    def __init__(
        self,
        table: dict[str, Any] | None = None,
        function: Callable[[Any], dict[str, Any]] | None = None,
        source: str = "",
    ) -> None:
        self.table, self.function, self.source = table, function, source
        self.conditional = function is not None  # a Python space may add hyperparameters on some branches

    @property
    def record(self):
        if self.table is not None:
            return {"table": self.table}
        with open(self.source, "rb") as f:
            return {"python": os.path.abspath(self.source), "sha256": hashlib.sha256(f.read()).hexdigest()}

    def define(self, hp):
        """Register the hyperparameters on KerasTuner's `hp`; returns {config path: value} for this trial."""
        if self.function is None:
            return define_table(hp, self.table)
        values = self.function(hp)
        if not isinstance(values, dict) or not values:
            raise UsageError(f"{self.source}: space(hp) must return a non-empty dict of config path -> value")
        for path, value in values.items():
            check_path(path, value, self.source)
        return {path: _as_text(value) for path, value in values.items()}

    def declared(self):
        """A HyperParameters with the space declared up front (for the oracle and for plotting)."""
        hp = keras_tuner.HyperParameters()
        self.define(hp)
        return hp

    def paths(self):
        return list(self.table) if self.table is not None else list(self.define(keras_tuner.HyperParameters()))

    def sets(self, path):
        return path in self.paths()


def builtin_space_name(model):
    if model.startswith(("resnet", "vgg")):
        return "convnet"
    return FAMILIES.get(model, "convnet")


def load_space(name_or_path: str, model: str | None) -> Space:
    """'default' -> the model family's built-in space; a built-in name; a TOML file; or a .py file with space(hp)."""
    if name_or_path.endswith(".py"):
        return load_python_space(name_or_path)
    if name_or_path == "default":
        if not model:
            raise UsageError("--space default needs --model (or a Python --space that sets model.name)")
        name_or_path = builtin_space_name(model)
    path = name_or_path if os.path.isfile(name_or_path) else os.path.join(BUILTIN_DIR, f"{name_or_path}.toml")
    if not os.path.isfile(path):
        builtins = sorted(f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".toml"))
        raise UsageError(f"search space {name_or_path!r} is neither a file nor a built-in ({', '.join(builtins)})")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is not valid TOML ({err})") from None
    return Space(table=validate_table(flatten(raw), path), source=path)


def load_python_space(path):
    if not os.path.isfile(path):
        raise UsageError(f"--space {path} does not exist; give a .py file defining space(hp)")
    spec = importlib.util.spec_from_file_location("keras_cnn_user_space", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file: any error in it is theirs to fix
        raise UsageError(f"{path} failed to load ({type(err).__name__}: {err})") from None
    if not callable(getattr(module, "space", None)):
        raise UsageError(f"{path} defines no space(hp) function")
    space = Space(function=module.space, source=path)
    try:
        space.paths()  # draw once: bad paths or values are reported before any trial runs
    except UsageError:
        raise
    except Exception as err:
        raise UsageError(f"{path}: space(hp) failed ({type(err).__name__}: {err})") from None
    return space


def flatten(table, prefix=""):
    """TOML nests `[optimizer.learning_rate]`; spaces are keyed by the dotted path."""
    out = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not ({"min", "max", "values"} & set(value)):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def check_path(path, value, where):
    """The value is valid for its field on its own (a model option by its rule: which model takes
    it is the trial's to check, as the space may choose the model too)."""
    try:
        validate_field(apply_overrides(TrainConfig(), [f"{path}={_as_text(value)}"]), path)
    except UsageError as err:
        raise UsageError(f"{where}: {path}: {err}") from None


def validate_table(space, where="space"):
    if not space:
        raise UsageError(f"{where} defines no hyperparameters")
    for path, spec in space.items():
        if not isinstance(spec, dict):
            raise UsageError(f"{where}: {path} needs min and max, or values")
        for value in spec.get("values") or [spec.get("min"), spec.get("max")]:  # every choice, both ends
            check_path(path, value, where)
        if "values" in spec:
            if not spec["values"]:
                raise UsageError(f"{where}: {path} has an empty list of values")
        elif "min" in spec and "max" in spec:
            if not spec["min"] < spec["max"]:
                raise UsageError(f"{where}: {path} needs min < max")
            if spec.get("sampling", "linear") not in ("linear", "log"):
                raise UsageError(f"{where}: {path}: sampling must be linear or log")
            if spec.get("sampling") == "log" and spec["min"] <= 0:
                raise UsageError(f"{where}: {path}: log sampling needs min > 0")
        else:
            raise UsageError(f"{where}: {path} needs min and max, or values")
    return space


def _as_text(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def define_table(hp, table):
    """Register every hyperparameter of a data space on `hp`, named by its config path."""
    values = {}
    for path, spec in table.items():
        if "values" in spec:
            values[path] = hp.Choice(path, [_as_text(v) for v in spec["values"]])
        elif isinstance(spec["min"], int) and isinstance(spec["max"], int) and not spec.get("float"):
            values[path] = hp.Int(path, spec["min"], spec["max"], sampling=spec.get("sampling", "linear"))
        else:
            values[path] = hp.Float(
                path, float(spec["min"]), float(spec["max"]), sampling=spec.get("sampling", "linear")
            )
    return values


EDGE = 0.1  # the outer tenth of a range (in log space for log ranges) counts as its edge


def refine(space, rows, top):
    """Coarse-to-fine: narrow each range around the `top` best finished trials, and widen a range
    whose best trials sit at its edge (one decade for log ranges, half the width for linear ones).

    Returns (new table, notes): the notes say which edges were extended.
    """
    if space.table is None:
        raise UsageError("--refine works on data (TOML) spaces; a Python space narrows itself")
    finished = [r for r in rows if r.get("status") == "finished" and r.get("best_val_accuracy") not in (None, "")]
    if not finished:
        raise UsageError("no finished trials to refine from; run a search first")
    best = sorted(finished, key=lambda r: float(r["best_val_accuracy"]), reverse=True)[:top]
    narrowed, notes = {}, []
    for path, spec in space.table.items():
        seen = [r[path] for r in best if r.get(path) not in (None, "")]
        if "values" in spec:
            kept = [v for v in spec["values"] if str(_as_text(v)) in {str(s) for s in seen}]
            narrowed[path] = {"values": kept or spec["values"]}
            continue
        narrowed[path], note = _refine_range(path, spec, [float(v) for v in seen])
        notes += [note] if note else []
    return narrowed, notes


def _legal(path, value, like):
    try:
        check_path(path, type(like)(value), "refine")
        return True
    except UsageError:
        return False


def _refine_range(path, spec, numbers):
    log = spec.get("sampling") == "log"
    low0, high0 = spec["min"], spec["max"]

    def position(v):
        return (
            (math.log(v) - math.log(low0)) / (math.log(high0) - math.log(low0)) if log else (v - low0) / (high0 - low0)
        )

    if not numbers:
        return spec, None
    low, high = min(numbers), max(numbers)
    low, high = (low / 2, high * 2) if log else (low - 0.1 * (high0 - low0), high + 0.1 * (high0 - low0))
    low, high, notes = max(low, low0), min(high, high0), []
    # The best sit at an edge: the optimum may lie beyond it, so the edge moves out (if the field allows).
    if position(min(numbers)) <= EDGE and _legal(path, low0 / 10 if log else low0 - (high0 - low0) / 2, low0):
        low = low0 / 10 if log else low0 - (high0 - low0) / 2
        notes.append(f"{path}: best trials at the low edge {low0:g}; extended to {low:g}")
    if position(max(numbers)) >= 1 - EDGE and _legal(path, high0 * 10 if log else high0 + (high0 - low0) / 2, high0):
        high = high0 * 10 if log else high0 + (high0 - low0) / 2
        notes.append(f"{path}: best trials at the high edge {high0:g}; extended to {high:g}")
    note = "; ".join(notes) or None
    if isinstance(low0, int) and isinstance(high0, int):
        low, high = math.floor(low), math.ceil(high)
    if low >= high:  # every best trial agreed: keep a small window around it
        low, high = (low / 1.5, high * 1.5) if log else (low - 1e-9, high + 1e-9)
    return {**spec, "min": type(low0)(low), "max": type(high0)(high)}, note
