"""Exports load in a fresh process without keras_cnn and predict what the Keras model predicts."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_cnn.cli import evaluate, predict
from keras_cnn.cli import export as export_cli
from keras_cnn.data import Normalizer
from keras_cnn.export import float32_copy

from conftest import ROOT

FRESH = ROOT / "tests" / "serve_fresh_process.py"


def keras_probabilities(run_dir, images):
    """In-process reference: the run's final model in float32, normalization applied outside."""
    record = json.load(open(os.path.join(run_dir, "config.json")))
    model = float32_copy(keras.models.load_model(os.path.join(run_dir, "model.keras")), record)
    x = Normalizer.load(run_dir)(images)
    return tf.nn.softmax(model(x, training=False)).numpy()


def real_cifar_files(cifar_folder, per_class=2):
    return [
        str(cifar_folder / c / f)
        for c in sorted(os.listdir(cifar_folder))
        for f in sorted(os.listdir(cifar_folder / c))[:per_class]
    ]


def test_every_finished_run_writes_a_servable_version(trained_cifar):
    version = os.path.join(trained_cifar.run_dir, "saved_model", "1")
    for name in ("saved_model.pb", "variables", "config.json", "model.keras"):
        assert os.path.exists(os.path.join(version, name)), name
    assert json.load(open(os.path.join(trained_cifar.run_dir, "config.json")))["resolved"]["precision"] in (
        "float32",
        "mixed_bfloat16",
    )


def test_fresh_process_without_keras_cnn_predicts_like_keras(trained_cifar, cifar_folder, tmp_path):
    files = real_cifar_files(cifar_folder)
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    np.save(tmp_path / "batch.npy", images)
    version = os.path.join(trained_cifar.run_dir, "saved_model", "1")
    out = subprocess.run(
        [sys.executable, str(FRESH), version, str(tmp_path / "batch.npy"), str(tmp_path / "out.npz"), *files],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "keras_cnn importable: False" in out.stdout
    served = np.load(tmp_path / "out.npz")
    expected = keras_probabilities(trained_cifar.run_dir, images)
    assert np.abs(served["probabilities"] - expected).max() < 1e-5
    assert np.abs(served["bytes_probabilities"] - expected).max() < 1e-5  # JPEG decoding matches training's
    np.testing.assert_array_equal(served["classes"], expected.argmax(1))
    names = list(served["all_class_names"])
    assert names[:2] == ["airplane", "automobile"]
    assert list(served["class_names"]) == [names[i] for i in expected.argmax(1)]
    errors = dict(e.split("=", 1) for e in served["errors"])
    assert all(v != "no error" for v in errors.values()), errors


def test_a_keras_user_calls_the_runs_saved_model_on_raw_pixels_through_tfsmlayer(trained_cifar, cifar_folder):
    """The README's answer to "model.keras wants normalized inputs": wrap <run>/saved_model/1."""
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in real_cifar_files(cifar_folder, 1)])
    layer = keras.layers.TFSMLayer(os.path.join(trained_cifar.run_dir, "saved_model", "1"), "serving_default")
    raw = keras.Input(images.shape[1:], dtype="uint8")
    model = keras.Model(raw, layer(raw)["probabilities"])
    served = model.predict(images, verbose=0)
    assert np.abs(served - keras_probabilities(trained_cifar.run_dir, images)).max() < 1e-5


def test_export_cli_writes_numbered_versions_atomically(trained_mlp, tmp_path, capsys):
    for expected in ("1", "2"):
        assert export_cli.main(["--run", trained_mlp.run_dir, "--export-dir", str(tmp_path)]) == 0
        first_line, *report = capsys.readouterr().out.strip().splitlines()
        assert first_line.endswith(os.path.join("mlp-mnist", expected))
        assert report[-1].startswith("| savedmodel |")  # the report's one row, for the one format
    assert sorted(os.listdir(tmp_path / "mlp-mnist")) == ["1", "2"]  # no staging leftovers
    loaded = tf.saved_model.load(str(tmp_path / "mlp-mnist" / "2"))
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, 28, 28, 1] and spec.dtype == tf.uint8


def test_export_from_a_checkpoint_uses_its_ema_weights(trained_mlp, tmp_path, mnist_npz):
    checkpoint = sorted(
        p for p in os.listdir(os.path.join(trained_mlp.run_dir, "checkpoints")) if p.startswith("ckpt-")
    )[-1]
    path = os.path.join(trained_mlp.run_dir, "checkpoints", checkpoint)
    assert export_cli.main(["--run", trained_mlp.run_dir, "--checkpoint", path, "--export-dir", str(tmp_path)]) == 0
    with np.load(mnist_npz) as f:
        images = f["x_train"][:64, :, :, None]
    served = tf.saved_model.load(str(tmp_path / "mlp-mnist" / "1")).signatures["serving_default"]
    probabilities = served(images=tf.constant(images))["probabilities"].numpy()
    # The final model.keras holds the EMA of the last checkpoint: the same numbers.
    assert np.abs(probabilities - keras_probabilities(trained_mlp.run_dir, images)).max() < 1e-5


