"""Hyperparameter search with KerasTuner over keras_cnn.train.

    python scripts/tune.py --model resnet20 --space default --tuner random --max-trials 20 --epochs-per-trial 5
    python scripts/tune.py --model mlp --dataset mnist --refine searches/mlp-mnist-random/trials.csv --top 5

Each trial is a real training run (<search dir>/runs/trial_<id>/); trials.csv holds one row
per trial, search.png plots accuracy against each hyperparameter, and the best trial is
printed as a train.py command. Rerunning the same command resumes the search. Distributed:
start the same command on each machine with KERASTUNER_TUNER_ID (chief, tuner0, tuner1, ...),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set (see the README).
"""
import json
import logging
import os
import shlex
import shutil

from keras_cnn.cli.common import ArgumentParser, cli_entry, folder_name
from keras_cnn.config import TrainConfig, apply_overrides
from keras_cnn.errors import UsageError, choose
from keras_cnn.io import write_json
from keras_cnn.presets import preset
from tuning import search, spaces
from tuning.trials import read_trials


def build_parser():
    parser = ArgumentParser(prog="tune.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir")
    parser.add_argument("--preset", help="start every trial from this preset's config")
    parser.add_argument("--space", default="default", help="default (the model family's), a built-in name, or a TOML file")
    parser.add_argument("--tuner", default="random", help="random, bayesian, hyperband, grid")
    parser.add_argument("--max-trials", type=int, default=20)
    parser.add_argument("--epochs-per-trial", type=int, default=5, help="epochs per trial (hyperband: the maximum)")
    parser.add_argument("--seed", type=int, default=0, help="the oracle's seed and every trial's training seed")
    parser.add_argument("--output-dir", default="searches")
    parser.add_argument("--name", help="search name (default <model>-<dataset>-<tuner>[-refine])")
    parser.add_argument("--refine", metavar="TRIALS_CSV", help="narrow the space around the best trials of this search")
    parser.add_argument("--top", type=int, default=5, help="with --refine: how many best trials define the new ranges")
    parser.add_argument("--overwrite", action="store_true", help="start the search over instead of resuming it")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="fixed config for every trial")
    return parser


@cli_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    choose("tuner", args.tuner, search.TUNERS)
    if args.max_trials < 1 or args.epochs_per_trial < 1 or args.top < 1:
        raise UsageError("--max-trials, --epochs-per-trial and --top must be at least 1")
    space = spaces.load_space(args.space, args.model)
    if args.refine:
        if not os.path.isfile(args.refine):
            raise UsageError(f"--refine {args.refine} does not exist; give a search's trials.csv")
        space = spaces.refine(space, read_trials(args.refine), args.top)
    default = f"{args.model}-{args.dataset.replace('/', '_')}-{args.tuner}" + ("-refine" if args.refine else "")
    name = folder_name(args.name, "--name") if args.name is not None else default
    search_dir = os.path.join(args.output_dir, name)

    fixed = [f"model.name={args.model}", f"data.dataset={args.dataset}", f"run.epochs={args.epochs_per_trial}",
             f"run.seed={args.seed}"]
    if args.data_dir:
        fixed.append(f"data.data_dir={os.path.abspath(args.data_dir)}")
    base = apply_overrides(preset(args.preset) if args.preset else TrainConfig(), fixed + list(args.set))
    _check_same_search(search_dir, args, space)

    def make_tuner():
        oracle = search.make_oracle(args.tuner, space, args.max_trials, args.seed, args.epochs_per_trial)
        return search.KerasCnnTuner(oracle, base, space, search_dir, overwrite=args.overwrite)

    try:
        tuner = make_tuner()
    except (ValueError, KeyError, RuntimeError) as err:
        # KerasTuner writes its oracle and trial JSON in place; a kill mid-write leaves it
        # unreadable. trials.csv is the source of truth: rebuild the oracle from scratch with
        # the same seed, and finished trials are answered from trials.csv, not retrained.

        logging.warning("KerasTuner state in %s is damaged (%s); rebuilding it from trials.csv", search_dir, err)
        shutil.rmtree(os.path.join(search_dir, "keras_tuner"), ignore_errors=True)
        tuner = make_tuner()
    tuner.search()
    base_args = " ".join(shlex.quote(a) for a in _train_args(args))
    search.report(search_dir, space, base_args)
    return 0


def _train_args(args):
    out = ["--model", args.model, "--dataset", args.dataset, "--epochs", str(args.epochs_per_trial), "--seed", str(args.seed)]
    if args.data_dir:
        out += ["--data-dir", args.data_dir]
    if args.preset:
        out += ["--preset", args.preset]
    for s in args.set:
        out += ["--set", s]
    return out


def _check_same_search(search_dir, args, space):
    """A search dir belongs to one search: resuming it with other settings would mix results."""
    record = {"model": args.model, "dataset": args.dataset, "tuner": args.tuner, "max_trials": args.max_trials,
              "epochs_per_trial": args.epochs_per_trial, "seed": args.seed, "set": args.set, "space": space,
              "preset": args.preset}
    path = os.path.join(search_dir, "search.json")
    if os.path.exists(path) and not args.overwrite:
        with open(path) as f:
            previous = json.load(f)
        if json.loads(json.dumps(record)) != previous:
            raise UsageError(f"{search_dir} holds a search with other settings; choose another --name or pass --overwrite")
        return
    if args.overwrite and os.path.lexists(search_dir):  # only this search's own folder
        shutil.rmtree(search_dir) if os.path.isdir(search_dir) and not os.path.islink(search_dir) else os.unlink(search_dir)
    try:
        os.makedirs(search_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {search_dir} ({err.strerror}); choose a writable --output-dir") from None

    write_json(path, record)


if __name__ == "__main__":
    raise SystemExit(main())
