"""The fault matrix: what a careless user or a failing machine does, by class, each case asserting the
exit status, one `error:` line, no traceback, and earlier results sha256-identical.

Classes: 1 confinement, 2 one writer per run, 3 damaged runs and checkpoints, 4 signals
(test_signals.py, real processes), 5 config values, 6 records that must agree, 7 images and
arrays, 8 export and evaluate, 9 permissions, 10 the last line of defence.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
from PIL import Image

import keras_cnn
from keras_cnn.cli import benchmark, evaluate, export, predict, train
from keras_cnn.config import TrainConfig, apply_overrides
from keras_cnn.run_dir import RunDir
from tuning import sweep, tune

from conftest import ROOT, child_env


def snapshot(*roots):
    digest = {}
    for root in roots:
        for directory, _, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                with open(path, "rb") as f:
                    digest[path] = hashlib.sha256(f.read()).hexdigest()
    return digest


def run_cli(main, argv, capsys):
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.err.strip()


def assert_one_line_error(rc, err, status, needle):
    assert rc == status, (rc, err)
    lines = err.splitlines()
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], err


@pytest.fixture(scope="module")
def world(tmp_path_factory, mnist_npz):
    """An output folder with one finished, exported run, and an exports folder with one version."""
    root = tmp_path_factory.mktemp("faults")
    results, exports = root / "results", root / "exports"
    assert train.main(train_argv(mnist_npz, results, "--name", "done")) == 0
    assert export.main(["--run", str(results / "done"), "--export-dir", str(exports)]) == 0
    return {"root": root, "results": results, "exports": exports, "data": mnist_npz, "run": results / "done"}


def train_argv(data, output_dir, *extra):
    return [
        "--model",
        "linear",
        "--dataset",
        "mnist",
        "--data-dir",
        str(data),
        "--output-dir",
        str(output_dir),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--set",
        "run.steps_per_epoch=2",
        "--quiet",
        *extra,
    ]


# --------------------------------------------------------------------------- 1. confinement

CONFINEMENT = {
    "name with ../": (train.main, ["--name", "../evil"]),
    "absolute name": (train.main, ["--name", "/tmp/evil"]),
    "name '.'": (train.main, ["--name", "."]),
    "name '..'": (train.main, ["--name", ".."]),
    "name with a separator": (train.main, ["--name", "a/b"]),
    "empty name": (train.main, ["--name", " "]),
    "name of the output's parent with --overwrite": (train.main, ["--name", "../results", "--overwrite"]),
    "name with a backslash": (train.main, ["--name", "a\\b"]),
    "search name with ../": (tune.main, ["--name", "../evil"]),
    "search name '.' with --overwrite": (tune.main, ["--name", ".", "--overwrite"]),
    "export name with ../": (export.main, ["--name", "../../evil"]),
    "export name '..'": (export.main, ["--name", ".."]),
}


@pytest.mark.parametrize("case", list(CONFINEMENT))
def test_confinement(case, world, capsys):
    main, extra = CONFINEMENT[case]
    if main is train.main:
        argv = train_argv(world["data"], world["results"], *extra)
    elif main is tune.main:
        argv = [
            "--model",
            "linear",
            "--dataset",
            "mnist",
            "--data-dir",
            str(world["data"]),
            "--output-dir",
            str(world["results"]),
            *extra,
        ]
    else:
        argv = ["--run", str(world["run"]), "--export-dir", str(world["exports"]), *extra]
    before = snapshot(world["root"])
    rc, err = run_cli(main, argv, capsys)
    assert_one_line_error(rc, err, 2, "must not be empty" if case == "empty name" else "must be one folder name")
    assert snapshot(world["root"]) == before


@pytest.mark.parametrize("where,content", [("name", 'name = "../../escape"'), ("arm", "")])
def test_sweep_names_are_confined(where, content, world, tmp_path, capsys):
    lab = tmp_path / "lab.toml"
    arm = "a/b" if where == "arm" else "a"
    lab.write_text(
        f'{content}\n[base]\n"data.dataset" = "mnist"\n[arms."{arm}"]\n"model.name" = "linear"\n'
        '[arms.c]\n"model.name" = "mlp"\n'
    )
    before = snapshot(world["root"])
    rc, err = run_cli(sweep.main, [str(lab), "--output-dir", str(world["results"])], capsys)
    assert_one_line_error(rc, err, 2, "must be one folder name")
    assert snapshot(world["root"]) == before


# ------------------------------------------------------------------------ 2. one writer per run


def test_a_second_writer_is_refused_naming_the_holder(world, capsys):
    before = snapshot(world["root"])
    with RunDir(world["run"]).lock():  # another process's lock: a separate open file description
        for main, argv in (
            (train.main, train_argv(world["data"], world["results"], "--name", "done")),
            (export.main, ["--run", str(world["run"]), "--export-dir", str(world["exports"])]),
        ):
            rc, err = run_cli(main, argv, capsys)
            assert_one_line_error(rc, err, 2, f"pid {os.getpid()}")
            assert "in use by host" in err
    assert snapshot(world["root"]) == before


def test_a_lock_left_by_a_dead_process_is_taken_over(world, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".stale.lock").write_text("host elsewhere pid 99999999")  # no process holds it any more
    assert train.main(train_argv(world["data"], out, "--name", "stale")) == 0
    assert (out / "stale" / "model.keras").exists() and not (out / ".stale.lock").exists()


def test_two_trainings_under_one_name_one_refuses(world, tmp_path, capsys):
    """A training holds its run's lock from before its data loads to its end: a second training under the
    same name, started meanwhile, is refused naming the holder, and the first finishes undisturbed."""
    holding, release, results = threading.Event(), threading.Event(), []

    class HoldTheRun(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            holding.set()
            release.wait(120)

    cfg = apply_overrides(
        TrainConfig(),
        [
            "data.dataset=mnist",
            f"data.data_dir={world['data']}",
            "model.name=linear",
            f"run.output_dir={tmp_path}",
            "run.name=twice",
            "run.epochs=1",
            "run.steps_per_epoch=2",
            "run.precision=float32",
        ],
    )
    first = threading.Thread(target=lambda: results.append(keras_cnn.train(cfg, callbacks=[HoldTheRun()], verbose=0)))
    first.start()
    try:
        assert holding.wait(120), "the first training never started"
        rc, err = run_cli(train.main, train_argv(world["data"], tmp_path, "--name", "twice"), capsys)
    finally:
        release.set()
        first.join(120)
    assert_one_line_error(rc, err, 2, f"pid {os.getpid()}")
    assert [r.status for r in results] == ["finished"] and (tmp_path / "twice" / "saved_model" / "1").is_dir()


# ------------------------------------------------------------- 3. damaged runs and checkpoints


def damage(kind, run):
    """Damage a copy of a finished run the way a crash, a bad disk or a careless hand would."""
    config, ckpts = run / "config.json", run / "checkpoints"
    if kind == "config not JSON":
        config.write_text("{not json")
    elif kind == "config is a list":
        config.write_text("[1, 2]")
    elif kind == "config without a config section":
        config.write_text('{"config": 5}')
    elif kind == "config section of the wrong type":
        record = json.loads(config.read_text())
        record["config"]["run"] = 7
        config.write_text(json.dumps(record))
    elif kind == "config from a newer keras_cnn":
        record = json.loads(config.read_text())
        record["schema_version"] = 99
        config.write_text(json.dumps(record))
    elif kind == "config is a folder":
        config.unlink()
        config.mkdir()
    elif kind == "checkpoints is a file":
        shutil.rmtree(ckpts)
        ckpts.write_text("x")
    elif kind == "history is a folder":
        (run / "history.csv").unlink()
        (run / "history.csv").mkdir()
    elif kind == "model.keras is a folder":
        (run / "model.keras").unlink()
        (run / "model.keras").mkdir()
    elif kind == "every checkpoint truncated":
        for path in ckpts.glob("ckpt-*.npz"):
            path.write_bytes(path.read_bytes()[:200])
    elif kind == "every checkpoint's bytes flipped":
        for path in ckpts.glob("ckpt-*.npz"):
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
    elif kind == "the run folder is a file":
        shutil.rmtree(run)
        run.write_text("x")
    else:
        raise AssertionError(kind)


DAMAGE = [
    "config not JSON",
    "config is a list",
    "config without a config section",
    "config section of the wrong type",
    "config from a newer keras_cnn",
    "config is a folder",
    "checkpoints is a file",
    "history is a folder",
    "model.keras is a folder",
    "every checkpoint truncated",
    "every checkpoint's bytes flipped",
    "the run folder is a file",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_run_is_refused_in_one_line_and_left_as_it_was(kind, world, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(world["results"], out)
    damage(kind, out / "done")
    before = snapshot(tmp_path)
    rc, err = run_cli(train.main, train_argv(world["data"], out, "--name", "done"), capsys)
    assert_one_line_error(rc, err, 2, "--overwrite")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", DAMAGE)
def test_overwrite_always_replaces_a_damaged_run(kind, world, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(world["results"], out)
    damage(kind, out / "done")
    rc, err = run_cli(train.main, train_argv(world["data"], out, "--name", "done", "--overwrite"), capsys)
    assert rc == 0, err
    assert json.loads((out / "done" / "config.json").read_text())["schema_version"] == 2
    assert (out / "done" / "model.keras").is_file() and not list(out.glob("done.replaced-*"))


def test_a_damaged_newest_checkpoint_warns_and_the_previous_one_is_used(world, tmp_path, caplog):
    argv = train_argv(world["data"], tmp_path, "--name", "r", "--epochs", "2")
    assert train.main(argv) == 0
    ckpts = sorted((tmp_path / "r" / "checkpoints").glob("ckpt-*.npz"))
    assert [p.name for p in ckpts] == ["ckpt-e0001-b000000.npz", "ckpt-e0002-b000000.npz"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:300])
    assert train.main(argv) == 0  # the same command: resumes from epoch 1's checkpoint, trains epoch 2 again
    err = caplog.text
    assert "warning:" in err and "ckpt-e0002-b000000.npz" in err and "ckpt-e0001-b000000.npz" in err
    assert [r["epoch"] for r in RunDir(tmp_path / "r").read_history()] == [1, 2]


# ------------------------------------------------------------------------- 5. config values

CONFIG = {
    "zero epochs": (["--epochs", "0"], "run.epochs must be at least 1"),
    "negative epochs": (["--epochs", "-3"], "run.epochs must be at least 1"),
    "a billion epochs": (["--epochs", "1000000000"], "run.epochs must be at most"),
    "zero batch": (["--batch-size", "0"], "data.batch_size must be at least 1"),
    "zero steps per call": (["--set", "run.steps_per_call=0"], "run.steps_per_call must be at least 1"),
    "negative checkpoint interval": (
        ["--set", "run.checkpoint_every_steps=-1"],
        "run.checkpoint_every_steps must be at least 1",
    ),
    "zero checkpoints kept": (["--set", "run.keep_checkpoints=0"], "run.keep_checkpoints must be at least 1"),
    "zero steps per epoch": (["--set", "run.steps_per_epoch=0"], "run.steps_per_epoch must be at least 1"),
    "zero train limit": (["--set", "data.train_limit=0"], "data.train_limit must be at least 1"),
    "negative validation size": (["--val-size", "-5"], "data.val_size must be at least 0"),
    "negative crop padding": (["--set", "data.crop_padding=-1"], "data.crop_padding must be at least 0"),
    "zero learning rate": (["--lr", "0"], "optimizer.learning_rate must be greater than 0"),
    "NaN learning rate": (["--lr", "nan"], "optimizer.learning_rate must be a finite number"),
    "infinite learning rate": (["--lr", "inf"], "optimizer.learning_rate must be a finite number"),
    "momentum 1": (["--set", "optimizer.momentum=1.0"], "optimizer.momentum must be in [0, 1)"),
    "negative momentum": (["--set", "optimizer.momentum=-0.1"], "optimizer.momentum must be in [0, 1)"),
    "zero clip norm": (["--set", "optimizer.clipnorm=0"], "optimizer.clipnorm must be greater than 0"),
    "EMA decay 1": (["--ema", "--set", "ema.decay=1.0"], "ema.decay must be in (0, 1)"),
    "EMA decay 0": (["--ema", "--set", "ema.decay=0"], "ema.decay must be in (0, 1)"),
    "zero decay epochs": (["--set", "schedule.decay_epochs=0"], "schedule.decay_epochs must be greater than 0"),
    "final fraction 1.5": (["--set", "schedule.final_fraction=1.5"], "schedule.final_fraction must be in [0, 1]"),
    "negative warm-up": (["--set", "schedule.warmup_epochs=-1"], "schedule.warmup_epochs must be at least 0"),
    "unsorted boundaries": (
        ["--schedule", "piecewise", "--set", "schedule.boundaries=5,2", "--set", "schedule.multipliers=0.1,0.01"],
        "increasing order",
    ),
    "boundaries without multipliers": (
        ["--schedule", "piecewise", "--set", "schedule.boundaries=2"],
        "as many schedule.multipliers",
    ),
    "zero image size": (["--image-size", "0"], "data.image_size must be HxW with positive sizes"),
    "image size not a number": (["--image-size", "big"], "--image-size big: expected an integer"),
    "three-part image size": (["--image-size", "3x3x3"], "data.image_size must be HxW"),
    "zero init scale": (["--init-scale", "0"], "model.init_scale must be greater than 0"),
    "unknown decay scope": (["--decay-scope", "convs"], "unknown model.decay_scope"),
    "zero early-stopping patience": (["--early-stopping", "0"], "--early-stopping must be at least 1"),
}


@pytest.mark.parametrize("case", list(CONFIG))
def test_every_config_value_is_checked_before_anything_is_written(case, world, capsys):
    extra, needle = CONFIG[case]
    before = snapshot(world["root"])
    rc, err = run_cli(train.main, train_argv(world["data"], world["results"], "--name", "new", *extra), capsys)
    assert_one_line_error(rc, err, 2, needle)
    assert snapshot(world["root"]) == before and not (world["results"] / "new").exists()


CLI_COUNTS = {
    "tune with zero trials": (tune.main, ["--model", "mlp", "--max-trials", "0"], "at least 1"),
    "tune with negative epochs": (tune.main, ["--model", "mlp", "--epochs-per-trial", "-1"], "at least 1"),
    "tune with --top 0": (tune.main, ["--model", "mlp", "--top", "0"], "at least 1"),
    "sweep with zero seeds": (
        sweep.main,
        ["tuning/labs/mlp_vs_linear.toml", "--seeds", "0"],
        "--seeds must be at least 1",
    ),
    "evaluate with batch 0": (
        evaluate.main,
        ["--run", "{run}", "--batch-size", "0"],
        "--batch-size must be at least 1",
    ),
    "predict with top-k 0": (
        predict.main,
        ["--model", "{run}/saved_model/1", "x.jpg", "--top-k", "0"],
        "--top-k must be at least 1",
    ),
    "benchmark with zero repeats": (benchmark.main, ["--model", "resnet20", "--repeats", "0"], "at least 1"),
}


@pytest.mark.parametrize("case", list(CLI_COUNTS))
def test_every_cli_count_is_checked(case, world, capsys, monkeypatch):
    main, argv, needle = CLI_COUNTS[case]
    monkeypatch.chdir(ROOT)
    argv = [a.format(run=world["run"]) for a in argv] + (
        ["--output-dir", str(world["results"])] if main in (tune.main, sweep.main) else []
    )
    before = snapshot(world["root"])
    rc, err = run_cli(main, argv, capsys)
    assert_one_line_error(rc, err, 2, needle)
    assert snapshot(world["root"]) == before


# ------------------------------------------------------------------- 6. records that agree


def test_a_lost_history_is_rebuilt_from_the_checkpoint(world, tmp_path, capsys):
    argv = train_argv(world["data"], tmp_path, "--name", "r", "--epochs", "2")
    assert train.main(argv) == 0
    (tmp_path / "r" / "history.csv").unlink()
    assert train.main(argv + ["--epochs", "3"]) == 0  # extend the run: it must know its first two epochs
    rows = RunDir(tmp_path / "r").read_history()
    runs = (tmp_path / "runs.csv").read_text().splitlines()
    assert [r["epoch"] for r in rows] == [1, 2, 3] and len(runs) == 2 and runs[1].split(",")[5] == "3"


def test_an_edited_history_is_replaced_by_the_checkpoints_record(world, tmp_path):
    argv = train_argv(world["data"], tmp_path, "--name", "r", "--epochs", "2", "--set", "run.checkpoint_every_steps=1")
    assert train.main(argv) == 0
    history = tmp_path / "r" / "history.csv"
    history.write_text(history.read_text() + "7,99,0.1,1,1,1,1,1,,1,1\n")
    assert train.main(argv + ["--epochs", "3"]) == 0
    assert [r["epoch"] for r in RunDir(tmp_path / "r").read_history()] == [1, 2, 3]


def test_an_old_checkpoint_without_its_history_is_refused(writable_copy, monkeypatch, capsys):
    from test_compat import ARGS

    from conftest import FIXTURES

    monkeypatch.chdir(ROOT)
    runs = writable_copy(FIXTURES / "schema1_runs")
    (runs / "schema1-cnn" / "history.csv").unlink()  # schema-1 checkpoints carry no history of their own
    before = snapshot(runs)
    rc, err = run_cli(train.main, ARGS + ["--output-dir", str(runs), "--epochs", "3"], capsys)
    assert_one_line_error(rc, err, 2, "does not match the checkpoint")
    assert snapshot(runs) == before


# -------------------------------------------------------------------- 7. images and arrays


def npz_case(path, kind):
    if kind == "NaN pixels":
        np.savez(path, x_train=np.full((6, 8, 8), np.nan, np.float32), y_train=np.arange(6) % 2)
    elif kind == "infinite pixels":
        x = np.zeros((6, 8, 8), np.float32)
        x[0, 0, 0] = np.inf
        np.savez(path, x_train=x, y_train=np.arange(6) % 2)
    elif kind == "an object array":
        np.savez(path, x_train=np.array([None, 1, "a"], dtype=object), y_train=np.array([0, 1, 0]))
    elif kind == "a bare .npy named .npz":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "an empty file":
        path.write_bytes(b"")
    elif kind == "5-D images":
        np.savez(path, x_train=np.zeros((6, 2, 8, 8, 1), np.uint8), y_train=np.arange(6) % 2)
    elif kind == "string pixels":
        np.savez(path, x_train=np.array([["a"] * 8] * 8 * 6).reshape(6, 8, 8), y_train=np.arange(6) % 2)
    elif kind == "a truncated archive":
        np.savez(path, x_train=np.zeros((6, 8, 8), np.uint8), y_train=np.arange(6) % 2)
        path.write_bytes(path.read_bytes()[:150])


ARRAYS = {
    "NaN pixels": "NaN or infinite",
    "infinite pixels": "NaN or infinite",
    "an object array": "Python objects",
    "a bare .npy named .npz": "not an .npz archive",
    "an empty file": "cannot read",
    "5-D images": "expected (N, H, W)",
    "string pixels": "store pixels as uint8",
    "a truncated archive": "cannot read",
}


@pytest.mark.parametrize("kind", list(ARRAYS))
def test_bad_arrays_are_refused_in_one_line(kind, world, tmp_path, capsys):
    data = tmp_path / "data.npz"
    npz_case(data, kind)
    before = snapshot(world["root"])
    rc, err = run_cli(
        train.main,
        train_argv(data, world["results"], "--name", "new", "--set", "data.val_size=2", "--batch-size", "2"),
        capsys,
    )
    assert_one_line_error(rc, err, 2, ARRAYS[kind])
    assert snapshot(world["root"]) == before


def image_folder(root, *, corrupt_all=False):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            path = root / c / f"{i}.png"
            if corrupt_all:
                path.write_bytes(b"\x89PNG broken")
            else:
                Image.fromarray(np.full((8, 8, 3), 30 * i + 100 * (c == "b"), np.uint8)).save(path)
    return root


def test_an_image_folder_with_nothing_readable_is_refused(world, tmp_path, capsys):
    data = image_folder(tmp_path / "imgs", corrupt_all=True)
    rc, err = run_cli(train.main, train_argv(data, world["results"], "--name", "new", "--dataset", "x"), capsys)
    assert_one_line_error(rc, err, 2, "no readable images")


def test_a_fifo_named_jpg_is_skipped_not_waited_on(world, tmp_path, capsys):
    data = image_folder(tmp_path / "imgs")
    os.mkfifo(data / "a" / "hang.jpg")
    (data / "b" / "folder.jpg").mkdir()
    rc, err = run_cli(
        train.main,
        train_argv(data, tmp_path / "out", "--dataset", "x", "--batch-size", "2", "--set", "data.val_size=2"),
        capsys,
    )
    assert rc == 0, err


def test_16_bit_pngs_decode_alike_in_training_and_serving(tmp_path):
    """Training's decoder keeps the high byte of 16-bit grayscale, as the serving graph's decode_png does."""
    import tensorflow as tf

    from keras_cnn.data.sources import load_image_folder

    values = np.arange(0, 65536, 257 * 3, dtype=np.uint16)[:64].reshape(8, 8)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(values).save(tmp_path / c / "x.png")  # mode I;16
    from keras_cnn.config import DataConfig
    from keras_cnn.data.store import place

    trained = place(load_image_folder(str(tmp_path)).train, DataConfig(cache="memory")).images[0, ..., 0]
    served = tf.io.decode_image((tmp_path / "a" / "x.png").read_bytes(), channels=1).numpy()[..., 0]
    np.testing.assert_array_equal(trained, served)
    assert trained.max() == 48573 >> 8 and len(np.unique(trained)) == 64  # not clipped to white


# --------------------------------------------------------------------- 8. export and evaluate


def truncate(path, keep=100):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


EXPORT = {
    "export a truncated model.keras": (
        export.main,
        "model.keras",
        ["--run", "{run}", "--export-dir", "{exports}"],
        "model.keras",
    ),
    "evaluate a truncated model.keras": (evaluate.main, "model.keras", ["--run", "{run}"], "model.keras"),
    "export a truncated checkpoint": (
        export.main,
        "checkpoints/ckpt-e0001-b000000.npz",
        ["--run", "{run}", "--checkpoint", "{run}/checkpoints/ckpt-e0001-b000000.npz", "--export-dir", "{exports}"],
        "ckpt-e0001-b000000.npz",
    ),
    "export with damaged normalization": (
        export.main,
        "normalization.json",
        ["--run", "{run}", "--export-dir", "{exports}"],
        "normalization.json",
    ),
    "evaluate a truncated SavedModel": (
        evaluate.main,
        "saved_model/1/saved_model.pb",
        ["--saved-model", "{run}/saved_model/1"],
        "saved_model",
    ),
    "predict with a truncated SavedModel": (
        predict.main,
        "saved_model/1/saved_model.pb",
        ["--model", "{run}/saved_model/1", "{run}/normalization.json"],
        "saved_model",
    ),
    "export into a file": (export.main, None, ["--run", "{run}", "--export-dir", "{run}/normalization.json"], "cannot"),
}


@pytest.mark.parametrize("case", list(EXPORT))
def test_export_and_evaluate_faults_are_one_line_and_keep_earlier_versions(case, world, tmp_path, capsys):
    main, damaged, argv, needle = EXPORT[case]
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    exports = tmp_path / "exports"
    shutil.copytree(world["exports"], exports)
    if damaged:
        truncate(run / damaged)
    before = snapshot(tmp_path)
    rc, err = run_cli(main, [a.format(run=run, exports=exports) for a in argv], capsys)
    assert_one_line_error(rc, err, 2, needle)
    assert snapshot(tmp_path) == before


def test_a_full_disk_during_export_keeps_earlier_versions_and_leaves_no_staging(world, tmp_path):
    exports = tmp_path / "exports"
    shutil.copytree(world["exports"], exports)
    before = snapshot(exports)
    script = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.RLIM_INFINITY));"
        "from keras_cnn.cli.export import main;"
        f"sys.exit(main(['--run', {str(world['run'])!r}, '--export-dir', {str(exports)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=child_env())
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "free some space" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert snapshot(exports) == before and sorted(os.listdir(exports / "done")) == ["1"]


def test_a_killed_exports_staging_folder_is_removed_by_the_next(world, tmp_path):
    exports = tmp_path / "exports"
    shutil.copytree(world["exports"], exports)
    stale = exports / "done" / ".staging-99999999-abc"  # a pid no process has
    stale.mkdir()
    (stale / "saved_model.pb").write_bytes(b"half")
    assert export.main(["--run", str(world["run"]), "--export-dir", str(exports)]) == 0
    assert sorted(os.listdir(exports / "done")) == ["1", "2"]


# ------------------------------------------------------------------------- 9. permissions

PERMISSIONS_SCRIPT = """
import os, stat, sys
from keras_cnn.cli import export, train
data, out = sys.argv[1:3]
assert train.main(["--model", "linear", "--dataset", "mnist", "--data-dir", data, "--output-dir", out + "/runs",
                   "--epochs", "1", "--set", "run.steps_per_epoch=2", "--quiet"]) == 0
