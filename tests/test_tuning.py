"""Searches and sweeps over real (small) MNIST: trials.csv, divergence, resume, distribution."""

import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_cnn.errors import UsageError
from tuning import spaces, sweep, tune
from tuning.trials import read_trials

from conftest import ROOT, child_env

SMALL = [
    "--set",
    "data.train_limit=1000",
    "--set",
    "data.val_limit=300",
    "--set",
    "run.steps_per_epoch=8",
    "--set",
    "data.batch_size=64",
    "--set",
    "run.precision=float32",
]


def tune_argv(data, out, *extra):
    return [
        "--model",
        "mlp",
        "--dataset",
        "mnist",
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--epochs-per-trial",
        "1",
        "--set",
        "model.hidden=32",
        *SMALL,
        *extra,
    ]


def test_random_search_fills_trials_csv_with_log_spread_rates(mnist_npz, tmp_path, capsys):
    assert tune.main(tune_argv(mnist_npz, tmp_path, "--max-trials", "4", "--tuner", "random")) == 0
    search_dir = tmp_path / "mlp-mnist-random"
    rows = read_trials(search_dir / "trials.csv")
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 4
    assert list(rows[0])[:5] == [
        "trial_id",
        "status",
        "optimizer.learning_rate",
        "optimizer.weight_decay",
        "model.dropout",
    ]
    assert {"best_val_accuracy", "best_val_loss", "epochs", "seconds", "seed", "run_dir"} <= set(rows[0])
    assert all(r["status"] in ("finished", "diverged") for r in rows)
    rates = [float(r["optimizer.learning_rate"]) for r in rows]
    assert math.log10(max(rates) / min(rates)) >= 1.0, rates  # sampled in log space: decades apart
    assert (search_dir / "search.png").exists()
    out = capsys.readouterr().out
    assert "reproduce it: python scripts/train.py --model mlp" in out and "--set optimizer.learning_rate=" in out
    # Rerunning the finished search trains nothing new and duplicates nothing.
    assert tune.main(tune_argv(mnist_npz, tmp_path, "--max-trials", "4", "--tuner", "random")) == 0
    assert len(read_trials(search_dir / "trials.csv")) == 4


