"""Controlled comparisons: each arm of a lab file trained over several seeds (or folds), mean and std.

    python scripts/sweep.py tuning/labs/mlp_vs_linear.toml --seeds 3 --data-dir ../shared/data/mnist
    python scripts/sweep.py tuning/labs/mlp_vs_linear.toml --folds 5 --data-dir ../shared/data/mnist

A lab file names a base config and arms that each change a few fields:

    name = "mlp-vs-linear"
    [base]
    "data.dataset" = "mnist"
    "run.epochs" = 5
    [arms.mlp]
    "model.name" = "mlp"
    [arms.linear]
    "model.name" = "linear"

Every (arm, seed[, fold]) is a keras_cnn.train run; trials.csv gets one row per run and sweep.csv
one row per arm: mean, std, min and max of the best validation accuracy, and with several seeds the
accuracy of the arm's ensemble (its seeds' probabilities averaged on the shared validation split).
--folds K cross-validates instead: K stratified folds of the training data, each the validation split
once. Reruns of the same sweep resume; a rerun with other settings is refused (--overwrite starts over).
TensorBoard's HParams view reads the sweep folder.
"""

import dataclasses
import os
import statistics
import tomllib

import numpy as np
from tensorboard.plugins.hparams import api as hp_api

from keras_cnn import smoke
from keras_cnn.cli.common import (
    ArgumentParser,
    add_image_size_arg,
    add_labels_args,
    add_tracking_args,
    at_least,
    cli_entry,
    description_of,
    folder_name,
    image_size_assignments,
    labels_assignments,
    tracking_assignments,
)
from keras_cnn.config import TrainConfig, apply_overrides, validate
from keras_cnn.data import check_fits, prepare_data
from keras_cnn.errors import UsageError
from keras_cnn.evaluation import ensemble_probabilities
from keras_cnn.io import atomic_write, csv_text
from keras_cnn.run_dir import RunDir
from keras_cnn.smoke import cap
from keras_cnn.tracking import check_installed
from keras_cnn.tracking.parent import ParentTracker
from tuning import hparams
from tuning.runner import claim_folder, run_trial
from tuning.trials import columns_for, read_trials


def load_lab(path):
    try:
        with open(path, "rb") as f:
            lab = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"lab file {path} does not exist; see tuning/labs/ for examples") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is not valid TOML ({err})") from None
    arms = lab.get("arms", {})
    if not isinstance(arms, dict) or len(arms) < 2:
        raise UsageError(f"{path} defines {len(arms)} arm(s); a comparison needs at least 2 under [arms.<name>]")
    name = folder_name(str(lab.get("name", os.path.splitext(os.path.basename(path))[0])), f"{path}: the lab's name")
    for arm in arms:
        folder_name(f"{arm}-seed0", f"{path}: arm")  # each (arm, seed) becomes a run folder
    return name, lab.get("base", {}), arms


def assignments(table):
    return [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in table.items()]


def build_parser():
    parser = ArgumentParser(prog="sweep.py", description=description_of(__doc__))
    parser.add_argument("lab", help="a lab TOML file")
    parser.add_argument("--seeds", type=int, default=3, help="repeats per arm (seeds 0..N-1)")
    parser.add_argument("--folds", type=int, help="k-fold cross-validation instead of one held-out split")
    parser.add_argument(
        "--data-dir", help="data for every arm (else the lab's data.data_dir, $KERAS_CNN_DATA_DIR or TFDS)"
    )
    add_labels_args(parser)
    add_image_size_arg(parser)
    parser.add_argument("--output-dir", default="searches")
    parser.add_argument("--overwrite", action="store_true", help="start the sweep over (another --set, say)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="applied to every arm"
    )
    add_tracking_args(parser, register=False)
    return parser


@cli_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    at_least(args.seeds, "--seeds")
    at_least(args.folds, "--folds", 2)
    name, base, arms = load_lab(args.lab)
    sweep_dir = os.path.join(args.output_dir, name)
    labels = labels_assignments(args)
    extra = [f"data.data_dir={os.path.abspath(args.data_dir)}"] if args.data_dir else []
    extra += labels + image_size_assignments(args)
    configs = {}
    for arm, fields in arms.items():  # validate every arm before training any
        configs[arm] = validate(
            apply_overrides(
                TrainConfig(),
                assignments(base)
                + assignments(fields)
                + extra
                + smoke.assignments()
                + list(args.set)
                + tracking_assignments(args),
            )
        )
    check_installed(next(iter(configs.values())).run.track)
    sources = {}  # and against the data itself: a batch or crop it cannot give, before any arm trains
    for cfg in configs.values():
        check_fits(dataclasses.replace(cfg.data, folds=args.folds, fold=0) if args.folds else cfg.data, sources)
    claim(
        sweep_dir, {"base": base, "arms": arms, "set": args.set, "data_dir": extra, "folds": args.folds}, args.overwrite
    )
    changed = sorted({k for arm in arms.values() for k in arm})
    trials_path, columns = os.path.join(sweep_dir, "trials.csv"), columns_for(["arm", "fold", *changed])
    hparams.write_experiment(
        sweep_dir, None, ["best_val_accuracy", "best_val_loss"], extra=sweep_parameters(arms, changed)
    )
    tracker = ParentTracker(sweep_dir, "sweep", next(iter(configs.values())))
    tracker.start()
    try:
        for arm, cfg in configs.items():
            for seed in range(cap(args.seeds, 2)):
                for fold in range(cap(args.folds, 2)) if args.folds else [None]:  # smoke: the first 2 of the folds
                    run_arm(
                        sweep_dir,
                        trials_path,
                        columns,
                        arm,
                        cfg,
                        seed,
                        fold,
                        args.folds,
                        {k: arms[arm].get(k, "") for k in changed},
                        tracker,
                    )
    except KeyboardInterrupt:
        tracker.end("interrupted")
        raise
    summary = summarize(read_trials(trials_path), configs, changed, arms, args.folds)
    atomic_write(os.path.join(sweep_dir, "sweep.csv"), csv_text(summary, list(summary[0])))
    tracker.end("finished")
    print_summary(name, summary, args, trials_path, sweep_dir)
    return 0


