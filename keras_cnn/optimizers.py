"""Optimizers and learning-rate schedules as data: one table each, from name to builder and options.

Validation, `--optimizer` / `--schedule` and their --help, the training build, lr.png and the tests
all read `OPTIMIZERS` and `SCHEDULES`; the sections they read are defined here too, each field with
its rule. Adding an optimizer is one entry in OPTIMIZERS; a schedule one function in SCHEDULES
(its keyword-only parameters are the schedule.* fields it reads; a new one is a field below).
"""

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from keras_cnn.kernels import SGD


def _rule(rule: str | tuple[str, ...], default: Any) -> Any:
    return dataclasses.field(default=default, metadata={"rule": rule})


LOSSES = ("categorical_crossentropy", "binary_crossentropy", "sum_of_squares")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"  # a key of OPTIMIZERS
    learning_rate: float = _rule("rate", 0.1)  # for the global batch
    momentum: float = _rule("fraction", 0.9)  # sgd, rmsprop
    nesterov: bool = False  # sgd
    weight_decay: float = _rule("nonneg", 0.0)  # L2 through the model, or decoupled where the optimizer says so
    clipnorm: float | None = _rule("rate?", None)
    label_smoothing: float = _rule("fraction", 0.0)
    loss: str = _rule(LOSSES, "categorical_crossentropy")
    # None | balanced | CLASS=W,...: each training example's loss times its class's weight (training.class_weights)
    class_weight: str | None = _rule("nonempty?", None)
    scale_lr_with_replicas: bool = False


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    name: str = "constant"  # a key of SCHEDULES
    warmup_epochs: float = _rule("nonneg", 0.0)
    boundaries: tuple[float, ...] = _rule("nonnegs", ())  # piecewise: epochs where the LR changes
    multipliers: tuple[float, ...] = _rule("rates", ())  # piecewise: LR factor after each boundary
    decay_rate: float = _rule("rate", 0.1)  # exponential
    decay_epochs: float = _rule("rate", 1.0)  # exponential
    staircase: bool = True  # exponential
    final_fraction: float = _rule("unit", 0.0)  # cosine / onecycle: final LR as a fraction of the peak


# ------------------------------------------------------------------------------ optimizers

OptimizerBuilder = Callable[[OptimizerConfig, dict[str, Any]], keras.optimizers.Optimizer]


@dataclasses.dataclass(frozen=True)
class OptimizerKind:
    """build(optimizer section, common keyword arguments: learning_rate, clipnorm) -> a Keras optimizer.

    decoupled_decay: the optimizer applies optimizer.weight_decay itself (AdamW), so the model
    gets no L2 (never both).
    """

    build: OptimizerBuilder
    help: str
    decoupled_decay: bool = False


OPTIMIZERS: dict[str, OptimizerKind] = {
    "sgd": OptimizerKind(
        lambda o, common: SGD(momentum=o.momentum, nesterov=o.nesterov, **common),
        "SGD with optimizer.momentum and optimizer.nesterov",
    ),
    "rmsprop": OptimizerKind(
        lambda o, common: keras.optimizers.RMSprop(momentum=o.momentum, **common), "RMSprop with optimizer.momentum"
    ),
    "adam": OptimizerKind(lambda o, common: keras.optimizers.Adam(**common), "Adam"),
    "adamw": OptimizerKind(
        lambda o, common: keras.optimizers.AdamW(weight_decay=o.weight_decay, **common),
        "Adam with decoupled optimizer.weight_decay",
        decoupled_decay=True,
    ),
    "adagrad": OptimizerKind(lambda o, common: keras.optimizers.Adagrad(**common), "Adagrad"),
    "adadelta": OptimizerKind(lambda o, common: keras.optimizers.Adadelta(**common), "Adadelta"),
    "nadam": OptimizerKind(lambda o, common: keras.optimizers.Nadam(**common), "Adam with Nesterov momentum"),
}


# ------------------------------------------------------------------------------ schedules
# rate(step, base_lr, steps_per_epoch, total_steps, *, <schedule.* fields it reads>) -> the LR at step.
# Pure tensor functions, so the same code trains and draws lr.png.


def _constant(step: tf.Tensor, base_lr: float, steps_per_epoch: int, total_steps: int) -> tf.Tensor:
    return tf.fill(tf.shape(step), base_lr)


