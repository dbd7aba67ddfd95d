"""KerasTuner over keras_cnn.train: every trial is a real training run with its own run dir.

    from tuning import run_search, load_space
    rows = run_search(base_config, load_space("my_space.py", None), "searches/mine", max_trials=10)

`run_search` is what tune.py calls; trials.csv (one row per trial) is the source of truth.
"""

import logging
import os
import shutil
from typing import Any

import keras_tuner

from keras_cnn.config import TrainConfig, apply_overrides, is_path_component, validate
from keras_cnn.data import check_fits
from keras_cnn.errors import UsageError
from keras_cnn.run_dir import RunDir
from keras_cnn.tracking.parent import ParentTracker
from tuning import hparams
from tuning.runner import claim_folder, run_trial
from tuning.spaces import Space
from tuning.trials import columns_for, plot_search, read_trials

log = logging.getLogger("keras_cnn")

TUNERS = ("random", "bayesian", "hyperband", "grid")
# What a diverged trial reports: the worst possible accuracy, finite so every oracle copes.
WORST_SCORE = 0.0


class SearchFailed(Exception):
    """Every trial of a search failed; the message is the first failure's."""


class KerasCnnTuner(keras_tuner.Tuner):
    """Runs keras_cnn.train per trial and keeps trials.csv current; the oracle picks the values."""

    def __init__(self, oracle, base_config, space, search_dir, tracker=None, **kwargs):
        super().__init__(oracle=oracle, hypermodel=None, directory=search_dir, project_name="keras_tuner", **kwargs)
        self.base_config, self.space, self.search_dir = base_config, space, search_dir
        self.tracker = tracker or ParentTracker(search_dir, "search", base_config)
        self.trials_path = os.path.join(search_dir, "trials.csv")
        self.columns = columns_for(space.paths())

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        values = self.space.define(hp)
        existing = {r["trial_id"]: r for r in read_trials(self.trials_path)}.get(trial.trial_id)
        if existing and existing["status"] in ("finished", "diverged"):
            # KerasTuner may hand out a trial again after a crash; never train it twice.
            return {"val_accuracy": float(existing["best_val_accuracy"] or WORST_SCORE)}
        cfg = self.trial_config(trial.trial_id, values, hp)
        row = {
            "trial_id": trial.trial_id,
            **values,
            "seed": cfg.run.seed,
            "run_dir": os.path.join(cfg.run.output_dir, cfg.run.name),
            "tuner_id": self.tuner_id,
        }
        try:
            row = run_trial(cfg, self.trials_path, row, self.columns)
        except UsageError as err:
            hparams.write_session(RunDir(row["run_dir"]).tensorboard_dir, row["trial_id"], values, "failed", {})
            self.tracker.failed_trial(row, str(err))
            raise keras_tuner.errors.FailedTrialError(str(err)) from None
        hparams.write_session(RunDir(row["run_dir"]).tensorboard_dir, row["trial_id"], values, row["status"], row)
        score = row["best_val_accuracy"]
        return {"val_accuracy": WORST_SCORE if row["status"] == "diverged" or score is None else float(score)}

    def trial_config(self, trial_id, values, hp):
        assignments = [f"{p}={v}" for p, v in values.items()]
        if "tuner/epochs" in hp.values:  # Hyperband decides each trial's budget
            assignments.append(f"run.epochs={hp.values['tuner/epochs']}")
        assignments += [
            f"run.output_dir={os.path.join(self.search_dir, 'runs')}",
            f"run.name=trial_{trial_id}",
            "run.export=false",
            # Same values as an interrupted attempt: train() resumes it. Other values (KerasTuner
            # rebuilt its state and re-drew this trial): the stale attempt is replaced.
            "run.overwrite=true",
        ]
        return self.tracker.child_config(apply_overrides(self.base_config, assignments))

    # KerasTuner would otherwise save Keras models per trial: the run dirs already hold them.
    def save_model(self, trial_id, model, step=0):
        pass

    def load_model(self, trial):
        raise NotImplementedError("load a trial's model from its run directory (model.keras)")


def make_oracle(kind, space, max_trials, seed, max_epochs):
    objective = keras_tuner.Objective("val_accuracy", direction="max")
    # The whole space is declared up front: KerasTuner otherwise learns it from the first
    # trial's report, and a second worker asking before that gets an empty space and is
    # told to stop (seen here: one of two workers ran no trial). KerasTuner reads seed 0 as
    # "pick one at random", so the oracle gets seed + 1: --seed 0 is as reproducible as any.
    common = {
        "objective": objective,
        "seed": seed + 1,
        "hyperparameters": space.declared(),
        "allow_new_entries": space.conditional,
        "tune_new_entries": True,
    }
    if kind == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if kind == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(max_trials=max_trials, **common)
    if kind == "grid":
        ranges = [p for p, spec in (space.table or {}).items() if "values" not in spec]
        if ranges:
            raise UsageError(f"grid search needs a list of values for every hyperparameter; {ranges[0]} is a range")
        return keras_tuner.oracles.GridSearchOracle(max_trials=max_trials, **common)
    # Hyperband sets each trial's epochs itself (successive halving up to max_epochs),
    # so the base config's epochs are its maximum; trials train from scratch, not warm-started.
    return keras_tuner.oracles.HyperbandOracle(max_epochs=max_epochs, **common)


