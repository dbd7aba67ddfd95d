"""Value rules: the one place a config value, a model option or a flag is parsed and checked.

A rule is a kind name ("count", "fraction", ...; a trailing "?" also allows None) or a tuple of
the allowed strings. `check(key, hint, rule, value)` checks the value's type against the type
hint, that numbers are finite, then the rule; `parse(hint, text, key)` reads a command-line
string as the hinted type. Both raise UsageError naming `key`.
"""

import math
import types
import typing
from collections.abc import Callable
from typing import Any

from keras_cnn.errors import UsageError

Rule = str | tuple[str, ...] | None


def is_path_component(name: object) -> bool:
    """One folder name, so a run, trial or sweep cannot reach outside its output folder."""
    return (
        isinstance(name, str)
        and name.strip() == name
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not name.startswith("~")
    )


def _is_dataset_name(v: str) -> bool:
    return bool(v) and not v.startswith(("/", "~")) and ".." not in v.split("/") and "\0" not in v


# kind -> (test, what the value must be)
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (lambda v: v >= 1, "at least 1"),
    "counts": (lambda v: all(x >= 1 for x in v), "numbers of at least 1"),
    "size": (lambda v: v >= 0, "at least 0"),
    "rate": (lambda v: v > 0, "greater than 0"),
    "rates": (lambda v: all(x > 0 for x in v), "numbers greater than 0"),
    "nonneg": (lambda v: v >= 0, "at least 0"),
    "nonnegs": (lambda v: all(x >= 0 for x in v), "numbers of at least 0"),
    "fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "unit": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "open_unit": (lambda v: 0 < v < 1, "in (0, 1)"),
    "unit_open": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "nonempty": (lambda v: bool(v.strip()), "a non-empty string"),
    "shape2": (lambda v: len(v) == 2 and min(v) >= 1, "HxW with positive sizes, e.g. 224x224"),
    "component": (is_path_component, "one folder name: no '/', not '.' or '..', not empty"),
    "dataset": (_is_dataset_name, "a dataset name such as cifar10 (TFDS names may have a /config part)"),
}


def check(key: str, hint: Any, rule: Rule, value: Any, limit: float | None = None) -> None:
    """Type, finiteness, then rule; the first violation is a UsageError naming `key`."""
    check_type(key, hint, value)
    numbers = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise UsageError(f"{key} must be a finite number, got {value!r}")
    if rule is None or (value is None and (isinstance(rule, tuple) or rule.endswith("?"))):
        return
    if isinstance(rule, tuple):
        if value not in rule:
            raise UsageError(f"unknown {key} {value!r}; choose one of: {', '.join(rule)}")
        return
    if value is None:
        raise UsageError(f"{key} must be set")
    test, wanted = KINDS[rule.rstrip("?")]
    if not test(value):
        raise UsageError(f"{key} must be {wanted}, got {value!r}")
    if limit is not None and value > limit:
        raise UsageError(f"{key} must be at most {limit:,}, got {value:,}")


def optional(hint: Any) -> tuple[Any, bool]:
    """(the hint without None, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return next(a for a in args if a is not type(None)), type(None) in args
    return hint, False


def check_type(key: str, hint: Any, value: Any) -> None:
    hint, nullable = optional(hint)
    if value is None and nullable:
        return
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        ok = isinstance(value, tuple) and all(_is(item, v) for v in value)
    else:
        ok = _is(hint, value)
    if not ok:
        raise UsageError(f"{key} must be {type_name(hint)}, got {value!r}")


def _is(hint: Any, value: Any) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def type_name(hint: Any) -> str:
    hint, _ = optional(hint)
    if typing.get_origin(hint) is tuple:
        plural = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(typing.get_args(hint)[0], 'values')}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, str(hint))


def parse(hint: Any, text: str, key: str = "value") -> Any:
    """Parse a command-line string as the hinted type (bool, int, float, str, tuples, Optional)."""
    inner, nullable = optional(hint)
    if inner is not hint:
        if nullable and text.lower() in ("none", "null", ""):
            return None
        return parse(inner, text, key)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        separated = text.lower().replace("x", ",") if item is int else text
        return tuple(parse(item, p.strip(), key) for p in separated.split(",") if p.strip())
    if hint is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise UsageError(f"--set {key}={text}: expected true or false")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise UsageError(f"--set {key}={text}: expected {'an integer' if hint is int else 'a number'}") from None
    return text


def normalize(rule: Rule, value: Any) -> Any:
    """A parsed value as its flag would have made it: one size for an HxW shape means a square."""
    if isinstance(rule, str) and rule.rstrip("?") == "shape2" and isinstance(value, tuple) and len(value) == 1:
        return value * 2
    return value


def from_json(value: Any) -> Any:
    """A JSON value as a config value: lists become tuples (frozen configs hold tuples)."""
    return tuple(value) if isinstance(value, list) else value


SIZE_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def format_size(nbytes: float) -> str:
    """Bytes for people: 5.0 GB, 123.4 KB, 13 B (decimal units, as parse_size reads them)."""
    for unit in ("TB", "GB", "MB", "KB"):
        if nbytes >= SIZE_UNITS[unit]:
            return f"{nbytes / SIZE_UNITS[unit]:.1f} {unit}"
    return f"{int(nbytes)} B"


def parse_size(text: str, what: str = "data.memory_budget") -> int:
    """'4GB', '512MB', '1.5GiB', '1000000' -> bytes; a clear error (naming `what`) otherwise."""
    raw = str(text).strip().upper().replace(" ", "")
    number = raw.rstrip("KMGTIB")
    try:
        value = float(number) * SIZE_UNITS[raw[len(number) :]]
    except (ValueError, KeyError):
        raise UsageError(f"{what} {text!r} is not a size; write e.g. 4GB, 512MB or 1.5GiB") from None
    if not value > 0:
        raise UsageError(f"{what} must be positive, got {text!r}")
    return int(value)
