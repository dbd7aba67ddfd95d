"""Every model through every command: train a step, evaluate --run, export --run (every format),
predict the export, and run its LiteRT and ONNX files in a fresh process without TensorFlow.

The default run takes one model per family; `-m slow` takes every registered model.
"""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.cli import evaluate, export, predict, train
from keras_cnn.config import TrainConfig
from keras_cnn.data import prepare_data
from keras_cnn.deploy.formats import FORMATS
from keras_cnn.models import list_models

from conftest import ROOT, child_env

# The deploy extra (LiteRT, tf2onnx, ONNX Runtime); .ci/run installs it, the README's test command may not.
DEPLOY = all(__import__("importlib.util").util.find_spec(m) for m in ("ai_edge_litert", "tf2onnx", "onnxruntime"))
FILE_FORMATS = [f for f in FORMATS.values() if f.name != "savedmodel"]

ONE_PER_FAMILY = ["linear", "mlp", "cnn", "alexnet", "vgg11", "resnet20", "resnet18", "resnet9"]
MNIST_MODELS = {"linear", "mlp", "cnn"}
TRAIN_IMAGES, EPOCHS = 32, 6  # two batches of 16 per epoch: 12 steps, each image seen 6 times


def family_params():
    return [pytest.param(name, marks=() if name in ONE_PER_FAMILY else pytest.mark.slow) for name in list_models()]


@pytest.mark.parametrize("name", family_params())
def test_a_model_trains_evaluates_exports_and_predicts(name, mnist_small, cifar_folder, tmp_path, capsys):
    data = mnist_small if name in MNIST_MODELS else cifar_folder
    dataset = "mnist" if name in MNIST_MODELS else "cifar10"
    argv = ["--model", name, "--dataset", dataset, "--data-dir", str(data), "--output-dir", str(tmp_path)]
    argv += ["--epochs", str(EPOCHS), "--batch-size", "16", "--optimizer", "adam", "--lr", "0.001", "--quiet"]
    argv += ["--set", f"data.train_limit={TRAIN_IMAGES}", "--set", "run.export=false"]  # export.py below exports
    assert train.main(argv) == 0, capsys.readouterr().err
    run = tmp_path / f"{name}-{dataset}"
    # After its steps the model has learned: it fits the 32 images it saw, far above chance (10 classes).
    # (Training-mode accuracy: after 12 steps BatchNorm's moving statistics are still mostly their start.)
    last = list(csv.DictReader(open(run / "history.csv")))[-1]
    assert float(last["train_accuracy"]) > 0.5, last
    out = tmp_path / "eval"
    assert evaluate.main(["--run", str(run), "--output-dir", str(out)]) == 0, capsys.readouterr().err
    report = json.load(open(out / "evaluation.json"))
    assert report["images"] > 0 and 0 <= report["accuracy"] <= 1
    formats = ["--format", ",".join(f.name for f in FILE_FORMATS)] if DEPLOY else []
    exported = ["--run", str(run), "--export-dir", str(tmp_path / "exports"), *formats]
    assert export.main(exported) == 0, capsys.readouterr().err
    if DEPLOY:
        check_deployed_files(tmp_path / "exports" / run.name / "1", tmp_path)
    image = next(data.rglob("*.jpg")) if name not in MNIST_MODELS else None
    if image is not None:
        capsys.readouterr()
        assert predict.main(["--model", str(tmp_path / "exports" / run.name / "1"), str(image)]) == 0
        assert capsys.readouterr().out.startswith(str(image))


def check_deployed_files(version, tmp_path):
    """Each file, run without TensorFlow, answers what the SavedModel answers on the run's validation
    images: float32 to 1e-4, float16 weights to 1e-2 (half precision), int8 by top-1 agreement."""
    record = json.load(open(version / "config.json"))
    images = prepare_data(TrainConfig.from_dict(record["config"]).data).validation.sample(64)
    reference = tf.saved_model.load(str(version)).signatures["serving_default"](images=tf.constant(images))
    reference = reference["probabilities"].numpy()
    np.save(tmp_path / "images.npy", images)
    files = [str(version / f.filename) for f in FILE_FORMATS]
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "deployed_fresh_process.py"), str(tmp_path / "images.npy")]
        + [str(tmp_path / "deployed.npz"), *files],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported: []" in done.stdout
    answers = np.load(tmp_path / "deployed.npz")
    np.testing.assert_allclose(answers["model.tflite"], reference, atol=1e-4)
    np.testing.assert_allclose(answers["model.onnx"], reference, atol=1e-4)
    np.testing.assert_allclose(answers["model_fp16.tflite"], reference, atol=1e-2)
    # int8 answers in steps of 1/256: top-1 agreement means something only where the float model's
    # top two are further apart than a few steps (a model trained 12 steps can answer every image
    # with the same nearly uniform probabilities, as the MobileNets here do: agreement 0, error 0.002).
    quantized = answers["model_int8.tflite"]
    assert np.abs(quantized - reference).max() <= 0.25, np.abs(quantized - reference).max()
    top2 = np.sort(reference, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 4 / 256
    if clear.any():
        agreement = (quantized.argmax(1) == reference.argmax(1))[clear].mean()
        assert agreement >= 0.8, (agreement, int(clear.sum()))
    report = json.load(open(version / "export_report.json"))
    assert set(report["formats"]) == set(FORMATS)
