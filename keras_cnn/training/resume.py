"""What to do with what is already at a run's path: the one owner of resume, extend, replace and
warm start.

    mode = decide(run_dir, cfg)                           # before any data is loaded
    start, mode = starting_point(run_dir, built, cfg, mode)  # after the model is built
    prepare(run_dir, cfg, mode, record)                   # only then is anything written

Decided by types: RunDamaged (the folder's files are unusable) and ConfigMismatch (another
config) are replaced under --overwrite and raised otherwise.
"""

import dataclasses
import enum
import os
from typing import Any

from keras_cnn.config import TrainConfig, config_differences
from keras_cnn.errors import ConfigMismatch, RunDamaged, UsageError
from keras_cnn.optimizers import SCHEDULES
from keras_cnn.run_dir import RunDir
from keras_cnn.training.build import Built
from keras_cnn.training.finetune import classifier_layer
from keras_cnn.training.weights import load_backbone_weights


class Mode(enum.Enum):
    NEW = "new"  # nothing there (or an empty folder)
    RESUME = "resume"  # the same config: on from its last checkpoint
    EXTEND = "extend"  # only run.epochs grew, under a schedule that does not depend on the run's length
    REPLACE = "replace"  # --overwrite: whatever is there goes


@dataclasses.dataclass
class Start:
    """Where training starts: the checkpoint's position and the epochs already recorded."""

    epoch: int = 0
    batch: int = 0
    totals: Any = None  # the partial epoch's running sums (mid-epoch checkpoints)
    stopped: bool = False  # the run ended early (EarlyStopping) and is not to go on
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    weights: dict[str, Any] | None = None  # where --weights came from (a new run only), for its record


def decide(run_dir: RunDir, cfg: TrainConfig) -> Mode:
    """NEW, RESUME, EXTEND or REPLACE for what is at the run's path; a UsageError where neither
    going on nor starting over is what the user asked for."""
    try:
        return _compare(run_dir, cfg)
    except (RunDamaged, ConfigMismatch):
        if cfg.run.overwrite:
            return Mode.REPLACE
        raise


def _compare(run_dir: RunDir, cfg: TrainConfig) -> Mode:
    path = run_dir.path
    if not os.path.lexists(path) or (os.path.isdir(path) and not os.listdir(path)):
        return Mode.NEW
    if not os.path.isdir(path) or os.path.islink(path) or not os.path.lexists(run_dir.config_path):
        raise RunDamaged(f"{path} exists but is not a run directory; choose another --name or pass --overwrite")
    old = run_dir.read_config().to_dict()
    damaged = run_dir.damaged_parts()
    if damaged:
        raise RunDamaged(
            f"{path} is damaged: {', '.join(damaged)} has the wrong kind (a file where a folder "
            "belongs, or the reverse); rerun with --overwrite to start the run over"
        )
    differs = config_differences(old, cfg)
    if not differs:
        return Mode.RESUME
    if cfg.run.overwrite:
        return Mode.REPLACE
    old_epochs = old["run"]["epochs"]
    if differs == ["run.epochs"] and isinstance(old_epochs, int) and cfg.run.epochs > old_epochs:
        if SCHEDULES[cfg.schedule.name].extendable:
            return Mode.EXTEND
        raise UsageError(
            f"run {path} has a {cfg.schedule.name} schedule over {old_epochs} epochs, which ends at "
            f"its lowest rate; extending it would restart the decay. Train on from it with "
            f"--init-from {path} --name NEW_NAME"
        )
    raise ConfigMismatch(
        f"run {path} exists with a different config ({', '.join(differs[:4])}); "
        "choose another --name, or pass --overwrite to replace it"
    )


def starting_point(run_dir: RunDir, built: Built, cfg: TrainConfig, mode: Mode) -> tuple[Start, Mode]:
    """The checkpoint state to start from, and the mode (a damaged run under --overwrite is replaced)."""
    if mode in (Mode.RESUME, Mode.EXTEND):
        try:
            state = run_dir.restore_latest(built.checkpoint_groups())
        except RunDamaged:
            if not cfg.run.overwrite:
                raise
            state, mode = None, Mode.REPLACE
        if state is not None:
            start = Start(**{k: v for k, v in state.items() if k in Start.__dataclass_fields__})
            start.history = resumed_history(run_dir, state)
            start.stopped = start.stopped and mode != Mode.EXTEND
            return start, mode
    start = Start()
    if cfg.run.weights not in (None, "none"):
        start.weights = load_backbone_weights(built.model, cfg.run.weights)
        sync_ema(built)
    if cfg.run.init_from:
        warm_start(built, cfg.run.init_from)
    return start, mode


def resumed_history(run_dir: RunDir, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The epochs before the checkpoint: its own record, or (older checkpoints) history.csv if it agrees."""
    if state.get("history") is not None:
        return [dict(r) for r in state["history"]]
    rows = [r for r in run_dir.read_history() if isinstance(r.get("epoch"), int) and r["epoch"] <= state["epoch"]]
    if [r["epoch"] for r in rows] != list(range(1, state["epoch"] + 1)):
        raise RunDamaged(
            f"{run_dir.history_path} does not match the checkpoint at epoch {state['epoch']} "
            "(edited or lost); rerun with --overwrite to start the run over"
        )
    return rows


def warm_start(built: Built, source: str) -> None:
    """Fine-tuning: start from another run's final weights (model.keras) or a checkpoint's. A run
    with another class count (or dataset) gives every weight but its classifier, which starts new."""
    if os.path.isdir(source):
        copy_all_but_a_new_classifier(RunDir(source).load_model(), built.model, source)
    elif os.path.isfile(source):
        RunDir(os.path.dirname(source)).load_weights(built.model, checkpoint=source)
    else:
        raise UsageError(f"--init-from {source} does not exist; give a run directory or a checkpoint .npz")
    sync_ema(built)


def copy_all_but_a_new_classifier(donor: Any, model: Any, source: str) -> None:
    """Every weight of `donor` into `model`; the classifier's too where the class counts agree."""
    theirs, mine = list(donor.weights), list(model.weights)
    if _shapes(theirs) != _shapes(mine):
        theirs, mine = _without_classifier(donor), _without_classifier(model)
        if _shapes(theirs) != _shapes(mine):
            raise UsageError(
                f"--init-from {source} is a {donor.name} of other layer shapes (another architecture, options "
                f"or input size) than this {model.name}; its weights do not fit this model"
            )
    for target, value in zip(mine, theirs, strict=True):
        target.assign(value.numpy())


def _shapes(weights: list[Any]) -> list[tuple[int, ...]]:
    return [tuple(w.shape) for w in weights]


def _without_classifier(model: Any) -> list[Any]:
    classifier = {id(w) for w in classifier_layer(model).weights}
    return [w for w in model.weights if id(w) not in classifier]


def sync_ema(built: Built) -> None:
    """The average starts from the warm-started weights, not the random ones."""
    if built.ema is not None:
        for shadow, variable in zip(built.ema.shadows, built.ema.sources, strict=True):
            shadow.assign(variable.value)


def prepare(run_dir: RunDir, cfg: TrainConfig, mode: Mode, record: dict[str, Any]) -> None:
    """The run folder for `mode`: a replaced run goes first; an extended run records its new config."""
    if mode == Mode.REPLACE:
        run_dir.discard()
    run_dir.create(record)
    if mode == Mode.EXTEND:
        run_dir.write_record({**run_dir.read_record(), "config": cfg.to_dict()})