assert export.main(["--run", out + "/runs/linear-mnist", "--export-dir", out + "/exports"]) == 0
modes = set()
for directory, dirs, files in os.walk(out):
    for name in dirs + files:
        path = os.path.join(directory, name)
        modes.add(("d" if os.path.isdir(path) else "f", oct(stat.S_IMODE(os.stat(path).st_mode))))
print(sorted(modes))
"""


# keras_cnn reads the umask once, at import (reading it means setting it, which would race other threads),
# so each umask needs a process of its own; 0o027 tells a hard-coded 0644 from an honoured umask.
@pytest.mark.parametrize(
    "umask,file_mode,dir_mode",
    [pytest.param(0o022, "0o644", "0o755", marks=pytest.mark.slow), (0o027, "0o640", "0o750")],
)
def test_files_and_folders_honour_the_umask(umask, file_mode, dir_mode, mnist_small, tmp_path):
    """A serving process running as another user must be able to read an export (mkstemp makes 0600)."""
    done = subprocess.run(
        [sys.executable, "-c", PERMISSIONS_SCRIPT, str(mnist_small), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
        preexec_fn=lambda: os.umask(umask),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modes = eval(done.stdout.strip().splitlines()[-1])
    assert modes == [("d", dir_mode), ("f", file_mode)], modes


# ---------------------------------------------------------------- 10. the last line of defence


def test_an_internal_error_is_one_line_naming_a_log_with_the_traceback(world, tmp_path, capsys, monkeypatch):
    from keras_cnn.training import fit

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in keras_cnn")

    monkeypatch.setattr(fit, "_validate", broken)
    rc, err = run_cli(train.main, train_argv(world["data"], tmp_path, "--name", "r"), capsys)
    assert rc == 1 and len(err.splitlines()) == 1 and "internal error (RuntimeError: a bug in keras_cnn)" in err, err
    log_path = err.split("the traceback is in ")[1].split(";")[0]
    assert log_path.startswith(str(tmp_path / "r")) and "Traceback" in open(log_path).read()


def test_without_a_run_folder_the_crash_log_goes_to_the_cache_folder(capsys, monkeypatch, tmp_path):
    from keras_cnn import run_dir
    from keras_cnn.cli import params

    monkeypatch.setattr(run_dir, "active_run", None)
    monkeypatch.setattr(params, "parameter_table", lambda model: 1 / 0)
    monkeypatch.setenv("KERAS_CNN_CACHE_DIR", str(tmp_path / "cache"))
    rc, err = run_cli(params.main, ["--model", "mlp"], capsys)
    assert rc == 1 and "ZeroDivisionError" in err and str(tmp_path / "cache" / "crashes") in err
