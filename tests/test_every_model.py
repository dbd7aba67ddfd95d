"""Every model through every command: train a step, evaluate --run, export --run, predict the export.

The default run takes one model per family; `-m slow` takes every registered model.
"""

import json

import pytest

from keras_cnn.cli import evaluate, export, predict, train
from keras_cnn.models import list_models

ONE_PER_FAMILY = ["linear", "mlp", "cnn", "alexnet", "vgg11", "resnet20", "resnet18", "resnet9"]
MNIST_MODELS = {"linear", "mlp", "cnn"}
STEPS = 8  # batches of 16: 128 images seen once


def family_params():
    return [pytest.param(name, marks=() if name in ONE_PER_FAMILY else pytest.mark.slow) for name in list_models()]


@pytest.mark.parametrize("name", family_params())
def test_a_model_trains_evaluates_exports_and_predicts(name, mnist_small, cifar_folder, tmp_path, capsys):
    data = mnist_small if name in MNIST_MODELS else cifar_folder
    dataset = "mnist" if name in MNIST_MODELS else "cifar10"
    argv = ["--model", name, "--dataset", dataset, "--data-dir", str(data), "--output-dir", str(tmp_path)]
    argv += ["--epochs", "1", "--batch-size", "16", "--optimizer", "adam", "--lr", "0.001", "--quiet"]
    argv += ["--set", f"run.steps_per_epoch={STEPS}", "--set", "run.export=false"]  # export.py below exports
    assert train.main(argv) == 0, capsys.readouterr().err
    run = tmp_path / f"{name}-{dataset}"
    out = tmp_path / "eval"
    assert evaluate.main(["--run", str(run), "--data-dir", str(data), "--split", "all", "--output-dir", str(out)]) == 0
    report = json.load(open(out / "evaluation.json"))
    # After its steps the model has learned something: above chance (10 classes) on the images, most of
    # which it trained on. A model that predicts one class scores about chance here.
    assert report["images"] >= 300 and report["accuracy"] > 0.15, report["accuracy"]
    assert export.main(["--run", str(run), "--export-dir", str(tmp_path / "exports")]) == 0, capsys.readouterr().err
    image = next(data.rglob("*.jpg")) if name not in MNIST_MODELS else None
    if image is not None:
        capsys.readouterr()
        assert predict.main(["--model", str(tmp_path / "exports" / run.name / "1"), str(image)]) == 0
        assert capsys.readouterr().out.startswith(str(image))