def test_a_diverging_learning_rate_is_recorded_and_the_search_goes_on(mnist_npz, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text("[optimizer.learning_rate]\nvalues = [0.05, 1000.0]\n")
    assert (
        tune.main(
            tune_argv(
                mnist_npz,
                tmp_path,
                "--tuner",
                "grid",
                "--space",
                str(space),
                "--max-trials",
                "2",
                "--set",
                "optimizer.momentum=0.9",
            )
        )
        == 0
    )
    rows = {float(r["optimizer.learning_rate"]): r for r in read_trials(tmp_path / "mlp-mnist-grid" / "trials.csv")}
    assert rows[1000.0]["status"] == "diverged" and rows[1000.0]["best_val_accuracy"] == ""
    assert rows[0.05]["status"] == "finished" and float(rows[0.05]["best_val_accuracy"]) > 0.5


def test_refine_narrows_ranges_around_the_best_trials():
    space = spaces.Space(
        table={
            "optimizer.learning_rate": {"min": 1e-4, "max": 1.0, "sampling": "log"},
            "model.dropout": {"min": 0.0, "max": 0.5},
            "optimizer.name": {"values": ["sgd", "adam", "rmsprop"]},
        }
    )
    rows = [
        {
            "status": "finished",
            "best_val_accuracy": "0.9",
            "optimizer.learning_rate": "0.01",
            "model.dropout": "0.1",
            "optimizer.name": "sgd",
        },
        {
            "status": "finished",
            "best_val_accuracy": "0.8",
            "optimizer.learning_rate": "0.02",
            "model.dropout": "0.2",
            "optimizer.name": "adam",
        },
        {
            "status": "finished",
            "best_val_accuracy": "0.1",
            "optimizer.learning_rate": "0.9",
            "model.dropout": "0.5",
            "optimizer.name": "rmsprop",
        },
        {
            "status": "diverged",
            "best_val_accuracy": "",
            "optimizer.learning_rate": "0.5",
            "model.dropout": "0.0",
            "optimizer.name": "sgd",
        },
    ]
    narrowed, notes = spaces.refine(space, rows, top=2)
    assert narrowed["optimizer.learning_rate"] == {"min": 0.005, "max": 0.04, "sampling": "log"} and not notes
    assert narrowed["model.dropout"]["min"] == pytest.approx(0.05) and narrowed["model.dropout"][
        "max"
    ] == pytest.approx(0.25)
    assert narrowed["optimizer.name"] == {"values": ["sgd", "adam"]}
    with pytest.raises(UsageError, match="no finished trials"):
        spaces.refine(space, rows[3:], top=2)


def test_refine_widens_a_range_whose_best_trials_sit_at_its_edge():
    """CS231n: a best value at the edge of the range means the range was too narrow."""
    space = spaces.Space(
        table={
            "optimizer.learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
            "model.dropout": {"min": 0.0, "max": 0.5},
        }
    )
    rows = [
        {"status": "finished", "best_val_accuracy": str(a), "optimizer.learning_rate": str(lr), "model.dropout": "0.0"}
        for a, lr in ((0.9, 0.0095), (0.85, 0.009), (0.2, 0.0002))
    ]
    narrowed, notes = spaces.refine(space, rows, top=2)
    assert narrowed["optimizer.learning_rate"]["max"] == pytest.approx(0.1)  # one decade beyond the high edge
    assert narrowed["model.dropout"]["min"] == 0.0  # dropout cannot go below 0: that edge stays
    assert notes == ["optimizer.learning_rate: best trials at the high edge 0.01; extended to 0.1"]


def test_refine_cli_runs_the_next_stage(mnist_npz, tmp_path):
    assert tune.main(tune_argv(mnist_npz, tmp_path, "--max-trials", "3")) == 0
    first = tmp_path / "mlp-mnist-random" / "trials.csv"
    assert tune.main(tune_argv(mnist_npz, tmp_path, "--max-trials", "2", "--refine", str(first), "--top", "2")) == 0
    record = json.load(open(tmp_path / "mlp-mnist-random-refine" / "search.json"))
    best = sorted(read_trials(first), key=lambda r: float(r["best_val_accuracy"] or 0), reverse=True)[:2]
    lr = record["space"]["table"]["optimizer.learning_rate"]
    rates = [float(r["optimizer.learning_rate"]) for r in best]
    assert lr["min"] <= min(rates) <= max(rates) <= lr["max"]
    assert len(read_trials(tmp_path / "mlp-mnist-random-refine" / "trials.csv")) == 2


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--tuner", "annealing"], "choose one of: bayesian"),
        (["--space", "nope"], "neither a file nor a built-in"),
        (["--max-trials", "0"], "at least 1"),
        (["--refine", "missing.csv"], "does not exist"),
        # What every trial would train is checked before the search folder exists (not once per trial).
        (["--set", "data.image_size=1x2x3"], "data.image_size must be HxW"),
        (["--image-size", "0"], "data.image_size must be HxW"),
        (["--set", "optimizer.momentum=1.5"], "optimizer.momentum"),
        (["--set", "run.steps_per_call=0"], "run.steps_per_call"),
    ],
)
def test_bad_search_arguments_are_one_line_and_exit_2(extra, needle, mnist_npz, tmp_path, capsys):
    assert tune.main(tune_argv(mnist_npz, tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not list(tmp_path.iterdir())  # no search folder to refuse the corrected rerun


def test_image_size_reaches_every_trial_and_the_reproduce_command(mnist_npz, tmp_path, capsys):
    assert tune.main(tune_argv(mnist_npz, tmp_path, "--max-trials", "1", "--image-size", "14")) == 0
    (trial,) = read_trials(tmp_path / "mlp-mnist-random" / "trials.csv")
    with open(os.path.join(trial["run_dir"], "config.json")) as f:
        assert json.load(f)["config"]["data"]["image_size"] == [14, 14]
    assert "--image-size 14x14" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "tune", "sweep", "diagnose"])
