"""The bad-input matrix: every mistake ends in one clear line, exit status 2, results untouched.

Each case calls a CLI's main(argv) in-process against an output directory that already holds
a finished run, and checks that every byte of that run is unchanged afterwards.
"""

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_cnn.cli import benchmark, diagnose, evaluate, export, params, predict, train
from tuning import sweep, tune


def snapshot(root):
    digest = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            digest[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def world(tmp_path_factory, mnist_npz):
    """An output dir with one finished run, plus assorted broken inputs."""
    root = tmp_path_factory.mktemp("world")
    results = root / "results"
    base = [
        "--model",
        "linear",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_npz),
        "--output-dir",
        str(results),
        "--name",
        "done",
        "--epochs",
        "1",
        "--set",
        "run.steps_per_epoch=2",
    ]
    assert train.main(base) == 0
    folder = root / "imgs"
    for c, name in enumerate(("a", "b")):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * c + i, np.uint8)).save(folder / name / f"{i}.png")
    corrupt = root / "corrupt"
    shutil.copytree(folder, corrupt)
    (corrupt / "a" / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    empty_class = root / "empty_class"
    shutil.copytree(folder, empty_class)
    (empty_class / "c").mkdir()
    mixed = root / "mixed"
    shutil.copytree(folder, mixed)
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(mixed / "a" / "odd.png")
    one_class = root / "one_class" / "only"
    one_class.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(one_class / "x.png")
    np.savez(root / "nokeys.npz", images=np.zeros((4, 8, 8), np.uint8))
    np.savez(root / "badlabels.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 1, 2, -1]))
    np.savez(root / "floatlabels.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0.5, 1, 0, 1]))
    (root / "garbage.npz").write_bytes(b"not a zip")
    (root / "a_file").write_text("x")
    (root / "one_arm.toml").write_text('[arms.a]\n"model.name" = "mlp"\n')
    (root / "bad.toml").write_text("this is = = not toml")
    (root / "space_typo.toml").write_text("[optimizer.learnin_rate]\nmin = 0.1\nmax = 1.0\n")
    (root / "not_image.jpg").write_bytes(b"nope")
    # A run on 2 classes: its checkpoint cannot fit the 10-class MNIST run.
    assert (
        train.main(
            [
                "--model",
                "linear",
                "--dataset",
                "two",
                "--data-dir",
                str(folder),
                "--output-dir",
                str(root / "other"),
                "--name",
                "two",
                "--epochs",
                "1",
                "--set",
                "data.val_size=2",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    return {
        "root": root,
        "results": results,
        "data": mnist_npz,
        "run": results / "done",
        "other_ckpt": sorted((root / "other" / "two" / "checkpoints").glob("ckpt-*.npz"))[-1],
    }


def T(*argv):  # train with a working base, overridden by the case
    return lambda w: (
        train.main,
        [
            "--model",
            "linear",
            "--dataset",
            "mnist",
            "--data-dir",
            str(w["data"]),
            "--output-dir",
            str(w["results"]),
            "--epochs",
            "1",
            *[a.format(**w) for a in argv],
        ],
    )


def C(main, *argv):
    return lambda w: (main, [a.format(**w) for a in argv])


CASES = {
    "negative learning rate": (T("--lr", "-0.1"), "optimizer.learning_rate must be greater than 0"),
    "zero batch size": (T("--batch-size", "0"), "data.batch_size must be at least 1"),
    "zero epochs": (T("--epochs", "0"), "run.epochs must be at least 1"),
    "dropout 1.5": (T("--model", "mlp", "--dropout", "1.5"), "model.dropout must be in [0, 1)"),
    "label smoothing 1": (T("--set", "optimizer.label_smoothing=1"), "optimizer.label_smoothing must be in [0, 1)"),
    "negative weight decay": (T("--weight-decay", "-1"), "optimizer.weight_decay must be at least 0"),
    "epochs not a number": (T("--set", "run.epochs=ten"), "expected an integer"),
    "bool not a bool": (T("--set", "data.flip=maybe"), "expected true or false"),
    "unknown config key": (T("--set", "optimizer.lr=1"), "unknown field"),
    "unknown section": (T("--set", "trainer.epochs=1"), "unknown section"),
    "malformed --set": (T("--set", "run.epochs"), "not section.field=value"),
    "unknown flag": (T("--epoch", "3"), "unrecognized arguments"),
    "unknown model": (T("--model", "resnet21"), "unknown model 'resnet21'"),
    "unknown model option": (T("--model", "linear", "--hidden", "3"), "has no option 'hidden'"),
    "unknown optimizer": (T("--optimizer", "sgdr"), "unknown optimizer.name"),
    "unknown schedule": (T("--schedule", "linear"), "unknown schedule.name"),
    "unknown strategy": (T("--strategy", "tpu"), "unknown run.strategy"),
    "multi_worker without TF_CONFIG": (T("--strategy", "multi_worker"), "needs TF_CONFIG"),
    "float16 on a CPU": (T("--precision", "mixed_float16"), "mixed_float16 is for GPUs"),
    "unknown normalization": (T("--set", "data.normalization=zscore"), "unknown data.normalization"),
    "validation larger than data": (T("--val-size", "5000"), "validation size 5000 must be in"),
    "missing data dir": (T("--data-dir", "{root}/nowhere"), "does not exist"),
    "npz without keys": (T("--data-dir", "{root}/nokeys.npz"), "lacks x_train"),
    "labels out of range": (T("--data-dir", "{root}/badlabels.npz"), "labels outside"),
    "float labels": (T("--data-dir", "{root}/floatlabels.npz"), "labels must be integers"),
    "not an npz archive": (T("--data-dir", "{root}/garbage.npz"), "cannot read"),
    "a file that is not a dataset": (T("--data-dir", "{root}/a_file"), "neither a labels .csv nor an .npz archive"),
    "corrupt image, fatal by flag": (
        T("--data-dir", "{root}/corrupt", "--set", "data.on_corrupt=error"),
        "cannot decode",
    ),
    "empty class folder": (T("--data-dir", "{root}/empty_class"), "holds no images"),
    "mixed image sizes": (T("--data-dir", "{root}/mixed"), "mixes image sizes"),
    "fewer than 2 classes": (T("--data-dir", "{root}/one_class"), "at least 2"),
    "run name taken by another config": (T("--name", "done", "--lr", "0.5"), "exists with a different config"),
    "output dir under a file": (T("--output-dir", "{root}/a_file/runs"), "cannot create"),
    "checkpoint of another class count": (
        C(export.main, "--run", "{run}", "--checkpoint", "{other_ckpt}", "--export-dir", "{root}/exports"),
        "does not fit this model",
    ),
    "export a missing checkpoint": (
        C(export.main, "--run", "{run}", "--checkpoint", "{root}/none.npz"),
        "does not exist",
    ),
    "export from a non-run": (C(export.main, "--run", "{root}/imgs"), "has no config.json"),
    "predict with a non-SavedModel": (
        C(predict.main, "--model", "{root}/imgs", "{root}/not_image.jpg"),
        "not a SavedModel directory",
    ),
    "predict an undecodable file": (
        C(predict.main, "--model", "{run}/saved_model/1", "{root}/not_image.jpg"),
        "not a decodable image",
    ),
    "predict a missing file": (C(predict.main, "--model", "{run}/saved_model/1", "{root}/missing.jpg"), "cannot read"),
    "evaluate a non-SavedModel": (C(evaluate.main, "--saved-model", "{root}/imgs"), "not a SavedModel directory"),
    "evaluate a non-run": (C(evaluate.main, "--run", "{root}"), "has no config.json"),
    "params with a bad shape": (C(params.main, "--model", "mlp", "--input-shape", "28x28x"), "not HxWxC"),
    "params with a bad activation": (
        C(params.main, "--model", "vgg11", "--activation", "swish"),
        "unknown model.activation",
    ),
    "tune with an unknown tuner": (
        C(tune.main, "--model", "mlp", "--tuner", "annealing", "--output-dir", "{results}"),
        "unknown tuner",
    ),
    "tune with a misspelt space": (
        C(
            tune.main,
            "--model",
            "mlp",
            "--dataset",
            "mnist",
            "--space",
            "{root}/space_typo.toml",
            "--output-dir",
            "{results}",
        ),
        "unknown field",
    ),
    "tune with zero trials": (
        C(tune.main, "--model", "mlp", "--dataset", "mnist", "--max-trials", "0", "--output-dir", "{results}"),
        "at least 1",
    ),
    "sweep with one arm": (C(sweep.main, "{root}/one_arm.toml", "--output-dir", "{results}"), "needs at least 2"),
    "sweep with invalid TOML": (C(sweep.main, "{root}/bad.toml", "--output-dir", "{results}"), "not valid TOML"),
    "sweep with a missing file": (C(sweep.main, "{root}/none.toml"), "does not exist"),
    "diagnose into a file": (C(diagnose.main, "--output-dir", "{root}/a_file/diag"), "cannot create"),
    "benchmark with nothing to do": (C(benchmark.main), "nothing to measure"),
    "benchmark with zero steps": (C(benchmark.main, "--model", "resnet20", "--steps", "0"), "at least 1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_results_untouched(case, world, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    make, needle = CASES[case]
    main, argv = make(world)
    before = snapshot(world["results"])
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, (rc, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert snapshot(world["results"]) == before


def test_full_disk_is_one_line_exit_2_and_keeps_the_earlier_run(world, tmp_path):
    """CI runs as root, so permissions cannot stop writes: cap the file size (RLIMIT_FSIZE)."""
    results = tmp_path / "results"
    shutil.copytree(world["results"], results)
    before = snapshot(results)
    script = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.RLIM_INFINITY));"
        "from keras_cnn.cli.train import main;"
        f"sys.exit(main(['--model', 'mlp', '--dataset', 'mnist', '--data-dir', {str(world['data'])!r}, '--output-dir', {str(results)!r},"
        " '--name', 'big', '--epochs', '1', '--set', 'run.steps_per_epoch=2']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_CNN_VERBOSE=""),
    )
    lines = [l for l in done.stderr.strip().splitlines() if l.startswith("error:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and "File too large" in lines[0], done.stderr[-2000:]
    after = snapshot(results)
    assert {k: v for k, v in after.items() if not k.startswith("big/")} == before  # earlier results intact