def check_first_trial(base: TrainConfig, space: Space) -> None:
    """The config of a trial with every hyperparameter at its default, validated before the search
    folder exists: a bad base or --set ends in one line here, not in every trial's failure. Then
    every data setting the space can draw is checked against the data itself (a batch larger than
    the training set, a crop larger than the images), which only reading the data can tell."""
    hp = keras_tuner.HyperParameters()
    first = space.define(hp)
    validate(apply_overrides(base, [f"{path}={value}" for path, value in first.items()]))
    sources: dict = {}
    for data in data_settings(base, space, hp):
        check_fits(data, sources)


def data_settings(base: TrainConfig, space: Space, hp) -> list:
    """The distinct DataConfigs of the trials: the first trial's, and each data.* hyperparameter at each
    of its choices (or both ends of its range) with the others at their defaults."""
    candidates = [dict(hp.values)]
    for parameter in hp.space:
        if not parameter.name.startswith("data."):
            continue
        values = getattr(parameter, "values", None) or [parameter.min_value, parameter.max_value]
        candidates += [{**hp.values, parameter.name: value} for value in values]
    settings = []
    for values in candidates:
        drawn = keras_tuner.HyperParameters()
        space.define(drawn)  # registers them; then the drawn values replace the defaults
        drawn.values.update(values)
        assignments = [f"{path}={value}" for path, value in space.define(drawn).items()]
        data = validate(apply_overrides(base, assignments)).data
        if data not in settings:
            settings.append(data)
    return settings


def run_search(
    base: TrainConfig,
    space: Space,
    search_dir: str,
    *,
    tuner: str = "random",
    max_trials: int = 20,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Search `space` around the TrainConfig `base` (its run.epochs per trial, its run.seed for the
    oracle and every trial) in `search_dir`; returns the trials.csv rows. Rerunning resumes.

    Raises SearchFailed when every trial failed, with the first failure's message.
    """
    if tuner not in TUNERS:
        raise UsageError(f"unknown tuner {tuner!r}; choose one of: {', '.join(TUNERS)}")
    if not space.sets("model.name") and not base.model.name:
        raise UsageError("no model: pass --model, or set model.name in the space")
    check_first_trial(base, space)
    untracked = base.replace(run={"track": "none", "tracking_uri": None, "experiment": None, "register": None})
    record = {"base": untracked.to_dict(), "space": space.record, "tuner": tuner, "max_trials": max_trials}
    _claim_search_dir(search_dir, record, overwrite)  # where a search is tracked is not what it is
    hparams.write_experiment(search_dir, space.declared(), ["best_val_accuracy", "best_val_loss"])
    tracker = ParentTracker(search_dir, "search", base)
    tracker.start()

    def make_tuner():
        oracle = make_oracle(tuner, space, max_trials, base.run.seed, base.run.epochs)
        return KerasCnnTuner(oracle, base, space, search_dir, tracker=tracker, overwrite=False)

    try:
        search = make_tuner()
    except (ValueError, KeyError, RuntimeError) as err:
        # KerasTuner writes its oracle and trial JSON in place; a kill mid-write leaves it
        # unreadable. trials.csv is the source of truth: rebuild the oracle from scratch with
        # the same seed, and finished trials are answered from trials.csv, not retrained.
        log.warning("KerasTuner state in %s is damaged (%s); rebuilding it from trials.csv", search_dir, err)
        shutil.rmtree(os.path.join(search_dir, "keras_tuner"), ignore_errors=True)
        search = make_tuner()
    try:
        search.search(verbose=0)
    except RuntimeError as err:  # KerasTuner gives up after 3 consecutive failed trials
        if "consecutive" not in str(err):
            raise
    except KeyboardInterrupt:
        tracker.end("interrupted")
        raise
    rows = read_trials(os.path.join(search_dir, "trials.csv"))
    plot_search(rows, space.declared(), os.path.join(search_dir, "search.png"))
    failed = bool(rows) and all(r["status"] == "failed" for r in rows)
    tracker.end("failed" if failed else "finished")
    if failed:
        raise SearchFailed(f"every trial failed; the first: {rows[0].get('error') or 'see trials.csv'}")
    return rows


def _claim_search_dir(search_dir, record, overwrite):
    """A search dir belongs to one search: resuming it with other settings would mix results."""
    if not is_path_component(os.path.basename(os.path.normpath(search_dir))):
        raise UsageError(f"search folder {search_dir!r} must end in one folder name")
    claim_folder(
        search_dir,
        "search.json",
        record,
        overwrite,
        f"{search_dir} holds a search with other settings; choose another --name or pass --overwrite",
    )


def best_trial(rows):
    finished = [r for r in rows if r["status"] == "finished" and r.get("best_val_accuracy")]
    return max(finished, key=lambda r: float(r["best_val_accuracy"])) if finished else None


def summary_lines(rows, search_dir, base_args):
    """What tune.py prints: counts, the best trial, and the train.py command that reproduces it."""
    counts = {s: sum(r["status"] == s for r in rows) for s in ("finished", "diverged", "failed", "running")}
    lines = [
        f"{len(rows)} trials in {os.path.join(search_dir, 'trials.csv')}: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    ]
    best = best_trial(rows)
    if best:
        sets = " ".join(f"--set {p}={best[p]}" for p in best if "." in p and best[p] not in ("", None))
        lines.append(f"best: trial {best['trial_id']}, validation accuracy {float(best['best_val_accuracy']):.4f}")
        lines.append(f"reproduce it: python scripts/train.py {base_args} {sets}".replace("  ", " "))
    return lines