def test_every_command_that_trains_takes_the_same_image_size_flag(command):
    from keras_cnn.cli import diagnose
    from keras_cnn.cli import train as train_cli

    parser = {"train": train_cli, "tune": tune, "sweep": sweep, "diagnose": diagnose}[command].build_parser()
    (action,) = [a for a in parser._actions if "--image-size" in a.option_strings]
    assert action.type("128") == "128x128" and action.dest == "image_size"
    if command == "diagnose":  # the config its checks build from
        assert diagnose.diagnostic_config(parser.parse_args(["--image-size", "14"])).data.image_size == (14, 14)


def test_bad_space_files_are_refused(tmp_path):
    for text, needle in [
        ("[optimizer.lr]\nmin = 1\nmax = 2\n", "unknown field"),
        ("[optimizer.learning_rate]\nmin = 1.0\nmax = 0.1\n", "min < max"),
        ('[optimizer.weight_decay]\nmin = 0.0\nmax = 1.0\nsampling = "log"\n', "log sampling needs min > 0"),
        ("[model.dropout]\nmin = 0.0\nmax = 1.0\n", "model.dropout must be in [0, 1)"),
    ]:
        path = tmp_path / "s.toml"
        path.write_text(text)
        with pytest.raises(UsageError, match=re.escape(needle)):
            spaces.load_space(str(path), "mlp")


