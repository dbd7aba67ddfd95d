"""keras_* backbones (keras.applications) and --weights: train, export, serve in a fresh process with
the backbone's documented preprocessing, and pretrained weights loaded by path, layer by layer.

The default run takes one backbone per preprocessing mode (caffe, tf, torch, built in); `-m slow`
takes every registered keras_* model. No test here has internet: ImageNet weights are exercised
by the offline refusal, and by weight files the tests save themselves.
"""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_cnn
from keras_cnn.cli import train as train_cli
from keras_cnn.config import TrainConfig, apply_overrides
from keras_cnn.data import prepare_data
from keras_cnn.models import create_model, list_models
from keras_cnn.models.applications import APPLICATIONS, make_backbone, registered_name

from conftest import ROOT, child_env, tiny_run

BACKBONES = [m for m in list_models() if m.startswith("keras_")]
ONE_PER_MODE = {"keras_resnet50", "keras_mobilenetv2", "keras_densenet121", "keras_mobilenetv3small"}
# keras.applications' own preprocess_input for each family: what the export must equal by hand.
PREPROCESS_MODULES = {
    "ResNet": "resnet",
    "ResNetV2": "resnet_v2",
    "MobileNetV2": "mobilenet_v2",
    "MobileNetV3": "mobilenet_v3",
    "EfficientNet": "efficientnet",
    "EfficientNetV2": "efficientnet_v2",
    "ConvNeXt": "convnext",
    "DenseNet": "densenet",
}
FRESH = ROOT / "tests" / "serve_fresh_process.py"


def application_of(name):
    return next(a for a in APPLICATIONS if registered_name(a) == name)


def documented_preprocessing(application):
    family = max((f for f in PREPROCESS_MODULES if application.startswith(f)), key=len)
    if family == "ResNet" and application.endswith("V2"):
        family = "ResNetV2"
    return getattr(keras.applications, PREPROCESS_MODULES[family]).preprocess_input


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in ONE_PER_MODE else pytest.mark.slow) for n in BACKBONES]
)
def test_a_backbone_trains_and_its_export_serves_its_documented_preprocessing(name, cifar_folder, tmp_path):
    cfg = tiny_run(name, cifar_folder, tmp_path)
    result = keras_cnn.train(cfg, verbose=0)
    assert result.status == "finished" and len(result.history) == 1
    run = tmp_path / f"{name}-cifar10"
    record = json.load(open(run / "config.json"))
    assert record["data"]["normalization"]["mode"] == "backbone"  # the model scales the pixels itself
    images = prepare_data(cfg.data).validation.sample(8)
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run(
        [
            sys.executable,
            str(FRESH),
            str(run / "saved_model" / "1"),
            str(tmp_path / "images.npy"),
            str(tmp_path / "out.npz"),
            str(next(cifar_folder.rglob("*.jpg"))),
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")["probabilities"]
    # By hand: keras.applications' preprocess_input, then the trained backbone and head, then softmax.
    model = keras.models.load_model(run / "model.keras")
    x = documented_preprocessing(application_of(name))(images.astype("float32"))
    features = model.get_layer("avg_pool")(model.get_layer("backbone")(x, training=False))
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model.get_layer("logits")(features)))
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_weights_from_a_backbone_file_a_keras_file_and_a_run_load_layer_by_layer(cifar_folder, tmp_path):
    keras.utils.set_random_seed(7)
    donor = make_backbone("MobileNetV2", (32, 32, 3))
    donor.save_weights(tmp_path / "mnv2.weights.h5")
    # A whole keras.applications model with its own 1000-class top, saved as .keras, at another size.
    full = keras.applications.MobileNetV2(weights=None, input_shape=(48, 48, 3))
    full.save(tmp_path / "mnv2_top.keras")
    sources = {"h5": (tmp_path / "mnv2.weights.h5", donor), "keras": (tmp_path / "mnv2_top.keras", full)}
    for label, (path, reference) in sources.items():
        cfg = tiny_run(
            "keras_mobilenetv2", cifar_folder, tmp_path, f"run.name={label}", f"run.weights={path}", "run.export=false"
        )
        model = built_and_loaded(cfg)
        by_name = {layer.name: layer for layer in reference.layers}
        loaded = model.get_layer("backbone")
        checked = 0
        for layer in (layer for layer in loaded.layers if layer.weights):
            for mine, theirs in zip(layer.weights, by_name[layer.name].weights, strict=True):
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))
                checked += 1
        assert checked == len(loaded.weights) > 200
    # A keras_cnn run as the source, for a run with another class count: the backbone moves, the head is new.
    cfg = tiny_run("keras_mobilenetv2", cifar_folder, tmp_path, "run.name=first", "run.export=false")
    keras_cnn.train(cfg, verbose=0)
    first = keras.models.load_model(tmp_path / "first" / "model.keras")
    second = built_and_loaded(
        tiny_run("keras_mobilenetv2", cifar_folder, tmp_path, "run.name=second", f"run.weights={tmp_path / 'first'}"),
        num_classes=3,
    )
    for mine, theirs in zip(second.get_layer("backbone").weights, first.get_layer("backbone").weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))
    assert second.get_layer("logits").kernel.shape == (1280, 3)