def test_saved_model_cli_shows_signatures_and_runs_an_npy_batch(trained_mlp, tmp_path, mnist_npz):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this Python")
    version = os.path.join(trained_mlp.run_dir, "saved_model", "1")
    shown = subprocess.run([cli, "show", "--dir", version, "--all"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for needle in (
        "signature_def['serving_default']",
        "signature_def['serve_image_bytes']",
        "inputs['images']",
        "inputs['image_bytes']",
        "outputs['probabilities']",
        "outputs['classes']",
        "outputs['class_names']",
    ):
        assert needle in shown.stdout, needle
    with np.load(mnist_npz) as f:
        np.save(tmp_path / "batch.npy", f["x_train"][:2, :, :, None])
    ran = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            version,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={tmp_path / 'batch.npy'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "probabilities" in ran.stdout


def test_predict_cli_prints_top_k(trained_cifar, cifar_folder, capsys, tmp_path):
    files = real_cifar_files(cifar_folder, per_class=1)[:3]
    version = os.path.join(trained_cifar.run_dir, "saved_model", "1")
    assert predict.main(["--model", version, *files, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(len(re.findall(r" [01]\.\d{4}", line)) == 2 for line in lines), lines
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert predict.main(["--model", version, str(bad)]) == 2
    assert "not a decodable image" in capsys.readouterr().err
    assert predict.main(["--model", str(tmp_path), files[0]]) == 2


def test_evaluate_a_saved_model(trained_mlp, tmp_path):
    version = os.path.join(trained_mlp.run_dir, "saved_model", "1")
    assert evaluate.main(["--saved-model", version, "--output-dir", str(tmp_path)]) == 0
    summary = json.load(open(tmp_path / "evaluation.json"))
    assert summary["accuracy"] == pytest.approx(trained_mlp.history[-1]["ema_val_accuracy"], abs=1e-4)


def test_predict_walks_folders_and_globs_in_batches_and_writes_csv_and_json(
    trained_cifar, cifar_folder, tmp_path, capsys
):
    version = os.path.join(trained_cifar.run_dir, "saved_model", "1")
    bad = cifar_folder.parent / "ignored"  # not passed: only the folders and globs below count
    out = tmp_path / "p.csv"
    assert (
        predict.main(
            [
                "--model",
                version,
                str(cifar_folder / "cat"),
                str(cifar_folder / "ship" / "000*.jpg"),
                "--output",
                str(out),
                "--top-k",
                "2",
            ]
        )
        == 0
    )
    import csv

    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["path", "class_1", "probability_1", "class_2", "probability_2"]
    assert len(rows) == 30 + 10 and not bad.exists()
    assert float(rows[0]["probability_1"]) >= float(rows[0]["probability_2"])
    assert (
        predict.main(["--model", version, str(cifar_folder / "cat" / "0000.jpg"), "--output", str(tmp_path / "p.json")])
        == 0
    )
    entry = json.load(open(tmp_path / "p.json"))[0]
    assert entry["path"].endswith("0000.jpg") and len(entry["top"]) == 3


def test_predict_skips_undecodable_files_found_in_folders_but_refuses_named_ones(
    trained_cifar, cifar_folder, tmp_path, capsys, caplog
):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("0000.jpg", "0001.jpg"):
        (folder / name).write_bytes((cifar_folder / "cat" / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    version = os.path.join(trained_cifar.run_dir, "saved_model", "1")
    assert predict.main(["--model", version, str(folder)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 and "broken.jpg" in caplog.text
    assert predict.main(["--model", version, str(folder / "broken.jpg")]) == 2


def test_an_ensemble_averages_its_members_probabilities(trained_cifar, cifar_folder, tmp_path):
    version = os.path.join(trained_cifar.run_dir, "saved_model", "1")
    image = str(cifar_folder / "dog" / "0000.jpg")
    single, double = tmp_path / "one.json", tmp_path / "two.json"
    assert predict.main(["--model", version, image, "--output", str(single), "--top-k", "10"]) == 0
    # A run folder stands for its own saved_model/1: the same model twice averages to itself.
    assert (
        predict.main(
            ["--model", version, "--model", trained_cifar.run_dir, image, "--output", str(double), "--top-k", "10"]
        )
        == 0
    )
    one, two = json.load(open(single))[0]["top"], json.load(open(double))[0]["top"]
    assert [t["class"] for t in one] == [t["class"] for t in two]
    np.testing.assert_allclose([t["probability"] for t in one], [t["probability"] for t in two], atol=1e-6)


def test_an_ensemble_exports_as_one_saved_model_and_evaluates_as_averaged_probabilities(mnist_small, tmp_path, capsys):
    from keras_cnn.cli import train

    runs = []
    for seed in (0, 1):
        assert (
            train.main(
                [
                    "--model",
                    "mlp",
                    "--data-dir",
                    str(mnist_small),
                    "--output-dir",
                    str(tmp_path),
                    "--epochs",
                    "1",
                    "--batch-size",
                    "32",
                    "--seed",
                    str(seed),
                    "--name",
                    f"s{seed}",
                    "--quiet",
                ]
            )
            == 0
        )
        runs.append(str(tmp_path / f"s{seed}"))
    assert export_cli.main(["--ensemble", *runs, "--name", "both", "--export-dir", str(tmp_path / "exports")]) == 0
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8))
    ensemble = tf.saved_model.load(str(tmp_path / "exports" / "both" / "1"))
    probabilities = ensemble.signatures["serving_default"](images=images)["probabilities"].numpy()
    members = [
        tf.saved_model.load(os.path.join(r, "saved_model", "1"))
        .signatures["serving_default"](images=images)["probabilities"]
        .numpy()
        for r in runs
    ]
    np.testing.assert_allclose(probabilities, np.mean(members, axis=0), atol=1e-6)
    assert set(ensemble.signatures) == {"serving_default", "serve_image_bytes"}
    assert evaluate.main(["--run", runs[0], "--run", runs[1], "--output-dir", str(tmp_path / "eval")]) == 0
    assert "ensemble of 2:" in capsys.readouterr().out
    assert json.load(open(tmp_path / "eval" / "evaluation.json"))["members"] == 2
    assert export_cli.main(["--ensemble", runs[0], "--export-dir", str(tmp_path / "exports")]) == 2
