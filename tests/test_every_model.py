"""Every model through every command: train a step, evaluate --run, export --run, predict the export.

The default run takes one model per family; `-m slow` takes every registered model.
"""

import csv
import json

import pytest

from keras_cnn.cli import evaluate, export, predict, train
from keras_cnn.models import list_models

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
    assert export.main(["--run", str(run), "--export-dir", str(tmp_path / "exports")]) == 0, capsys.readouterr().err
    image = next(data.rglob("*.jpg")) if name not in MNIST_MODELS else None
    if image is not None:
        capsys.readouterr()
        assert predict.main(["--model", str(tmp_path / "exports" / run.name / "1"), str(image)]) == 0
        assert capsys.readouterr().out.startswith(str(image))
