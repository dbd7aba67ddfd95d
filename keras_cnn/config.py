"""TrainConfig: one frozen dataclass tree describing a run, saved as config.json.

    cfg = TrainConfig()                               # defaults
    cfg = preset("mnist-mlp")                         # a named recipe
    cfg = apply_overrides(cfg, ["optimizer.learning_rate=0.01", "data.flip=true"])

Overrides are strict: an unknown key or a value of the wrong type is a UsageError.
"""
import dataclasses
import json
import math
import types
import typing

from keras_cnn.errors import UsageError

SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"
    data_dir: str | None = None
    val_size: int | None = None  # None: 5,000 for CIFAR, 10,000 for MNIST, else 10%
    split_seed: int = 0
    batch_size: int = 128  # global, split across replicas
    normalization: str = "standardize"  # none | center | standardize | pca_whiten
    crop_padding: int = 0  # random crop after padding this many pixels; 0 = off
    flip: bool = False
    cutout: int = 0  # side of the cutout square; 0 = off
    image_size: tuple[int, ...] | None = None  # (H, W): resize every image
    on_corrupt: str = "skip"  # skip | error
    train_limit: int | None = None  # stratified subset of the training split
    val_limit: int | None = None
    folds: int | None = None  # k-fold cross-validation: validate on fold `fold` of `folds` stratified folds
    fold: int | None = None
    cache: str = "auto"  # auto | memory | disk | none: where decoded images live (data/store.py)
    memory_budget: str | None = None  # e.g. "4GB"; None: a quarter of the RAM available
    augmentation: str = "standard"  # standard (crop_padding, flip, cutout) | random_resized_crop | tf_tutorial
    crop_scale: tuple[float, ...] = (0.08, 1.0)  # random_resized_crop: area fraction range
    crop_ratio: tuple[float, ...] = (0.75, 1.3333333)  # random_resized_crop: aspect ratio range
    eval_crop: float = 1.0  # random_resized_crop: the center crop kept at evaluation and serving (e.g. 0.875)
    crop_size: int | None = None  # tf_tutorial: the random (training) and central (evaluation) crop, e.g. 24
    service: str | None = None  # tf.data service dispatcher (grpc://host:port): preprocessing on its workers


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet20"
    # None means "the model's own default"; see `scripts/params.py --help`.
    hidden: tuple[int, ...] | None = None
    activation: str | None = None
    kernel_initializer: str | None = None
    dropout: float | None = None
    batch_norm: bool | None = None
    shortcut: str | None = None
    filters: tuple[int, ...] | None = None  # cnn: conv widths, e.g. 32,32,64,64
    kernel_size: int | None = None  # cnn: convolution size (3: stacked 3x3; 5 or 7: one large filter)
    pool_every: int | None = None  # cnn
    dense: int | None = None  # cnn: hidden dense width
    width: int | None = None  # resnet9: base width
    init_scale: float | None = None  # the initializer's stddev / limit / gain / variance factor (models/layers.py)
    bias_init: float | None = None  # constant for hidden biases (0.01 for ReLU units; the TF tutorial's 0.1)
    decay_scope: str | None = None  # all: every kernel; dense: the hidden fully connected layers only
    lrn: bool | None = None  # alexnet: local response normalization on/off
    lrn_depth_radius: int | None = None
    lrn_bias: float | None = None
    lrn_alpha: float | None = None
    lrn_beta: float | None = None

    def options(self):
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "name" and getattr(self, f.name) is not None
        }


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"  # sgd | rmsprop | adam | adamw | adagrad | adadelta
    learning_rate: float = 0.1  # for the global batch
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0  # L2 through the model, or decoupled for adamw
    clipnorm: float | None = None
    label_smoothing: float = 0.0
    loss: str = "categorical_crossentropy"  # | binary_crossentropy | sum_of_squares
    scale_lr_with_replicas: bool = False


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    name: str = "constant"  # constant | piecewise | exponential | cosine | onecycle
    warmup_epochs: float = 0.0
    boundaries: tuple[float, ...] = ()  # piecewise: epochs where the LR changes
    multipliers: tuple[float, ...] = ()  # piecewise: LR factor after each boundary
    decay_rate: float = 0.1  # exponential
    decay_epochs: float = 1.0  # exponential
    staircase: bool = True  # exponential
    final_fraction: float = 0.0  # cosine / onecycle: final LR as a fraction of the peak


