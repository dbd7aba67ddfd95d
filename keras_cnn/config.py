"""TrainConfig: one frozen dataclass tree describing a run, saved as config.json.

    cfg = TrainConfig()                               # defaults
    cfg = preset("mnist-mlp")                         # a named recipe
    cfg = apply_overrides(cfg, ["optimizer.learning_rate=0.01", "model.hidden=100,100"])

Overrides are strict: an unknown key or a value of the wrong type is a UsageError. The model section
is a name plus that model's options (models.model_options); the optimizer and schedule sections and
their tables live in keras_cnn.optimizers. Schema 2 (this version) nests model options under
`model.options`; schema-1 records (flat model fields) are upgraded when read (`upgrade_config`).
"""

import dataclasses
import json
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from keras_cnn import rules
from keras_cnn.errors import UsageError
from keras_cnn.models import Option, all_options, check_options
from keras_cnn.models.applications import is_application
from keras_cnn.optimizers import OPTIMIZERS, SCHEDULES, OptimizerConfig, ScheduleConfig
from keras_cnn.rules import is_path_component, parse_size

SCHEMA_VERSION = 2

__all__ = [
    "DataConfig",
    "EMAConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_differences",
    "is_path_component",
    "parse_size",
    "upgrade_config",
    "validate",
]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"
    data_dir: str | None = None  # an image folder, a labels .csv, an .npz, prepared TFRecords or a TFDS dir
    multi_label: bool = False  # a labels CSV's a;b labels: sigmoid outputs, binary cross-entropy, mAP
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
    """A registered model's name and the options given for it; the rest take the model's defaults
    (`python scripts/params.py --list`)."""

    name: str = "resnet20"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Sorted, lists as tuples: two configs with the same options compare and serialize alike.
        normal = {str(k): rules.from_json(v) for k, v in sorted(dict(self.options).items())}
        object.__setattr__(self, "options", normal)

    def get(self, option: str) -> Any:
        """The option as given, or None where the model's default applies."""
        return self.options.get(option)


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
    weights: str | None = None  # keras_* backbones: imagenet | none | a .weights.h5, .keras or run folder
    train_bn: bool = False  # with pretrained weights: the backbone's BatchNorm trains instead of staying frozen
    freeze_epochs: int = 0  # fine-tuning: the first N epochs train the classifier only (training.finetune)
    unfreeze: str = "all"  # then: all backbone layers train, or the top K holding weights ("K")
    backbone_lr_multiplier: float = 1.0  # the backbone's learning rate, as a multiple of the classifier's
    smoke: bool = False  # seconds of the same work (presets.smoke); CLIs set it under KERAS_CNN_SMOKE=1
    track: str = "none"  # none | mlflow: log the run to an experiment tracker (keras_cnn.tracking)
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite <output_dir>/mlflow.db
    experiment: str | None = None  # the MLflow experiment; None: keras_cnn-<dataset>
    register: str | None = None  # register the exported model under this name in the model registry


Section = DataConfig | ModelConfig | OptimizerConfig | ScheduleConfig | EMAConfig | RunConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    ema: EMAConfig = EMAConfig()
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "TrainConfig":
        """Read a config dict (schema 1 or 2); unknown sections or keys are a UsageError."""
        if not isinstance(d, dict):
            raise UsageError(f"a config must be a mapping of sections, got {type(d).__name__}")
        d = upgrade_config(d)
        unknown_sections = set(d) - set(_sections())
        if unknown_sections:
            raise UsageError(f"unknown config section(s) {', '.join(sorted(map(str, unknown_sections)))}")
        sections = {}
        for name, section_cls in _section_types().items():
            values = d.get(name, {})
            if not isinstance(values, dict):
                raise UsageError(f"config section {name!r} must be a mapping, got {type(values).__name__}")
            hints = typing.get_type_hints(section_cls)
            unknown = set(values) - set(hints)
            if unknown:
                raise UsageError(f"unknown config key(s) {', '.join(sorted(f'{name}.{k}' for k in unknown))}")
            if name == "model" and not isinstance(values.get("options", {}), dict):
                raise UsageError("config key model.options must be a mapping of option names to values")
            sections[name] = section_cls(**{k: rules.from_json(v) for k, v in values.items()})
        return cls(**sections)

    def replace(self, **sections: Mapping[str, Any]) -> "TrainConfig":
        """Replace fields inside sections: cfg.replace(run={"epochs": 3})."""
        new = {name: dataclasses.replace(getattr(self, name), **fields) for name, fields in sections.items()}
        return dataclasses.replace(self, **new)


