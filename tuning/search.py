"""KerasTuner over keras_cnn.train: every trial is a real training run with its own run dir."""
import os

import keras_tuner

from keras_cnn.config import apply_overrides
from keras_cnn.errors import UsageError
from tuning import spaces
from tuning.runner import run_trial
from tuning.trials import columns_for, plot_search, read_trials

TUNERS = ("random", "bayesian", "hyperband", "grid")
# What a diverged trial reports: the worst possible accuracy, finite so every oracle copes.
WORST_SCORE = 0.0


class KerasCnnTuner(keras_tuner.Tuner):
    """Runs keras_cnn.train per trial and keeps trials.csv current; the oracle picks the values."""

    def __init__(self, oracle, base_config, space, search_dir, **kwargs):
        super().__init__(oracle=oracle, hypermodel=None, directory=search_dir, project_name="keras_tuner", **kwargs)
        self.base_config, self.space, self.search_dir = base_config, space, search_dir
        self.trials_path = os.path.join(search_dir, "trials.csv")
        self.columns = columns_for([spaces.column(p) for p in space])

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        values = spaces.define(hp, self.space)
        existing = {r["trial_id"]: r for r in read_trials(self.trials_path)}.get(trial.trial_id)
        if existing and existing["status"] in ("finished", "diverged"):
            # KerasTuner may hand out a trial again after a crash; never train it twice.
            return {"val_accuracy": float(existing["best_val_accuracy"] or WORST_SCORE)}
        cfg = self.trial_config(trial.trial_id, values, hp)
        row = {"trial_id": trial.trial_id, **{spaces.column(p): v for p, v in values.items()},
               "seed": cfg.run.seed, "run_dir": os.path.join(cfg.run.output_dir, cfg.run.name), "tuner_id": self.tuner_id}
        try:
            row = run_trial(cfg, self.trials_path, row, self.columns)
        except UsageError as err:
            raise keras_tuner.errors.FailedTrialError(str(err)) from None
        score = row["best_val_accuracy"]
        return {"val_accuracy": WORST_SCORE if row["status"] == "diverged" or score is None else float(score)}

    def trial_config(self, trial_id, values, hp):
        assignments = [f"{p}={v}" for p, v in values.items()]
        if "tuner/epochs" in hp.values:  # Hyperband decides each trial's budget
            assignments.append(f"run.epochs={hp.values['tuner/epochs']}")
        assignments += [
            f"run.output_dir={os.path.join(self.search_dir, 'runs')}", f"run.name=trial_{trial_id}",
            "run.export=false",
            # Same values as an interrupted attempt: train() resumes it. Other values (KerasTuner
            # rebuilt its state and re-drew this trial): the stale attempt is replaced.
            "run.overwrite=true",
        ]
        return apply_overrides(self.base_config, assignments)

    # KerasTuner would otherwise save Keras models per trial: the run dirs already hold them.
    def save_model(self, trial_id, model, step=0):
        pass

    def load_model(self, trial):
        raise NotImplementedError("load a trial's model from its run directory (model.keras)")


def make_oracle(kind, space, max_trials, seed, max_epochs):
    objective = keras_tuner.Objective("val_accuracy", direction="max")
    # The whole space is declared up front: KerasTuner otherwise learns it from the first
    # trial's report, and a second worker asking before that gets an empty space and is
    # told to stop (seen here: one of two workers ran no trial).
    hyperparameters = keras_tuner.HyperParameters()
    spaces.define(hyperparameters, space)
    common = {"objective": objective, "seed": seed, "hyperparameters": hyperparameters, "allow_new_entries": False}
    if kind == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if kind == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(max_trials=max_trials, **common)
    if kind == "grid":
        for path, spec in space.items():
            if "values" not in spec:
                raise UsageError(f"grid search needs a list of values for every hyperparameter; {path} is a range")
        return keras_tuner.oracles.GridSearchOracle(max_trials=max_trials, **common)
    # Hyperband sets each trial's epochs itself (successive halving up to max_epochs),
    # so --epochs-per-trial is its maximum; trials train from scratch, not warm-started.
    return keras_tuner.oracles.HyperbandOracle(max_epochs=max_epochs, **common)


def best_command(rows, space, base_args):
    finished = [r for r in rows if r["status"] == "finished" and r.get("best_val_accuracy")]
    if not finished:
        return None, None
    best = max(finished, key=lambda r: float(r["best_val_accuracy"]))
    sets = " ".join(f"--set {p}={best[spaces.column(p)]}" for p in space)
    return best, f"python scripts/train.py {base_args} {sets}".replace("  ", " ")


def report(search_dir, space, base_args):
    rows = read_trials(os.path.join(search_dir, "trials.csv"))
    plot_search(rows, space, os.path.join(search_dir, "search.png"))
    best, command = best_command(rows, space, base_args)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("finished", "diverged", "failed", "running")}
    print(f"{len(rows)} trials in {os.path.join(search_dir, 'trials.csv')}: "
          + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if best:
        print(f"best: trial {best['trial_id']}, validation accuracy {float(best['best_val_accuracy']):.4f}")
        print(f"reproduce it: {command}")
    return rows