def claim(sweep_dir, record, overwrite):
    """A sweep folder belongs to one sweep: a rerun with other settings must not report the old runs."""
    claim_folder(
        sweep_dir,
        "sweep.json",
        record,
        overwrite,
        f"{sweep_dir} holds this lab run with other settings (--set, data, folds or the lab file); "
        "pass --overwrite to run it again from scratch, or --output-dir elsewhere",
    )


def sweep_parameters(arms, changed):
    params = [hp_api.HParam("arm", hp_api.Discrete(sorted(arms))), hp_api.HParam("seed", hp_api.IntInterval(0, 1000))]
    for key in changed:
        values = sorted({str(arm.get(key, "")) for arm in arms.values()})
        params.append(hp_api.HParam(key, hp_api.Discrete(values)))
    return params


def run_arm(sweep_dir, trials_path, columns, arm, cfg, seed, fold, folds, settings, tracker):
    trial_id = f"{arm}-seed{seed}" + (f"-fold{fold}" if fold is not None else "")
    done = {r["trial_id"]: r for r in read_trials(trials_path)}.get(trial_id)
    if done and done["status"] in ("finished", "diverged"):
        return
    overrides = [
        f"run.seed={seed}",
        f"run.output_dir={os.path.join(sweep_dir, 'runs')}",
        f"run.name={trial_id}",
        "run.export=false",
    ]
    if fold is not None:
        overrides += [f"data.folds={folds}", f"data.fold={fold}"]
    run_cfg = tracker.child_config(apply_overrides(cfg, overrides))
    row = {
        "trial_id": trial_id,
        "arm": arm,
        "seed": seed,
        "fold": "" if fold is None else fold,
        **settings,
        "run_dir": os.path.join(run_cfg.run.output_dir, trial_id),
    }
    try:
        row = run_trial(run_cfg, trials_path, row, columns)
    except UsageError as err:
        hparams.write_session(
            RunDir(row["run_dir"]).tensorboard_dir, trial_id, {"arm": arm, "seed": seed, **settings}, "failed", {}
        )
        tracker.failed_trial(row, str(err))
        raise
    hparams.write_session(
        RunDir(row["run_dir"]).tensorboard_dir, trial_id, {"arm": arm, "seed": seed, **settings}, row["status"], row
    )


def summarize(rows, configs, changed, arms, folds):
    summary = []
    for arm, cfg in configs.items():
        mine = [r for r in rows if r["arm"] == arm]
        finished = [r for r in mine if r["status"] == "finished" and r["best_val_accuracy"] not in ("", None)]
        accs = [float(r["best_val_accuracy"]) for r in finished]
        summary.append(
            {
                "arm": arm,
                "runs": len(accs),
                "mean_val_accuracy": round(statistics.mean(accs), 4) if accs else "",
                "std_val_accuracy": round(statistics.stdev(accs), 4) if len(accs) > 1 else "",
                "min_val_accuracy": min(accs, default=""),
                "max_val_accuracy": max(accs, default=""),
                "ensemble_val_accuracy": ensemble_accuracy(cfg, finished) if not folds and len(finished) > 1 else "",
                "diverged": sum(r["status"] == "diverged" for r in mine),
                **{k: arms[arm].get(k, "") for k in changed},
            }
        )
    return summary


def ensemble_accuracy(cfg, finished):
    """The arm's seeds as one ensemble: averaged probabilities on the validation split they share."""
    data = prepare_data(cfg.data)
    if data.validation is None:
        return ""
    probabilities = ensemble_probabilities([r["run_dir"] for r in finished], data.validation)
    labels = np.concatenate([y for _, y in data.validation.batches(256)])
    return round(float(np.mean(probabilities.argmax(1) == labels)), 4)


def print_summary(name, summary, args, trials_path, sweep_dir):
    unit = f"{args.folds} folds" if args.folds else f"{cap(args.seeds, 2)} seed(s)"
    print(f"{name}: {unit} per arm, best validation accuracy per run")
    for s in summary:
        spread = f" ± {s['std_val_accuracy']:.4f}" if s["std_val_accuracy"] != "" else ""
        mean = f"{s['mean_val_accuracy']:.4f}" if s["mean_val_accuracy"] != "" else "n/a"
        ensemble = f", ensemble {s['ensemble_val_accuracy']:.4f}" if s["ensemble_val_accuracy"] != "" else ""
        print(f"  {s['arm']:<16} {mean}{spread} (n={s['runs']}, diverged {s['diverged']}){ensemble}")
    print(f"rows in {trials_path}; summary in {os.path.join(sweep_dir, 'sweep.csv')}")


if __name__ == "__main__":
    raise SystemExit(main())