def built_and_loaded(cfg, num_classes=10):
    """The model a run starts from with cfg's --weights, without training it."""
    from keras_cnn.training.build import build_training
    from keras_cnn.training.resume import Mode, starting_point

    built = build_training(cfg, image_shape=(32, 32, 3), num_classes=num_classes, steps_per_epoch=1)
    start, _ = starting_point(None, built, cfg, Mode.NEW)
    assert start.weights["source"] == cfg.run.weights and len(start.weights["values_sha256"]) == 64
    return built.model


def test_the_run_record_names_the_weights_file_and_its_sha256(cifar_folder, tmp_path):
    import hashlib

    make_backbone("MobileNetV3Small", (32, 32, 3)).save_weights(tmp_path / "small.weights.h5")
    path = tmp_path / "small.weights.h5"
    keras_cnn.train(
        tiny_run("keras_mobilenetv3small", cifar_folder, tmp_path, f"run.weights={path}", "run.export=false"), verbose=0
    )
    record = json.load(open(tmp_path / "keras_mobilenetv3small-cifar10" / "config.json"))
    assert record["weights"]["source"] == str(path)
    assert record["weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "weights, needle",
    [
        ("imagenet", "cannot download the ImageNet weights of MobileNetV2 (no network?)"),
        ("missing.weights.h5", "does not exist"),
        ("other.weights.h5", "holds no MobileNetV2 backbone"),
        ("other.keras", "is another architecture: it has no layer"),
        ("notes.txt", "expected imagenet, none, or a path"),
    ],
)
def test_bad_weights_end_in_one_line_exit_2_and_write_nothing(weights, needle, cifar_folder, tmp_path, capsys):
    if weights.startswith("other"):
        other = keras.applications.DenseNet121(weights=None, include_top=False, input_shape=(32, 32, 3))
        other.save_weights(tmp_path / "other.weights.h5")
        other.save(tmp_path / "other.keras")
    (tmp_path / "notes.txt").write_text("not weights")
    source = weights if weights == "imagenet" else str(tmp_path / weights)
    argv = ["--model", "keras_mobilenetv2", "--dataset", "cifar10", "--data-dir", str(cifar_folder)]
    argv += ["--output-dir", str(tmp_path / "runs"), "--weights", source, "--epochs", "1"]
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and needle in err[-1], err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_weights_and_normalization_that_do_not_fit_the_model_are_refused():
    from keras_cnn.config import validate
    from keras_cnn.errors import UsageError

    with pytest.raises(UsageError, match="--weights is for keras_\\* backbones, not resnet20"):
        validate(apply_overrides(TrainConfig(), ["model.name=resnet20", "run.weights=imagenet"]))
    with pytest.raises(UsageError, match="data.normalization=center does not fit model keras_resnet50"):
        validate(apply_overrides(TrainConfig(), ["model.name=keras_resnet50", "data.normalization=center"]))
    with pytest.raises(UsageError, match="data.normalization=backbone does not fit model resnet20"):
        validate(apply_overrides(TrainConfig(), ["model.name=resnet20", "data.normalization=backbone"]))
    assert validate(apply_overrides(TrainConfig(), ["model.name=keras_resnet50"])).data.normalization == "backbone"


def test_pretrained_batch_norm_is_frozen_unless_train_bn_and_random_weights_train_it(tmp_path):
    from keras_cnn.training.build import build_training

    make_backbone("MobileNetV3Small", (32, 32, 3)).save_weights(tmp_path / "small.weights.h5")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    base = ["model.name=keras_mobilenetv3small", "run.precision=float32"]
    cases = {  # (extra settings, does BatchNorm train)
        "pretrained": ([f"run.weights={tmp_path / 'small.weights.h5'}"], False),
        "pretrained --train-bn": ([f"run.weights={tmp_path / 'small.weights.h5'}", "run.train_bn=true"], True),
        "random weights": ([], True),
    }
    for case, (extra, trains) in cases.items():
        cfg = apply_overrides(TrainConfig(), base + extra)
        model = build_training(cfg, image_shape=(32, 32, 3), num_classes=3, steps_per_epoch=1).model
        layers = model.get_layer("backbone").layers
        bn = next(layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization))
        before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
        model(x, training=True)
        moved = not np.array_equal(before, keras.ops.convert_to_numpy(bn.moving_mean))
        assert moved == trains and any(w is bn.gamma for w in model.trainable_weights) == trains, case


def test_a_backbone_refuses_inputs_below_its_smallest_size():
    from keras_cnn.errors import UsageError

    with pytest.raises(UsageError, match="needs inputs of at least 32x32 pixels; these are 28x28"):
        create_model("keras_mobilenetv2", (28, 28, 1), 10)
    assert create_model("keras_mobilenetv2", (32, 32, 1), 10).output.shape == (None, 10)  # grayscale: 3 channels