@dataclasses.dataclass(frozen=True)
class EMAConfig:
    enabled: bool = False
    decay: float = 0.999


@dataclasses.dataclass(frozen=True)
class RunConfig:
    epochs: int = 10
    seed: int = 0
    output_dir: str = "runs"
    name: str | None = None  # default: <model>-<dataset>
    strategy: str = "auto"  # auto | default | mirrored | multi_worker
    precision: str = "auto"  # auto (bf16 where AMX/AVX512-BF16 or Ampere+) | float32 | mixed_bfloat16 | mixed_float16
    steps_per_call: int = 10  # training steps per compiled call
    jit_compile: bool = False
    steps_per_epoch: int | None = None  # cap, for smoke runs
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 3
    overwrite: bool = False
    export: bool = True  # write <run>/saved_model/1/ when the run finishes
    layer_stats: bool = False  # per-layer sparsity, dead units, norms, update ratios each epoch
    init_from: str | None = None  # warm start: another run dir (its final weights) or a checkpoint .npz


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    ema: EMAConfig = EMAConfig()
    run: RunConfig = RunConfig()

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise UsageError(f"a config must be a mapping of sections, got {type(d).__name__}")
        unknown_sections = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown_sections:
            raise UsageError(f"unknown config section(s) {', '.join(sorted(map(str, unknown_sections)))}")
        sections = {}
        for f in dataclasses.fields(cls):
            section_cls = f.type if isinstance(f.type, type) else typing.get_type_hints(cls)[f.name]
            values = d.get(f.name, {})
            if not isinstance(values, dict):
                raise UsageError(f"config section {f.name!r} must be a mapping, got {type(values).__name__}")
            hints = typing.get_type_hints(section_cls)
            unknown = set(values) - set(hints)
            if unknown:
                raise UsageError(f"unknown config key(s) {', '.join(sorted(f'{f.name}.{k}' for k in unknown))}")
            sections[f.name] = section_cls(**{k: _coerce_json(hints[k], v) for k, v in values.items()})
        return cls(**sections)

    def replace(self, **sections):
        """Replace fields inside sections: cfg.replace(run={"epochs": 3})."""
        new = {}
        for section, fields in sections.items():
            new[section] = dataclasses.replace(getattr(self, section), **fields)
        return dataclasses.replace(self, **new)


def apply_overrides(cfg, assignments):
    """Apply `section.field=value` strings strictly (unknown keys and bad types are errors)."""
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot:
            raise UsageError(f"--set {assignment!r} is not section.field=value, e.g. optimizer.learning_rate=0.01")
        if section not in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise UsageError(f"--set {key}: unknown section {section!r}; sections are: {', '.join(_sections())}")
        hints = typing.get_type_hints(type(getattr(cfg, section)))
        if field not in hints:
            raise UsageError(f"--set {key}: unknown field; {section} has: {', '.join(hints)}")
        value = parse_value(hints[field], text.strip(), key)
        cfg = cfg.replace(**{section: {field: value}})
    return cfg