def test_sweep_reports_mean_std_and_the_ensemble_per_arm_and_writes_hparams(mnist_npz, tmp_path, capsys):
    lab = tmp_path / "lab.toml"
    lab.write_text(
        'name = "tiny"\n[base]\n"data.dataset" = "mnist"\n"model.name" = "mlp"\n"run.epochs" = 1\n'
        '[arms.narrow]\n"model.hidden" = [8]\n[arms.wide]\n"model.hidden" = [64]\n'
    )
    argv = [str(lab), "--seeds", "3", "--data-dir", str(mnist_npz), "--output-dir", str(tmp_path), *SMALL]
    assert sweep.main(argv) == 0
    rows = read_trials(tmp_path / "tiny" / "trials.csv")
    assert sorted(r["trial_id"] for r in rows) == [f"{a}-seed{s}" for a in ("narrow", "wide") for s in range(3)]
    with open(tmp_path / "tiny" / "sweep.csv") as f:
        summary = {r["arm"]: r for r in csv.DictReader(f)}
    from keras_cnn.config import TrainConfig, apply_overrides
    from keras_cnn.data import prepare_data
    from keras_cnn.evaluation import run_probabilities

    for arm in ("narrow", "wide"):
        accs = [float(r["best_val_accuracy"]) for r in rows if r["arm"] == arm]
        assert float(summary[arm]["mean_val_accuracy"]) == pytest.approx(sum(accs) / 3, abs=1e-4)
        assert summary[arm]["runs"] == "3" and summary[arm]["std_val_accuracy"] != ""
        # The ensemble: the three seeds' probabilities averaged on the validation split they share.
        val = prepare_data(
            apply_overrides(TrainConfig(), ["data.dataset=mnist", f"data.data_dir={mnist_npz}"]).data
        ).validation
        mean = np.mean([run_probabilities(r["run_dir"], val.images) for r in rows if r["arm"] == arm], axis=0)
        assert float(summary[arm]["ensemble_val_accuracy"]) == pytest.approx(
            np.mean(mean.argmax(1) == val.labels), abs=1e-4
        )
    assert "±" in capsys.readouterr().out
    assert list((tmp_path / "tiny").glob("events.out.tfevents.*"))  # the HParams experiment at the root
    assert list((tmp_path / "tiny" / "runs" / "wide-seed2" / "tensorboard").glob("events.out.tfevents.*"))
    # The same lab again with another --set must not report the old runs: refused, then --overwrite reruns.
    assert sweep.main(argv + ["--set", "optimizer.learning_rate=0.05"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert sweep.main(argv + ["--set", "optimizer.learning_rate=0.05", "--overwrite", "--seeds", "1"]) == 0
    assert len(read_trials(tmp_path / "tiny" / "trials.csv")) == 2


def test_k_fold_cross_validation_uses_every_image_for_validation_once(mnist_npz, tmp_path, capsys):
    lab = tmp_path / "lab.toml"
    lab.write_text(
        'name = "kfold"\n[base]\n"data.dataset" = "mnist"\n"run.epochs" = 1\n'
        '[arms.linear]\n"model.name" = "linear"\n[arms.mlp]\n"model.name" = "mlp"\n'
    )
    assert (
        sweep.main(
            [
                str(lab),
                "--seeds",
                "1",
                "--folds",
                "3",
                "--data-dir",
                str(mnist_npz),
                "--output-dir",
                str(tmp_path),
                "--set",
                "data.batch_size=64",
            ]
        )
        == 0
    )
    rows = read_trials(tmp_path / "kfold" / "trials.csv")
    assert sorted(r["trial_id"] for r in rows) == [f"{a}-seed0-fold{k}" for a in ("linear", "mlp") for k in range(3)]
    import json as json_

    sizes = [json_.load(open(f"{r['run_dir']}/config.json"))["data"]["val_size"] for r in rows if r["arm"] == "mlp"]
    assert sum(sizes) == 600 and max(sizes) - min(sizes) <= 1  # the folds partition the 600 images
    with open(tmp_path / "kfold" / "sweep.csv") as f:
        summary = {r["arm"]: r for r in csv.DictReader(f)}
    assert summary["mlp"]["runs"] == "3" and summary["mlp"]["std_val_accuracy"] != ""
    assert "3 folds per arm" in capsys.readouterr().out


def test_stratified_folds_partition_the_data_with_class_proportions():
    from keras_cnn.data.split import stratified_folds

    labels = np.repeat(np.arange(4), 30)
    folds = stratified_folds(labels, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(120))
    assert all(np.bincount(labels[f], minlength=4).tolist() == [6, 6, 6, 6] for f in folds)
    assert [f.tolist() for f in stratified_folds(labels, 5, seed=0)] == [f.tolist() for f in folds]


@pytest.mark.parametrize("lab", sorted(p.name for p in (ROOT / "tuning" / "labs").glob("*.toml")))
def test_every_shipped_lab_runs_through_sweep(lab, mnist_small, cifar_folder, tmp_path, monkeypatch, capsys):
    """Each lab, shortened by KERAS_CNN_SMOKE=1 (a 30-epoch CIFAR lab is for users, not for CI)."""
    monkeypatch.setenv("KERAS_CNN_SMOKE", "1")
    path = ROOT / "tuning" / "labs" / lab
    data = cifar_folder if '"cifar10"' in path.read_text() else mnist_small
    assert sweep.main([str(path), "--seeds", "1", "--data-dir", str(data), "--output-dir", str(tmp_path)]) == 0, (
        capsys.readouterr().err
    )
    name, _, arms = sweep.load_lab(str(path))
    assert len(read_trials(tmp_path / name / "trials.csv")) == len(arms)


def test_shipped_lab_files_are_valid():
    from keras_cnn.config import TrainConfig, apply_overrides

    labs = sorted((ROOT / "tuning" / "labs").glob("*.toml"))
    assert len(labs) >= 7
    for lab in labs:
        _, base, arms = sweep.load_lab(str(lab))
        for fields in arms.values():
            apply_overrides(TrainConfig(), sweep.assignments(base) + sweep.assignments(fields))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tune_process(argv, **env):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "tune.py"), *argv],
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_chief_and_two_workers_share_the_trials(mnist_npz, tmp_path):
    # Trials of ~40 steps: long enough that a worker starting a few seconds late still gets some.
    argv = tune_argv(
        mnist_npz, tmp_path, "--max-trials", "6", "--set", "run.steps_per_epoch=40", "--set", "data.train_limit=3000"
    )
    port = str(free_port())
    common = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    chief = tune_process(argv, KERASTUNER_TUNER_ID="chief", **common)
    time.sleep(3)  # let the chief's oracle server come up
    workers = [tune_process(argv, KERASTUNER_TUNER_ID=f"tuner{i}", **common) for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    chief_out = chief.communicate(timeout=120)[0]
    assert chief.returncode == 0, chief_out[-3000:]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-3000:]
    rows = read_trials(tmp_path / "mlp-mnist-random" / "trials.csv")
    assert len(rows) == 6 and len({r["trial_id"] for r in rows}) == 6
    assert all(r["status"] in ("finished", "diverged") for r in rows)
    assert {r["tuner_id"] for r in rows} == {"tuner0", "tuner1"}  # both workers trained trials
    trial_dirs = os.listdir(tmp_path / "mlp-mnist-random" / "runs")
    assert len([d for d in trial_dirs if d.startswith("trial_")]) == 6


