"""A user's own photo folder through every command of the README (issue 31).

The folder is made from the committed CIFAR-10 fixture: 10 classes of 12 real photos upscaled to
mixed sizes (96-128 px and one odd 97x131), mostly JPEG, with a PNG, an RGBA PNG and a grayscale
JPEG in every class. Each test checks what its command promises (files, rows, counts, lines), not
only its exit status. CLIs run in-process through main(argv), except predict, whose promise that
no library writes to the terminal can only be seen from outside the process.
"""

import csv
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from keras_cnn.cli import cache as cache_cli
from keras_cnn.cli import diagnose, evaluate, export, params, prepare, report, train
from tuning import tune

from conftest import ROOT, child_env

PER_CLASS = 12
SIZES = [(96, 96), (128, 128), (112, 100), (128, 96)]


@pytest.fixture(scope="module")
def photos(cifar_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for cls in sorted(os.listdir(cifar_folder)):
        os.makedirs(root / cls)
        for i, name in enumerate(sorted(os.listdir(cifar_folder / cls))[:PER_CLASS]):
            img = Image.open(cifar_folder / cls / name).convert("RGB")
            size = (97, 131) if (cls, i) == ("cat", 0) else SIZES[i % len(SIZES)]
            img = img.resize(size[::-1], Image.BICUBIC)  # PIL takes (width, height)
            stem = root / cls / f"{i:03d}"
            if i == 1:
                img.save(f"{stem}.png")
            elif i == 2:
                img.convert("RGBA").save(f"{stem}.png")
            elif i == 3:
                img.convert("L").save(f"{stem}.jpg", quality=90)
            else:
                img.save(f"{stem}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def photo_run(photos, tmp_path_factory):
    """`train.py --preset photos-smoke` on the folder: ResNet-18 at the preset's 128 px."""
    out = tmp_path_factory.mktemp("runs")
    assert train.main(["--preset", "photos-smoke", "--data-dir", str(photos), "--output-dir", str(out)]) == 0
    return out, out / f"resnet18-{photos.name}"


def test_train_with_the_photos_preset_reads_every_file(photos, photo_run):
    out, run = photo_run
    record = json.loads((run / "config.json").read_text())
    cfg = record["config"]
    assert cfg["data"]["dataset"] == photos.name  # named after the folder, as without a preset
    assert record["data"]["image_shape"] == [128, 128, 3]
    assert record["data"]["train_size"] + record["data"]["val_size"] == 10 * PER_CLASS  # none skipped
    assert record["data"]["class_names"] == sorted(os.listdir(photos))
    assert cfg["model"]["name"] == "resnet18" and cfg["optimizer"]["name"] == "adamw"
    history = list(csv.DictReader((run / "history.csv").open()))
    assert len(history) == 1 and float(history[0]["train_loss"]) > 0
    assert (run / "saved_model" / "1" / "saved_model.pb").exists()
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [r["run"] for r in rows] == [run.name] and rows[0]["status"] == "finished"


def test_evaluate_scores_the_runs_validation_split(photo_run, tmp_path, capsys):
    _, run = photo_run
    assert evaluate.main(["--run", str(run), "--output-dir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "evaluation.json").read_text())
    assert 0.0 <= summary["accuracy"] <= 1.0
    confusion = list(csv.reader((tmp_path / "confusion_matrix.csv").open()))
    assert len(confusion) == 11  # a header and one row per class
    assert sum(int(v) for row in confusion[1:] for v in row[1:]) == summary["images"]


def test_export_then_predict_takes_any_file_of_the_folder_quietly(photos, photo_run, tmp_path):
    _, run = photo_run
    assert export.main(["--run", str(run), "--export-dir", str(tmp_path / "exports")]) == 0
    version = tmp_path / "exports" / run.name / "1"
    assert (version / "saved_model.pb").exists()
    # a JPEG with stray bytes (decodes, and libjpeg warns on stderr) and a truncated one (does not)
    good = (photos / "dog" / "004.jpg").read_bytes()
    marker = good.rfind(b"\xff\xd9")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "stray.jpg").write_bytes(good[:marker] + b"\x00\x00" + good[marker:])
    (odd / "truncated.jpg").write_bytes(good[: len(good) // 2])
    files = [photos / "cat" / "000.jpg", photos / "cat" / "002.png", photos / "cat" / "003.jpg"]
    cmd = [sys.executable, "scripts/predict.py", "--model", str(version), *map(str, files), str(odd), "--top-k", "2"]
    done = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [*map(str, files), str(odd / "stray.jpg")]
    assert all(len(line.split(",")) == 2 for line in lines), lines  # the top 2, each with its probability
    assert done.stderr.strip() == f"warning: skipped {odd / 'truncated.jpg'}: not a decodable image"


def test_params_counts_the_photo_model(capsys):
    assert params.main(["--model", "resnet18", "--input-shape", "128x128x3", "--num-classes", "10"]) == 0
    assert "11,191,242" in capsys.readouterr().out


def test_diagnose_on_the_folder_and_the_cache_it_fills(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_CNN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "diag"
    argv = ["--model", "cnn", "--data-dir", str(photos), "--image-size", "96", "--sample", "64"]
    assert diagnose.main([*argv, "--output-dir", str(out)]) == 0
    checks = {c["check"]: c for c in json.loads((out / "diagnostics.json").read_text())["checks"]}
    assert checks["initial_loss"]["status"] == "pass" and checks["overfit_tiny_subset"]["status"] == "pass"
    assert (out / "activations.png").exists() and (out / "diagnostics.csv").exists()
    capsys.readouterr()
    assert cache_cli.main(["info"]) == 0
    info = capsys.readouterr().out
    assert "decoded" in info and str(tmp_path / "cache") in info
    assert cache_cli.main(["clean", "--only", "decoded"]) == 0
    assert not any((tmp_path / "cache" / "decoded").glob("*"))


def test_prepare_then_train_from_the_shards(photos, tmp_path, capsys):
    shards = tmp_path / "prepared"
    assert prepare.main([str(photos), str(shards), "--quiet"]) == 2  # mixed sizes: the line names --image-size
    assert "--image-size" in capsys.readouterr().err
    assert prepare.main([str(photos), str(shards), "--quiet", "--image-size", "112x100"]) == 0
    assert json.loads((shards / "manifest.json").read_text())["image_shape"] == [112, 100, 3]
    out = tmp_path / "runs"
    argv = ["--model", "cnn", "--data-dir", str(shards), "--image-size", "96", "--epochs", "1"]
    assert train.main([*argv, "--output-dir", str(out), "--name", "shards", "--batch-size", "32"]) == 0
    record = json.loads((out / "shards" / "config.json").read_text())
    assert record["data"]["image_shape"] == [96, 96, 3]
    assert record["data"]["train_size"] + record["data"]["val_size"] == 10 * PER_CLASS


def test_tune_then_report_on_the_folder(photos, photo_run, tmp_path, capsys):
    searches = tmp_path / "searches"
    argv = ["--model", "cnn", "--data-dir", str(photos), "--image-size", "96", "--max-trials", "2"]
    argv += ["--epochs-per-trial", "1", "--output-dir", str(searches), "--name", "s", "--set", "run.export=false"]
    argv += ["--set", "data.batch_size=32"]  # 108 training images: the default 128 makes no batch
    assert tune.main(argv) == 0
    trials = list(csv.DictReader((searches / "s" / "trials.csv").open()))
    assert len(trials) == 2 and all(t["status"] == "finished" for t in trials)
    capsys.readouterr()
    assert report.main([str(searches), "--format", "csv"]) == 0
    assert "s" in capsys.readouterr().out