def _piecewise(
    step: tf.Tensor,
    base_lr: float,
    steps_per_epoch: int,
    total_steps: int,
    *,
    boundaries: tuple[float, ...],
    multipliers: tuple[float, ...],
) -> tf.Tensor:
    lr = tf.fill(tf.shape(step), base_lr)
    for boundary, mult in zip(boundaries, multipliers, strict=True):
        lr = tf.where(step >= boundary * steps_per_epoch, base_lr * mult, lr)
    return lr


def _exponential(
    step: tf.Tensor,
    base_lr: float,
    steps_per_epoch: int,
    total_steps: int,
    *,
    decay_rate: float,
    decay_epochs: float,
    staircase: bool,
) -> tf.Tensor:
    exponent = step / max(decay_epochs * steps_per_epoch, 1.0)
    if staircase:
        exponent = tf.floor(exponent)
    return base_lr * tf.pow(decay_rate, exponent)


def _cosine(
    step: tf.Tensor,
    base_lr: float,
    steps_per_epoch: int,
    total_steps: int,
    *,
    warmup_epochs: float,
    final_fraction: float,
) -> tf.Tensor:
    warmup = warmup_epochs * steps_per_epoch
    progress = tf.minimum(tf.maximum(step - warmup, 0.0) / max(total_steps - warmup, 1.0), 1.0)
    low = base_lr * final_fraction
    return low + 0.5 * (base_lr - low) * (1.0 + tf.cos(math.pi * progress))


def _onecycle(
    step: tf.Tensor, base_lr: float, steps_per_epoch: int, total_steps: int, *, final_fraction: float
) -> tf.Tensor:
    """Linear up from base_lr/25 for 30% of training, then linear down (Smith & Topin 2017)."""
    peak_at = 0.3 * total_steps
    start = base_lr / 25.0
    low = base_lr * final_fraction
    up = start + (base_lr - start) * step / max(peak_at, 1.0)
    down = base_lr - (base_lr - low) * (step - peak_at) / max(total_steps - peak_at, 1.0)
    return tf.where(step < peak_at, up, tf.maximum(down, low))


ScheduleRate = Callable[..., tf.Tensor]


@dataclasses.dataclass(frozen=True)
class ScheduleKind:
    """rate: the schedule's function; extendable: its rate does not depend on the run's length, so a
    finished run can be extended by more epochs; warmup: schedule.warmup_epochs ramps it up linearly."""

    rate: ScheduleRate
    help: str
    extendable: bool
    warmup: bool = True

    def fields(self) -> tuple[str, ...]:
        """The schedule.* fields the rate reads."""
        params = inspect.signature(self.rate).parameters.values()
        return tuple(p.name for p in params if p.kind == p.KEYWORD_ONLY)


SCHEDULES: dict[str, ScheduleKind] = {
    "constant": ScheduleKind(_constant, "the base rate throughout", extendable=True),
    "piecewise": ScheduleKind(
        _piecewise, "the base rate times schedule.multipliers after schedule.boundaries", extendable=True
    ),
    "exponential": ScheduleKind(
        _exponential, "decay by schedule.decay_rate every schedule.decay_epochs", extendable=True
    ),
    "cosine": ScheduleKind(_cosine, "half a cosine down to schedule.final_fraction", extendable=False),
    "onecycle": ScheduleKind(
        _onecycle, "up for 30 percent of the steps, then down (its own warm-up)", extendable=False, warmup=False
    ),
}


def learning_rate_at(step: Any, base_lr: float, cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int) -> Any:
    """The learning rate at `step` (a float tensor or numpy array): warm-up, then the schedule."""
    kind = SCHEDULES[cfg.name]
    step = tf.cast(step, tf.float32)
    lr = kind.rate(step, base_lr, steps_per_epoch, total_steps, **{f: getattr(cfg, f) for f in kind.fields()})
    warmup = float(cfg.warmup_epochs * steps_per_epoch)
    if kind.warmup and warmup > 0:
        lr = tf.where(step < warmup, lr * (step + 1.0) / warmup, lr)
    return lr


def option_help(table: dict[str, OptimizerKind] | dict[str, ScheduleKind]) -> str:
    """'sgd (SGD with ...), adam (Adam), ...' for a flag's --help."""
    return "; ".join(f"{name}: {kind.help}" for name, kind in table.items())