def test_killed_search_resumes_with_every_trial_once(mnist_npz, tmp_path):
    argv = tune_argv(
        mnist_npz, tmp_path, "--max-trials", "4", "--set", "run.epochs=3", "--set", "run.steps_per_epoch=15"
    )
    trials = tmp_path / "mlp-mnist-random" / "trials.csv"
    proc = tune_process(argv)
    deadline = time.time() + 300
    # Kill during the second trial: the first row is finished, the second is running.
    while time.time() < deadline:
        rows = read_trials(trials) if trials.exists() else []
        if len(rows) >= 2 and rows[-1]["status"] == "running":
            break
        assert proc.poll() is None, proc.stdout.read()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = tune_process(argv)
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out[-3000:]
    rows = read_trials(trials)
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 4, rows
    assert all(r["status"] == "finished" for r in rows)


PYTHON_SPACE = """
def space(hp):
    return {"model.name": hp.Choice("model.name", ["mlp", "linear"]),
            "optimizer.name": hp.Choice("optimizer.name", ["sgd", "adam"]),
            "optimizer.learning_rate": hp.Float("optimizer.learning_rate", 1e-3, 1e-2, sampling="log")}
"""


def test_a_python_space_over_model_and_optimizer_names_needs_no_model_flag(mnist_small, tmp_path, capsys):
    """Two hyperparameters that end in .name stay apart: each is named by its full config path."""
    space = tmp_path / "space.py"
    space.write_text(PYTHON_SPACE)
    argv = [
        "--space",
        str(space),
        "--data-dir",
        str(mnist_small),
        "--output-dir",
        str(tmp_path),
        "--max-trials",
        "3",
        "--epochs-per-trial",
        "1",
        *SMALL,
    ]
    assert tune.main(argv) == 0
    rows = read_trials(tmp_path / "models-mnist-random" / "trials.csv")
    assert len(rows) == 3 and all(r["status"] == "finished" for r in rows), rows
    assert {r["model.name"] for r in rows} <= {"mlp", "linear"} and {r["optimizer.name"] for r in rows} <= {
        "sgd",
        "adam",
    }
    assert "--set model.name=" in capsys.readouterr().out