def parse_value(hint, text, key="value"):
    """Parse a command-line string as the annotated type (bool, int, float, str, tuples, Optional)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", ""):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(inner[0], text, key)
    if typing.get_origin(hint) is tuple:
        item = args[0]
        parts = [p for p in text.replace("x", ",").split(",") if p.strip()] if item is int else [p for p in text.split(",") if p.strip()]
        return tuple(parse_value(item, p.strip(), key) for p in parts)
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


def _coerce_json(hint, value):
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(value)
    return value


def _sections():
    return [f.name for f in dataclasses.fields(TrainConfig)]


# --------------------------------------------------------------------------- validation

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta")
SCHEDULES = ("constant", "piecewise", "exponential", "cosine", "onecycle")
# Schedules whose rate does not depend on the run's length, so a finished run can be extended.
EXTENDABLE_SCHEDULES = ("constant", "piecewise", "exponential")
LOSSES = ("categorical_crossentropy", "binary_crossentropy", "sum_of_squares")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
NORMALIZATIONS = ("none", "center", "standardize", "pca_whiten", "per_image")
CACHE_MODES = ("auto", "memory", "disk", "none")
AUGMENTATIONS = ("standard", "random_resized_crop", "tf_tutorial")
ON_CORRUPT = ("skip", "error")

# One rule per kind of value; every field not listed still gets its type checked and, for
# numbers, finiteness. Kinds: count (>= 1), optional counts allow None, size (>= 0),
# rate (finite, > 0), fraction ([0, 1)), unit ([0, 1]), nonneg (finite, >= 0).
RULES = {
    "data.batch_size": "count", "data.val_size": "size?", "data.crop_padding": "size", "data.cutout": "size",
    "data.train_limit": "count?", "data.val_limit": "count?", "data.image_size": "shape2?", "data.folds": "count?",
    "data.fold": "size?", "data.cache": CACHE_MODES, "data.augmentation": AUGMENTATIONS, "data.crop_scale": "rates",
    "data.crop_ratio": "rates", "data.eval_crop": "unit_open", "data.crop_size": "count?", "data.memory_budget": "nonempty?",
    "data.service": "nonempty?",
    "data.normalization": NORMALIZATIONS, "data.on_corrupt": ON_CORRUPT, "data.dataset": "dataset",
    "model.name": "nonempty", "model.hidden": "counts?", "model.dropout": "fraction?", "model.filters": "counts?",
    "model.pool_every": "count?", "model.dense": "count?", "model.kernel_size": "count?", "model.width": "count?",
    "model.init_scale": "rate?", "model.decay_scope": ("all", "dense"), "model.lrn_depth_radius": "size?",
    "model.lrn_bias": "rate?", "model.lrn_alpha": "nonneg?", "model.lrn_beta": "nonneg?",
    "optimizer.name": OPTIMIZERS, "optimizer.learning_rate": "rate", "optimizer.momentum": "fraction",
    "optimizer.weight_decay": "nonneg", "optimizer.clipnorm": "rate?", "optimizer.label_smoothing": "fraction",
    "optimizer.loss": LOSSES,
    "schedule.name": SCHEDULES, "schedule.warmup_epochs": "nonneg", "schedule.boundaries": "nonnegs",
    "schedule.multipliers": "rates", "schedule.decay_rate": "rate", "schedule.decay_epochs": "rate",
    "schedule.final_fraction": "unit",
    "ema.decay": "open_unit",
    "run.epochs": "count", "run.output_dir": "nonempty", "run.name": "component?", "run.strategy": STRATEGIES,
    "run.precision": PRECISIONS, "run.steps_per_call": "count", "run.steps_per_epoch": "count?",
    "run.checkpoint_every_steps": "count?", "run.keep_checkpoints": "count", "run.init_from": "nonempty?",
}
# Hard ceilings, so no value can make a run loop or write without bound.
LIMITS = {"run.epochs": 100_000, "data.batch_size": 1 << 20, "run.steps_per_call": 100_000, "run.keep_checkpoints": 1000}


def validate(cfg):
    """Check every field of cfg by rule; the first violation is a UsageError naming the field."""
    for section in dataclasses.fields(TrainConfig):
        values = getattr(cfg, section.name)
        hints = typing.get_type_hints(type(values))
        for field in dataclasses.fields(values):
            key = f"{section.name}.{field.name}"
            _check_type(key, hints[field.name], getattr(values, field.name))
            _check_rule(key, RULES.get(key), getattr(values, field.name))
    if (cfg.data.folds is None) != (cfg.data.fold is None) or (cfg.data.folds and not cfg.data.fold < cfg.data.folds):
        raise UsageError("data.folds and data.fold go together, with 0 <= data.fold < data.folds")
    if cfg.schedule.name == "piecewise" and len(cfg.schedule.boundaries) != len(cfg.schedule.multipliers):
        raise UsageError("piecewise schedule needs as many schedule.multipliers as schedule.boundaries")
    data = cfg.data
    if data.memory_budget is not None:
        parse_size(data.memory_budget)
    if len(data.crop_scale) != 2 or not data.crop_scale[0] <= data.crop_scale[1] <= 1:
        raise UsageError(f"data.crop_scale must be two area fractions min,max with min <= max <= 1, got {list(data.crop_scale)}")
    if len(data.crop_ratio) != 2 or not data.crop_ratio[0] <= data.crop_ratio[1]:
        raise UsageError(f"data.crop_ratio must be two aspect ratios min,max with min <= max, got {list(data.crop_ratio)}")
    if data.augmentation == "tf_tutorial" and not data.crop_size:
        raise UsageError("data.augmentation=tf_tutorial needs data.crop_size (the tutorial crops 24x24)")
    if list(cfg.schedule.boundaries) != sorted(cfg.schedule.boundaries):
        raise UsageError(f"schedule.boundaries must be in increasing order, got {list(cfg.schedule.boundaries)}")
    return cfg


def _check_type(key, hint, value):
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        ok = isinstance(value, tuple) and all(_is(args[0], v) for v in value)
    else:
        ok = _is(hint, value)
    if not ok:
        raise UsageError(f"{key} must be {_type_name(hint)}, got {value!r}")


def _is(hint, value):
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint):
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _check_rule(key, rule, value):
    numbers = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise UsageError(f"{key} must be a finite number, got {value!r}")
    if rule is None or (value is None and (isinstance(rule, tuple) or rule.endswith("?"))):
        return
    if isinstance(rule, tuple):
        if value not in rule:
            raise UsageError(f"unknown {key} {value!r}; choose one of: {', '.join(rule)}")
        return
    kind = rule.rstrip("?")
    if value is None:
        raise UsageError(f"{key} must be set")
    checks = {
        "count": (lambda v: v >= 1, "at least 1"), "counts": (lambda v: all(x >= 1 for x in v), "numbers of at least 1"),
        "size": (lambda v: v >= 0, "at least 0"), "rate": (lambda v: v > 0, "greater than 0"),
        "rates": (lambda v: all(x > 0 for x in v), "numbers greater than 0"),
        "nonneg": (lambda v: v >= 0, "at least 0"), "nonnegs": (lambda v: all(x >= 0 for x in v), "numbers of at least 0"),
        "fraction": (lambda v: 0 <= v < 1, "in [0, 1)"), "unit": (lambda v: 0 <= v <= 1, "in [0, 1]"),
        "open_unit": (lambda v: 0 < v < 1, "in (0, 1)"), "unit_open": (lambda v: 0 < v <= 1, "in (0, 1]"), "nonempty": (lambda v: bool(v.strip()), "a non-empty string"),
        "shape2": (lambda v: len(v) == 2 and min(v) >= 1, "HxW with positive sizes, e.g. 224x224"),
        "component": (is_path_component, "one folder name: no '/', not '.' or '..', not empty"),
        "dataset": (lambda v: bool(v) and not v.startswith(("/", "~")) and ".." not in v.split("/") and "\0" not in v,
                    "a dataset name such as cifar10 (TFDS names may have a /config part)"),
    }
    test, wanted = checks[kind]
    if not test(value):
        raise UsageError(f"{key} must be {wanted}, got {value!r}")
    if key in LIMITS and value > LIMITS[key]:
        raise UsageError(f"{key} must be at most {LIMITS[key]:,}, got {value:,}")


def is_path_component(name):
    """One folder name, so a run, trial or sweep cannot reach outside its output folder."""
    return (isinstance(name, str) and name.strip() == name and name not in ("", ".", "..")
            and "/" not in name and "\\" not in name and "\0" not in name and not name.startswith("~"))


# ------------------------------------------------------------------- comparing configs

# Fields that do not change what a run computes, so a run resumes across them.
NOT_IDENTITY = {"run.overwrite", "run.output_dir"}


def config_differences(old, new):
    """Dotted keys whose values differ between a stored config dict (any schema) and a TrainConfig.

    The stored one is read through TrainConfig first, so fields added since it was written
    compare at their defaults.
    """
    old = TrainConfig.from_dict(old).to_dict()
    return [k for k in _differences(old, new.to_dict(), "") if k not in NOT_IDENTITY]


def _differences(old, new, prefix):
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            out.append(f"{prefix}{k}")
    return out


SIZE_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_size(text):
    """'4GB', '512MB', '1.5GiB', '1000000' -> bytes; a clear error otherwise."""
    raw = str(text).strip().upper().replace(" ", "")
    number = raw.rstrip("KMGTIB")
    try:
        value = float(number) * SIZE_UNITS[raw[len(number):]]
    except (ValueError, KeyError):
        raise UsageError(f"data.memory_budget {text!r} is not a size; write e.g. 4GB, 512MB or 1.5GiB") from None
    if not value > 0:
        raise UsageError(f"data.memory_budget must be positive, got {text!r}")
    return int(value)
