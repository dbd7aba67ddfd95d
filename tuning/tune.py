"""Hyperparameter search with KerasTuner over keras_cnn.train.

    python scripts/tune.py --model resnet20 --space default --tuner random --max-trials 20 --epochs-per-trial 5
    python scripts/tune.py --model mlp --data-dir ../shared/data/mnist --refine searches/mlp-mnist-random/trials.csv
    python scripts/tune.py --space my_space.py --data-dir ../shared/data/mnist      # space(hp) sets model.name

Each trial is a real training run (<search dir>/runs/trial_<id>/); trials.csv holds one row
per trial (hyperparameters named by config path), search.png plots accuracy against each
hyperparameter, TensorBoard's HParams view reads the search folder, and the best trial is
printed as a train.py command. Rerunning the same command resumes the search. Exit status 1
when every trial failed. Distributed: start the same command on each machine with
KERASTUNER_TUNER_ID (chief, tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT set (see the README).
"""

import logging
import os
import shlex
import sys

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
from keras_cnn.config import TrainConfig, apply_overrides
from keras_cnn.data.sources import infer_dataset_name
from keras_cnn.errors import UsageError, choose
from keras_cnn.presets import preset
from keras_cnn.smoke import cap
from keras_cnn.tracking import check_installed
from tuning import search, spaces
from tuning.trials import read_trials


def build_parser():
    parser = ArgumentParser(prog="tune.py", description=description_of(__doc__))
    parser.add_argument("--model", help="the model every trial trains (not needed when the space sets model.name)")
    parser.add_argument("--dataset", help="dataset name (default: the --data-dir folder's name)")
    parser.add_argument("--data-dir")
    add_labels_args(parser)
    add_image_size_arg(parser)
    parser.add_argument("--preset", help="start every trial from this preset's config")
    parser.add_argument(
        "--space",
        default="default",
        help="default (the model family's), a built-in name, a TOML file, or a .py file defining space(hp)",
    )
    parser.add_argument("--tuner", default="random", help="random, bayesian, hyperband, grid")
    parser.add_argument("--max-trials", type=int, default=20)
    parser.add_argument("--epochs-per-trial", type=int, default=5, help="epochs per trial (hyperband: the maximum)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the oracle's seed and every trial's training seed (0 is a seed like any other)",
    )
    parser.add_argument("--output-dir", default="searches")
    parser.add_argument("--name", help="search name (default <model>-<dataset>-<tuner>[-refine])")
    parser.add_argument("--refine", metavar="TRIALS_CSV", help="narrow the space around the best trials of this search")
    parser.add_argument("--top", type=int, default=5, help="with --refine: how many best trials define the new ranges")
    parser.add_argument("--overwrite", action="store_true", help="start the search over instead of resuming it")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="fixed config for every trial"
    )
    add_tracking_args(parser, register=False)
    return parser


@cli_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    choose("tuner", args.tuner, search.TUNERS)
    for flag in ("max_trials", "epochs_per_trial", "top"):
        at_least(getattr(args, flag), f"--{flag.replace('_', '-')}")
    at_least(args.seed, "--seed", 0)
    labels = labels_assignments(args)  # --labels is the data source; --multi-label its field
    if args.dataset is None:
        if not args.data_dir:
            raise UsageError("pass --dataset NAME or --data-dir PATH (the dataset is named after its folder)")
        args.dataset = infer_dataset_name(args.data_dir)
    space = spaces.load_space(args.space, args.model)
    notes = []
    if args.refine:
        if not os.path.isfile(args.refine):
            raise UsageError(f"--refine {args.refine} does not exist; give a search's trials.csv")
        table, notes = spaces.refine(space, read_trials(args.refine), args.top)
        space = spaces.Space(table=table, source=args.refine)
    if not args.model and not space.sets("model.name"):
        raise UsageError("pass --model NAME, or a --space that sets model.name")
    model = args.model or "models"
    default = f"{model}-{args.dataset.replace('/', '_')}-{args.tuner}" + ("-refine" if args.refine else "")
    name = folder_name(args.name, "--name") if args.name is not None else default
    search_dir = os.path.join(args.output_dir, name)
    fixed = [f"data.dataset={args.dataset}", f"run.epochs={args.epochs_per_trial}", f"run.seed={args.seed}"]
    fixed += [f"model.name={args.model}"] if args.model else []
    fixed += [f"data.data_dir={os.path.abspath(args.data_dir)}"] if args.data_dir else []
    fixed += labels + image_size_assignments(args) + smoke.assignments()
    fixed += tracking_assignments(args)
    base = apply_overrides(preset(args.preset) if args.preset else TrainConfig(), fixed + list(args.set))
    check_installed(base.run.track)
    for note in notes:
        print(f"refine: {note}")
    try:
        rows = search.run_search(
            base, space, search_dir, tuner=args.tuner, max_trials=cap(args.max_trials, 2), overwrite=args.overwrite
        )
    except search.SearchFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(search.summary_lines(rows, search_dir, " ".join(shlex.quote(a) for a in _train_args(args)))))
    return 0


def _train_args(args):
    out = (["--model", args.model] if args.model else []) + [
        "--dataset",
        args.dataset,
        "--epochs",
        str(args.epochs_per_trial),
        "--seed",
        str(args.seed),
    ]
    if args.data_dir:
        out += ["--data-dir", args.data_dir]
    if args.multi_label:
        out += ["--multi-label"]
    if args.image_size:
        out += ["--image-size", args.image_size]
    if args.preset:
        out += ["--preset", args.preset]
    for s in args.set:
        out += ["--set", s]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