def test_a_space_setting_an_option_its_model_lacks_exits_2_before_any_folder(mnist_small, tmp_path, capsys):
    space = tmp_path / "space.py"
    space.write_text(
        'def space(hp):\n    return {"model.name": "mlp", "model.shortcut": hp.Choice("model.shortcut", ["identity"])}\n'
    )
    argv = ["--space", str(space), "--data-dir", str(mnist_small), "--output-dir", str(tmp_path / "out"), *SMALL]
    assert tune.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "has no option 'shortcut'" in err[-1], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "choice, needle",
    [
        (
            '"data.augmentation": "tf_tutorial", "data.crop_size": hp.Choice("data.crop_size", [20, 40])',
            "data.crop_size 40 must be smaller than the 28x28 images",
        ),
        (
            '"data.batch_size": hp.Choice("data.batch_size", [64, 4096])',
            "training images make no full batch of 4096",
        ),
    ],
)
def test_a_data_setting_any_trial_would_fail_on_exits_2_before_the_search(
    choice, needle, mnist_small, tmp_path, capsys
):
    # only the data tells a crop or batch too large; a later choice of the space is checked too
    space = tmp_path / "space.py"
    space.write_text(
        f'def space(hp):\n    return {{"model.name": "mlp", {choice},\n'
        '            "optimizer.learning_rate": hp.Float("optimizer.learning_rate", 0.01, 0.1)}\n'
    )
    argv = ["--space", str(space), "--data-dir", str(mnist_small), "--output-dir", str(tmp_path / "out"), *SMALL]
    assert tune.main(argv + ["--max-trials", "3", "--epochs-per-trial", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_sweep_arm_whose_batch_the_data_cannot_give_exits_2_before_any_arm(mnist_npz, tmp_path, capsys):
    lab = tmp_path / "lab.toml"
    lab.write_text(
        'name = "batches"\n[base]\n"data.dataset" = "mnist"\n"model.name" = "mlp"\n"run.epochs" = 1\n'
        '[arms.small]\n"data.batch_size" = 32\n[arms.huge]\n"data.batch_size" = 4096\n'
    )
    argv = [
        str(lab),
        "--data-dir",
        str(mnist_npz),
        "--output-dir",
        str(tmp_path / "out"),
        "--set",
        "data.train_limit=1000",
    ]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make no full batch of 4096" in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_search_whose_every_trial_fails_exits_1_with_the_first_failure(mnist_small, tmp_path, capsys, monkeypatch):
    # what no check before the search can know (here: the training itself refuses every trial)
    import tuning.runner

    def refuse(cfg, **kwargs):
        raise UsageError(f"trial refused at lr {cfg.optimizer.learning_rate:.3f}")

    monkeypatch.setattr(tuning.runner.keras_cnn, "train", refuse)
    argv = tune_argv(mnist_small, tmp_path, "--max-trials", "3")
    assert tune.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: every trial failed; the first: trial refused at lr"), err
    rows = read_trials(tmp_path / "mlp-mnist-random" / "trials.csv")
    assert rows and all(r["status"] == "failed" for r in rows)


def test_the_dataset_is_named_after_the_data_or_refused(mnist_small, tmp_path, capsys):
    base = ["--model", "mlp", "--output-dir", str(tmp_path), "--max-trials", "1", "--epochs-per-trial", "1", *SMALL]
    assert tune.main(base + ["--data-dir", str(mnist_small)]) == 0
    record = json.load(open(tmp_path / "mlp-mnist-random" / "search.json"))
    assert record["base"]["data"]["dataset"] == "mnist"
    assert tune.main(base) == 2
    assert "pass --dataset NAME or --data-dir PATH" in capsys.readouterr().err


def test_seed_0_is_a_seed_like_any_other(mnist_small, tmp_path):
    """KerasTuner reads seed 0 as "random"; two searches with --seed 0 must draw the same trials."""
    drawn = []
    for out in ("a", "b"):
        assert tune.main(tune_argv(mnist_small, tmp_path / out, "--max-trials", "2", "--seed", "0")) == 0
        drawn.append(
            [r["optimizer.learning_rate"] for r in read_trials(tmp_path / out / "mlp-mnist-random" / "trials.csv")]
        )
    assert drawn[0] == drawn[1]


def test_tensorboard_serves_the_searchs_trials_in_its_hparams_view(mnist_small, tmp_path):
    """The real tensorboard server over a finished search: one HParams session per trial, with status and metrics."""
    import urllib.request

    assert tune.main(tune_argv(mnist_small, tmp_path, "--max-trials", "3")) == 0
    port = free_port()
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "tensorboard"),
            "--logdir",
            str(tmp_path / "mlp-mnist-random"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    body = json.dumps(
        {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [],
            "startIndex": 0,
            "sliceSize": 100,
        }
    ).encode()
    groups = []
    try:
        for _ in range(120):
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/data/plugin/hparams/session_groups",
                    data=body,
                    headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"},
                )
                groups = json.loads(urllib.request.urlopen(request, timeout=5).read())["sessionGroups"]
                if len(groups) == 3:
                    break
            except OSError:
                pass
            time.sleep(0.5)
    finally:
        server.kill()
        server.wait()
    assert len(groups) == 3, groups
    rows = {r["trial_id"]: r for r in read_trials(tmp_path / "mlp-mnist-random" / "trials.csv")}
    for group in groups:
        session = group["sessions"][0]
        trial = rows[group["name"]]
        assert session["status"] == "STATUS_SUCCESS" and group["hparams"]["optimizer.learning_rate"] == pytest.approx(
            float(trial["optimizer.learning_rate"])
        )
        metrics = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert metrics["best_val_accuracy"] == pytest.approx(float(trial["best_val_accuracy"]), abs=1e-6)
