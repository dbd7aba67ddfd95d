"""Search spaces as data, mapped to KerasTuner hyperparameters in one place.

A space maps config paths (`section.field`) to ranges or choices:

    {"optimizer.learning_rate": {"min": 1e-4, "max": 1.0, "sampling": "log"},
     "model.dropout": {"min": 0.0, "max": 0.5},
     "optimizer.name": {"values": ["sgd", "adam"]}}

Built-in spaces live in tuning/spaces/*.toml (one per model family); a user's TOML file of
the same form replaces them. Columns in trials.csv are the field names (`learning_rate`).
"""
import math
import os
import tomllib

from keras_cnn.config import TrainConfig, apply_overrides
from keras_cnn.errors import UsageError

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "spaces")
FAMILIES = {"mlp": "mlp", "linear": "mlp", "cnn": "cnn", "alexnet": "cnn"}


def builtin_space_name(model):
    if model.startswith(("resnet", "vgg")):
        return "convnet"
    return FAMILIES.get(model, "convnet")


def load_space(name_or_path, model):
    """'default' -> the model family's built-in space; else a built-in name or a TOML path."""
    if name_or_path == "default":
        name_or_path = builtin_space_name(model)
    path = name_or_path if os.path.isfile(name_or_path) else os.path.join(BUILTIN_DIR, f"{name_or_path}.toml")
    if not os.path.isfile(path):
        builtins = sorted(f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".toml"))
        raise UsageError(f"search space {name_or_path!r} is neither a file nor a built-in ({', '.join(builtins)})")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path} is not valid TOML ({err})") from None
    return validate_space(flatten(raw), path)


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


def validate_space(space, where="space"):
    if not space:
        raise UsageError(f"{where} defines no hyperparameters")
    for path, spec in space.items():
        try:
            apply_overrides(TrainConfig(), [f"{path}={_example(spec)}"])
        except UsageError as err:
            raise UsageError(f"{where}: {path}: {err}") from None
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


def _example(spec):
    value = spec["values"][0] if "values" in spec else spec.get("min")
    return ",".join(map(str, value)) if isinstance(value, list) else value


def column(path):
    return path.rsplit(".", 1)[-1]


def define(hp, space):
    """Register every hyperparameter of `space` on a KerasTuner `hp`; returns {path: value}."""
    values = {}
    for path, spec in space.items():
        name = column(path)
        if "values" in spec:
            choices = [",".join(map(str, v)) if isinstance(v, list) else v for v in spec["values"]]
            values[path] = hp.Choice(name, choices)
        elif isinstance(spec["min"], int) and isinstance(spec["max"], int) and not spec.get("float"):
            values[path] = hp.Int(name, spec["min"], spec["max"], sampling=spec.get("sampling", "linear"))
        else:
            values[path] = hp.Float(name, float(spec["min"]), float(spec["max"]), sampling=spec.get("sampling", "linear"))
    return values


def refine(space, rows, top):
    """Coarse-to-fine: narrow each range around the `top` best finished trials.

    Numeric ranges shrink to the span of the best values, widened by a factor of 2 on log
    axes (10% of the old width on linear ones) and kept inside the old range; choices keep
    only the values the best trials used.
    """
    finished = [r for r in rows if r.get("status") == "finished" and r.get("best_val_accuracy") not in (None, "")]
    if not finished:
        raise UsageError("no finished trials to refine from; run a search first")
    best = sorted(finished, key=lambda r: float(r["best_val_accuracy"]), reverse=True)[:top]
    narrowed = {}
    for path, spec in space.items():
        seen = [r[column(path)] for r in best if r.get(column(path)) not in (None, "")]
        if "values" in spec:
            kept = [v for v in spec["values"] if str(v) in {str(s) for s in seen}]
            narrowed[path] = {"values": kept or spec["values"]}
            continue
        numbers = [float(v) for v in seen]
        low, high = min(numbers), max(numbers)
        if spec.get("sampling") == "log":
            low, high = low / 2, high * 2
        else:
            margin = 0.1 * (spec["max"] - spec["min"])
            low, high = low - margin, high + margin
        low, high = max(low, spec["min"]), min(high, spec["max"])
        if isinstance(spec["min"], int) and isinstance(spec["max"], int):
            low, high = math.floor(low), math.ceil(high)
        if low >= high:  # every best trial agreed: keep a small window around it
            low, high = (low / 1.5, high * 1.5) if spec.get("sampling") == "log" else (low - 1e-9, high + 1e-9)
        narrowed[path] = {**spec, "min": type(spec["min"])(low), "max": type(spec["max"])(high)}
    return narrowed