def _section_types() -> dict[str, type]:
    return dict(typing.get_type_hints(TrainConfig))


def _sections() -> list[str]:
    return list(_section_types())


# The model fields of schema 1, each None for "the model's default".
V1_MODEL_FIELDS = (
    "hidden",
    "activation",
    "kernel_initializer",
    "dropout",
    "batch_norm",
    "shortcut",
    "filters",
    "kernel_size",
    "pool_every",
    "dense",
    "width",
    "init_scale",
    "bias_init",
    "decay_scope",
    "lrn",
    "lrn_depth_radius",
    "lrn_bias",
    "lrn_alpha",
    "lrn_beta",
)


def upgrade_config(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict in the current schema: schema 1's flat model fields move under model.options."""
    model = d.get("model")
    if not isinstance(model, dict) or not set(model) & set(V1_MODEL_FIELDS):
        return d
    if "options" in model:
        raise UsageError("config section model mixes schema 1 fields with model.options")
    flat = {k: v for k, v in model.items() if k in V1_MODEL_FIELDS}
    rest = {k: v for k, v in model.items() if k not in V1_MODEL_FIELDS}
    return {**d, "model": {**rest, "options": {k: v for k, v in flat.items() if v is not None}}}


def apply_overrides(cfg: TrainConfig, assignments: Iterable[str]) -> TrainConfig:
    """Apply `section.field=value` strings strictly (unknown keys and bad types are errors).

    `model.X` is option X of the model (any registered model's option; `validate` then checks the
    chosen model takes it); `model.X=none` returns it to the model's default.
    """
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot:
            raise UsageError(f"--set {assignment!r} is not section.field=value, e.g. optimizer.learning_rate=0.01")
        if section not in _sections():
            raise UsageError(f"--set {key}: unknown section {section!r}; sections are: {', '.join(_sections())}")
        if section == "model" and field != "name":
            cfg = _set_model_option(cfg, key, field, text.strip())
            continue
        hints = typing.get_type_hints(type(getattr(cfg, section)))
        if field not in hints or (section == "model" and field == "options"):
            fields = [f for f in hints if f != "options"]
            raise UsageError(f"--set {key}: unknown field; {section} has: {', '.join(fields)}")
        value = rules.normalize(RULES.get(key), rules.parse(hints[field], text.strip(), key))
        cfg = cfg.replace(**{section: {field: value}})
    return cfg


def _set_model_option(cfg: TrainConfig, key: str, field: str, text: str) -> TrainConfig:
    option = model_option(field, key)
    options = dict(cfg.model.options)
    value = rules.parse(option.type | None, text, key)
    if value is None:
        options.pop(field, None)
    else:
        options[field] = value
    return cfg.replace(model={"options": options})


def model_option(field: str, key: str) -> Option:
    """The registry's option `field`, for a `model.<field>` key; a UsageError naming what exists."""
    known = all_options()
    option = known.get(field)
    if option is None:
        raise UsageError(
            f"--set {key}: unknown field; model has: name, and the options of its model: "
            f"{', '.join(k for k, o in known.items() if not o.spec.fed_by)} (see params.py --list)"
        )
    if option.spec.fed_by:
        raise UsageError(f"--set {key}: the model takes this from {option.spec.fed_by}; set that instead")
    return option


# --------------------------------------------------------------------------- validation

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
NORMALIZATIONS = ("none", "center", "standardize", "pca_whiten", "per_image", "backbone")
CACHE_MODES = ("auto", "memory", "disk", "none")
AUGMENTATIONS = ("standard", "random_resized_crop", "tf_tutorial")
ON_CORRUPT = ("skip", "error")
TRACKERS = ("none", "mlflow")

# One rule per field (kinds in keras_cnn.rules); every field not listed still gets its type checked
# and, for numbers, finiteness. The optimizer and schedule fields carry their rules beside them
# (keras_cnn.optimizers), model options beside their builders (models.model_options).
RULES: dict[str, rules.Rule] = {
    "data.batch_size": "count",
    "data.val_size": "size?",
    "data.crop_padding": "size",
    "data.cutout": "size",
    "data.train_limit": "count?",
    "data.val_limit": "count?",
    "data.image_size": "shape2?",
    "data.folds": "count?",
    "data.fold": "size?",
    "data.cache": CACHE_MODES,
    "data.augmentation": AUGMENTATIONS,
    "data.crop_scale": "rates",
    "data.crop_ratio": "rates",
    "data.eval_crop": "unit_open",
    "data.crop_size": "count?",
    "data.memory_budget": "nonempty?",
    "data.service": "nonempty?",
    "data.normalization": NORMALIZATIONS,
    "data.on_corrupt": ON_CORRUPT,
    "data.dataset": "dataset",
    "model.name": "nonempty",
    "optimizer.name": tuple(OPTIMIZERS),
    "schedule.name": tuple(SCHEDULES),
    "ema.decay": "open_unit",
    "run.epochs": "count",
    "run.output_dir": "nonempty",
    "run.name": "component?",
    "run.strategy": STRATEGIES,
    "run.precision": PRECISIONS,
    "run.steps_per_call": "count",
    "run.steps_per_epoch": "count?",
    "run.checkpoint_every_steps": "count?",
    "run.keep_checkpoints": "count",
    "run.init_from": "nonempty?",
    "run.weights": "nonempty?",
    "run.freeze_epochs": "size",
    "run.unfreeze": "nonempty",
    "run.backbone_lr_multiplier": "rate",
    "run.track": TRACKERS,
    "run.tracking_uri": "nonempty?",
    "run.experiment": "nonempty?",
    "run.register": "nonempty?",
}
# Hard ceilings, so no value can make a run loop or write without bound.
LIMITS = {
    "run.epochs": 100_000,
    "data.batch_size": 1 << 20,
    "run.steps_per_call": 100_000,
    "run.keep_checkpoints": 1000,
}


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every field of cfg by rule; the first violation is a UsageError naming the field."""
    for name in _sections():
        if name != "model":
            for field in dataclasses.fields(getattr(cfg, name)):
                validate_field(cfg, f"{name}.{field.name}")
    validate_field(cfg, "model.name")
    for option in cfg.model.options:
        validate_field(cfg, f"model.{option}")  # an option's own rule, and not one fed by another section
    check_options(cfg.model.name, cfg.model.options)
    _check_combinations(cfg)
    return _backbone_normalization(cfg)


def pretrained_backbone(cfg: TrainConfig) -> bool:
    """A keras_* model that starts from --weights (not random ones)."""
    return is_application(cfg.model.name) and cfg.run.weights not in (None, "none")


def _backbone_normalization(cfg: TrainConfig) -> TrainConfig:
    """keras_* backbones scale raw pixels themselves (models.applications): their data normalization
    is `backbone` (pixels as they are), which the default `standardize` becomes; other models need
    inputs of unit scale, which `backbone` would not give them."""
    backbone, mode = is_application(cfg.model.name), cfg.data.normalization
    if backbone and mode == "standardize":
        return cfg.replace(data={"normalization": "backbone"})
    if backbone != (mode == "backbone"):
        raise UsageError(
            f"data.normalization={mode} does not fit model {cfg.model.name}: keras_* backbones take "
            "data.normalization=backbone (their own input scaling, the default for them), other models any other mode"
        )
    return cfg


def validate_field(cfg: TrainConfig, key: str) -> None:
    """Check one field (`section.field`, or `model.<option>` by its spec) on its own."""
    section_name, _, name = key.partition(".")
    section = getattr(cfg, section_name)
    if section_name == "model" and name != "name":
        model_option(name, key).check(cfg.model.get(name), key)
        return
    field = next(f for f in dataclasses.fields(section) if f.name == name)
    rule = field.metadata.get("rule", RULES.get(key))
    rules.check(key, typing.get_type_hints(type(section))[name], rule, getattr(section, name), LIMITS.get(key))


def _check_combinations(cfg: TrainConfig) -> None:
    data = cfg.data
    if (data.folds is None) != (data.fold is None) or (
        data.folds and data.fold is not None and data.fold >= data.folds
    ):
        raise UsageError("data.folds and data.fold go together, with 0 <= data.fold < data.folds")
    if cfg.schedule.name == "piecewise" and len(cfg.schedule.boundaries) != len(cfg.schedule.multipliers):
        raise UsageError("piecewise schedule needs as many schedule.multipliers as schedule.boundaries")
    if data.memory_budget is not None:
        parse_size(data.memory_budget)
    if len(data.crop_scale) != 2 or not data.crop_scale[0] <= data.crop_scale[1] <= 1:
        raise UsageError(
            f"data.crop_scale must be two area fractions min,max with min <= max <= 1, got {list(data.crop_scale)}"
        )
    if len(data.crop_ratio) != 2 or not data.crop_ratio[0] <= data.crop_ratio[1]:
        raise UsageError(
            f"data.crop_ratio must be two aspect ratios min,max with min <= max, got {list(data.crop_ratio)}"
        )
    if data.augmentation == "tf_tutorial" and not data.crop_size:
        raise UsageError("data.augmentation=tf_tutorial needs data.crop_size (the tutorial crops 24x24)")
    if cfg.run.train_bn and not pretrained_backbone(cfg):
        raise UsageError(
            "--train-bn is for keras_* backbones with --weights (from random weights BatchNorm trains anyway)"
        )
    if cfg.run.weights not in (None, "none") and not is_application(cfg.model.name):
        raise UsageError(
            f"--weights is for keras_* backbones, not {cfg.model.name}; warm-start keras_cnn's own models with --init-from RUN"
        )
    _check_fine_tuning(cfg)
    if cfg.data.multi_label and cfg.optimizer.loss not in ("categorical_crossentropy", "binary_crossentropy"):
        raise UsageError(
            f"--multi-label trains one sigmoid per class with binary cross-entropy, not optimizer.loss={cfg.optimizer.loss}; "
            "leave optimizer.loss unset"
        )
    if cfg.run.register and (cfg.run.track != "mlflow" or not cfg.run.export):
        raise UsageError("--register needs --track mlflow and the run's export (run.export=true)")
    if list(cfg.schedule.boundaries) != sorted(cfg.schedule.boundaries):
        raise UsageError(f"schedule.boundaries must be in increasing order, got {list(cfg.schedule.boundaries)}")


def _check_fine_tuning(cfg: TrainConfig) -> None:
    run = cfg.run
    unfreeze = run.unfreeze.strip()
    if unfreeze != "all" and not (unfreeze.isdigit() and int(unfreeze) >= 1):
        raise UsageError(f"--unfreeze takes all or a number of layers K >= 1, got {run.unfreeze!r}")
    phased = run.freeze_epochs or unfreeze != "all" or run.backbone_lr_multiplier != 1.0
    if phased and not (pretrained_backbone(cfg) or run.init_from):
        raise UsageError(
            "--freeze-epochs, --unfreeze and --backbone-lr-multiplier fine-tune trained weights: pass --weights "
            "(keras_* models) or --init-from RUN; a random backbone has nothing worth keeping"
        )


# ------------------------------------------------------------------- comparing configs

# Fields that do not change what a run computes, so a run resumes across them.
NOT_IDENTITY = {
    "run.overwrite",
    "run.output_dir",
    # Where a run is tracked is not what it computes: a run resumes (and is synced) across them.
    "run.track",
    "run.tracking_uri",
    "run.experiment",
    "run.register",
}


def config_differences(old: dict[str, Any], new: TrainConfig) -> list[str]:
    """Dotted keys whose values differ between a stored config dict (any schema) and a TrainConfig.

    The stored one is read through TrainConfig first, so fields added since it was written
    compare at their defaults.
    """
    old = TrainConfig.from_dict(old).to_dict()
    return [k for k in _differences(old, new.to_dict(), "") if k not in NOT_IDENTITY]


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str) -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            # model options read as the keys users write: model.hidden, not model.options.hidden
            out += _differences(a, b, prefix if k == "options" else f"{prefix}{k}.")
        elif (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            out.append(f"{prefix}{k}")
    return out
