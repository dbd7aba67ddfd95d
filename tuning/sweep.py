"""Controlled comparisons: each arm of a lab file trained over several seeds, mean and std.

    python scripts/sweep.py tuning/labs/mlp_vs_linear.toml --seeds 3 --data-dir ../shared/data/mnist

A lab file names a base config and arms that each change a few fields:

    name = "mlp-vs-linear"
    [base]
    "data.dataset" = "mnist"
    "run.epochs" = 5
    [arms.mlp]
    "model.name" = "mlp"
    [arms.linear]
    "model.name" = "linear"

Every (arm, seed) is a keras_cnn.train run; trials.csv gets one row per run and sweep.csv
one row per arm (mean, std, min, max of the best validation accuracy). Reruns resume.
"""
import os
import statistics
import tomllib

from keras_cnn.cli.common import ArgumentParser, cli_entry, folder_name
from keras_cnn.config import TrainConfig, apply_overrides
from keras_cnn.errors import UsageError
from keras_cnn.io import atomic_write, csv_text
from keras_cnn.smoke import cap
from tuning.runner import run_trial
from tuning.trials import columns_for, read_trials


def load_lab(path):
    try:
        with open(path, "rb") as f:
            lab = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"lab file {path} does not exist; see tuning/labs/ for examples") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path} is not valid TOML ({err})") from None
    arms = lab.get("arms", {})
    if len(arms) < 2:
        raise UsageError(f"{path} defines {len(arms)} arm(s); a comparison needs at least 2 under [arms.<name>]")
    name = folder_name(str(lab.get("name", os.path.splitext(os.path.basename(path))[0])), f"{path}: the lab's name")
    for arm in arms:
        folder_name(f"{arm}-seed0", f"{path}: arm")  # each (arm, seed) becomes a run folder
    return name, lab.get("base", {}), arms


def assignments(table):
    return [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in table.items()]


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="sweep.py", description=__doc__.splitlines()[0])
    parser.add_argument("lab", help="a lab TOML file")
    parser.add_argument("--seeds", type=int, default=3, help="repeats per arm (seeds 0..N-1)")
    parser.add_argument("--data-dir", help="data for every arm (else the lab's data.data_dir, $KERAS_CNN_DATA_DIR or TFDS)")
    parser.add_argument("--output-dir", default="searches")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="applied to every arm")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")


    name, base, arms = load_lab(args.lab)
    sweep_dir = os.path.join(args.output_dir, name)
    os.makedirs(sweep_dir, exist_ok=True)
    trials_path = os.path.join(sweep_dir, "trials.csv")
    changed = sorted({k for arm in arms.values() for k in arm})
    columns = columns_for(["arm", *changed])
    extra = [f"data.data_dir={os.path.abspath(args.data_dir)}"] if args.data_dir else []
    configs = {}
    for arm, fields in arms.items():  # validate every arm before training any
        configs[arm] = apply_overrides(TrainConfig(), assignments(base) + assignments(fields) + extra + list(args.set))

    for arm, cfg in configs.items():
        for seed in range(cap(args.seeds, 2)):
            trial_id = f"{arm}-seed{seed}"
            done = {r["trial_id"]: r for r in read_trials(trials_path)}.get(trial_id)
            if done and done["status"] in ("finished", "diverged"):
                continue
            run_cfg = apply_overrides(cfg, [f"run.seed={seed}", f"run.output_dir={os.path.join(sweep_dir, 'runs')}",
                                            f"run.name={trial_id}", "run.export=false"])
            row = {"trial_id": trial_id, "arm": arm, "seed": seed,
                   **{k: arms[arm].get(k, "") for k in changed},
                   "run_dir": os.path.join(run_cfg.run.output_dir, trial_id)}
            run_trial(run_cfg, trials_path, row, columns)

    rows = read_trials(trials_path)
    summary = []
    for arm in configs:
        accs = [float(r["best_val_accuracy"]) for r in rows if r["arm"] == arm and r["status"] == "finished"]
        summary.append({
            "arm": arm, "runs": len(accs), "mean_val_accuracy": round(statistics.mean(accs), 4) if accs else "",
            "std_val_accuracy": round(statistics.stdev(accs), 4) if len(accs) > 1 else "",
            "min_val_accuracy": min(accs, default=""), "max_val_accuracy": max(accs, default=""),
            "diverged": sum(r["arm"] == arm and r["status"] == "diverged" for r in rows),
            **{k: arms[arm].get(k, "") for k in changed},
        })
    atomic_write(os.path.join(sweep_dir, "sweep.csv"), csv_text(summary, list(summary[0])))
    print(f"{name}: {args.seeds} seed(s) per arm, best validation accuracy per run")
    for s in summary:
        spread = f" ± {s['std_val_accuracy']:.4f}" if s["std_val_accuracy"] != "" else ""
        mean = f"{s['mean_val_accuracy']:.4f}" if s["mean_val_accuracy"] != "" else "n/a"
        print(f"  {s['arm']:<16} {mean}{spread} (n={s['runs']}, diverged {s['diverged']})")
    print(f"rows in {trials_path}; summary in {os.path.join(sweep_dir, 'sweep.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
