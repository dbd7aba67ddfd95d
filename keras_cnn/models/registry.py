"""The model registry (timm's pattern): families register builders here; nothing here imports a family.

    register("resnet20", build_cifar_resnet, shared=RESNET_SHARED, depth=20)
    create_model("resnet20", (32, 32, 3), 10, shortcut="identity")

A model's options are data: each keyword-only parameter of its builder, annotated
`Annotated[type, Spec(help, rule)]`, plus the shared options its family registers (models.layers).
`model_options(name)` lists them as `Option`s; config validation, every CLI's model flags,
`--set model.X=V` and params.py read that list, so a new option is one keyword in one builder.
Every builder returns a Keras functional model ending in float32 logits (softmax only at export).
"""

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import keras

from keras_cnn import rules
from keras_cnn.errors import UsageError

Builder = Callable[..., keras.Model]


@dataclasses.dataclass(frozen=True)
class Spec:
    """What an option accepts beyond its type: a rule (see keras_cnn.rules) and one --help line.

    fed_by: the config field that supplies the option instead of `model.<name>` (weight decay is
    the optimizer's setting, handed to the model as L2 except under decoupled-decay optimizers).
    """

    help: str
    rule: rules.Rule = None
    fed_by: str | None = None


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    type: Any  # the type hint: int, float, bool, str, tuple[int, ...], or one of those | None
    default: Any
    spec: Spec

    def check(self, value: Any, key: str | None = None) -> None:
        rules.check(key or f"model.{self.name}", self.type, self.spec.rule, value)


@dataclasses.dataclass(frozen=True)
class _Entry:
    builder: Builder
    fixed: dict[str, Any]
    options: dict[str, Option]


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, builder: Builder, *, shared: Mapping[str, Option] | None = None, **fixed: Any) -> None:
    """Register `builder(input_shape, num_classes, **options)` as `name`.

    fixed: options bound for this variant (depth=16); shared: the shared options the family takes
    (models.layers.shared_options, with the family's defaults), passed to the builder as keywords.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    options = {**dict(shared or {}), **builder_options(builder, fixed)}
    for option in options.values():
        _check_consistent(name, option)
    _REGISTRY[name] = _Entry(builder, dict(fixed), options)


def builder_options(builder: Builder, fixed: Mapping[str, Any] = {}) -> dict[str, Option]:
    """The builder's own options: its keyword-only parameters not bound by `fixed`, each with a Spec."""
    hints = typing.get_type_hints(builder, include_extras=True)
    out = {}
    for p in inspect.signature(builder).parameters.values():
        if p.kind != p.KEYWORD_ONLY or p.name in fixed:
            continue
        hint = hints.get(p.name)
        specs = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Spec)]
        if not specs or p.default is p.empty:
            raise ValueError(f"{builder.__name__}: option {p.name!r} needs a default and Annotated[type, Spec(...)]")
        out[p.name] = Option(p.name, typing.get_args(hint)[0], p.default, specs[0])
    return out


def _check_consistent(model: str, option: Option) -> None:
    """One option name means one thing everywhere: the CLI makes one flag of it."""
    for other in _REGISTRY.values():
        known = other.options.get(option.name)
        if known is not None and (known.type != option.type or known.spec.fed_by != option.spec.fed_by):
            raise ValueError(f"model {model!r} option {option.name!r} differs in type from other models' option")


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_options(name: str) -> dict[str, Option]:
    """The options model `name` accepts, with its defaults."""
    return dict(_lookup(name).options)


def all_options() -> dict[str, Option]:
    """Every option some registered model takes (first registration's default), for CLI flags."""
    out: dict[str, Option] = {}
    for name in list_models():
        for option in _REGISTRY[name].options.values():
            out.setdefault(option.name, option)
    return dict(sorted(out.items()))


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """UsageError unless every option is one of model `name`'s, of the right type and in range."""
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(sorted(k for k, o in allowed.items() if not o.spec.fed_by))}"
        )
    for key, value in options.items():
        allowed[key].check(value)


def create_model(name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> keras.Model:
    """Build model `name` for inputs of `input_shape` (H, W, C) and `num_classes` classes."""
    entry = _lookup(name)
    options = {k: rules.from_json(v) for k, v in options.items()}  # a list where a tuple is meant
    check_options(name, options)
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UsageError(f"input shape must be height x width x channels, e.g. 32x32x3; got {input_shape}")
    if int(num_classes) < 2:
        raise UsageError(f"num_classes must be at least 2, got {num_classes}")
    # Every option reaches the builder, at the model's default where not given.
    values = {**{k: o.default for k, o in entry.options.items()}, **options}
    try:
        return entry.builder(input_shape, int(num_classes), **entry.fixed, **values)
    except ValueError as err:
        if "output size would be zero or negative" not in str(err) and "negative dimension" not in str(err).lower():
            raise
    side = smallest_input_side(entry.builder, input_shape, int(num_classes), {**entry.fixed, **values})
    raise UsageError(
        f"model {name!r} needs inputs of at least {side}x{side} pixels (its pooling shrinks smaller ones to nothing); "
        f"these are {input_shape[0]}x{input_shape[1]}: resize them (train.py --image-size {side}) "
        "or choose another model"
    )


def smallest_input_side(
    builder: Builder, input_shape: tuple[int, ...], num_classes: int, options: Mapping[str, Any], limit: int = 1024
) -> int:
    """The smallest square side the builder accepts (binary search over sizes; used on the error path only)."""

    def builds(side: int) -> bool:
        try:
            builder((side, side, input_shape[2]), num_classes, **options)
            return True
        except ValueError:
            return False

    low, high = max(input_shape[0], input_shape[1]), limit
    if not builds(high):
        return limit
    while low < high:
        middle = (low + high) // 2
        if builds(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _lookup(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
