"""The babysitting checks on real MNIST: each passes when healthy and fails when broken."""

import csv
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn import diagnostics as d
from keras_cnn.cli import diagnose
from keras_cnn.models import create_model

from conftest import mnist_config


@pytest.fixture(scope="module")
def mnist_batch(mnist_npz):
    with np.load(mnist_npz) as f:
        x, y = f["x_train"][:256, :, :, None], f["y_train"][:256].astype("int32")
    images = (x.astype("float32") - 33.3) / 78.6  # MNIST's mean and std
    return tf.constant(images), tf.constant(y)


@pytest.mark.parametrize(
    "name,shape", [("mlp", (28, 28, 1)), ("linear", (28, 28, 1)), ("resnet20", (28, 28, 1)), ("vgg11", (32, 32, 1))]
)
def test_initial_loss_passes_every_default_initialization(name, shape, mnist_batch):
    """Default initializers start above ln(10) by what their logits' scale explains (resnet20 by ~70%):
    that is no bug, and the check must not say it is."""
    images, labels = mnist_batch
    keras.utils.set_random_seed(0)
    images = tf.image.resize(images, shape[:2])
    check = d.initial_loss_check(create_model(name, shape, 10), images, labels, 10)
    assert check.status == "pass", check


def test_initial_loss_fails_a_100x_last_layer_and_says_what_to_change(mnist_batch):
    images, labels = mnist_batch
    keras.utils.set_random_seed(0)
    model = create_model("mlp", (28, 28, 1), 10, hidden=[100], kernel_initializer="he_normal")
    model.get_layer("logits").kernel.assign(model.get_layer("logits").kernel * 100)
    check = d.initial_loss_check(model, images, labels, 10)
    assert check.status == "fail" and check.value > 10 and "initializer" in check.detail


def small_mlp_config(**run):
    from keras_cnn.config import TrainConfig

    return TrainConfig().replace(
        model={"name": "mlp", "options": {"hidden": (100,)}},
        data={"dataset": "mnist"},
        run={"precision": "float32", **run},
    )


def test_overfit_check_passes_when_healthy_and_fails_with_a_vanishing_learning_rate(mnist_batch):
    images, labels = (t.numpy() for t in mnist_batch)
    healthy = d.overfit_check(small_mlp_config(), images[:20], labels[:20], 10)
    assert healthy.status == "pass" and healthy.value == 1.0
    frozen = d.overfit_check(small_mlp_config(), images[:20], labels[:20], 10, learning_rate=1e-12, max_passes=50)
    assert frozen.status == "fail" and frozen.value < 1.0


def test_overfit_check_in_micro_batches_still_reaches_100_percent(mnist_batch):
    # what diagnose does at photo sizes, where 20 images of activations are gigabytes
    images, labels = (t.numpy() for t in mnist_batch)
    check = d.overfit_check(small_mlp_config(), images[:20], labels[:20], 10, batch_size=8)
    assert check.status == "pass" and "in batches of 5" in check.detail, check.detail


def test_activation_statistics_in_chunks_equal_one_batch(mnist_batch):
    images, _ = mnist_batch
    model = create_model("mlp", (28, 28, 1), 10, hidden=[64, 64], activation="tanh")
    whole = d.activation_statistics(model, images[:24], training=False)
    chunked = d.activation_statistics(model, images[:24], training=False, batch_size=5)
    for a, b in zip(whole, chunked, strict=True):
        assert a["layer"] == b["layer"]
        for key in ("mean", "std", "fraction_zero", "fraction_saturated"):
            assert np.isclose(a[key], b[key], rtol=1e-5, atol=1e-7), (key, a[key], b[key])


@keras.saving.register_keras_serializable(package="tests")
class BrokenGradient(keras.layers.Layer):
    """y = x * w with a gradient for w that is off by a factor of 2."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")

    def call(self, x):
        @tf.custom_gradient
        def scale(x, w):
            def grad(dy):
                return dy * w, 2.0 * tf.reduce_sum(dy * x, axis=0)  # the true one has no 2

            return x * w, grad

        return scale(x, self.w)


def test_gradient_check_passes_a_correct_model_and_flags_a_broken_gradient(mnist_batch):
    images, labels = mnist_batch
    x = images[:4].numpy().astype("float64")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float64")
    try:
        keras.utils.set_random_seed(0)
        good = create_model("mlp", (28, 28, 1), 10, hidden=[16], activation="tanh")
        check, errors = d.gradient_check(good, x, labels[:4])
        assert check.status == "pass" and max(errors.values()) < 1e-6, errors
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Dense(16, activation="tanh", name="fc1")(keras.layers.Flatten()(inputs))
        hidden = BrokenGradient(name="broken")(hidden)
        broken = keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))
        check, errors = d.gradient_check(broken, x, labels[:4])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert check.status == "fail" and "broken" in check.detail
    assert errors["broken"] > 0.1 and errors["logits"] < 1e-6


def test_activation_statistics_see_tanh_saturation_and_collapse(mnist_batch):
    images, _ = mnist_batch
    big = create_model("mlp", (28, 28, 1), 10, hidden=[200] * 4, activation="tanh", kernel_initializer="uniform")
    for layer in big.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.assign(layer.kernel * 40)  # far too large: units pinned at +-1
    stats = d.activation_statistics(big, images)
    assert all(s["fraction_saturated"] > 0.5 for s in stats[1:])
    assert d.activation_check(stats).status == "warn"
    small = create_model(
        "mlp", (28, 28, 1), 10, hidden=[200] * 8, activation="tanh", kernel_initializer="random_normal"
    )
    assert "collapse" in d.activation_check(d.activation_statistics(small, images)).detail


def test_compare_init_shows_collapse_for_small_init_and_stable_xavier_he(tmp_path):
    table = d.compare_init(str(tmp_path / "compare_init.png"), depth=10, width=200, samples=300)
    std = {(r["activation"], r["initializer"]): [v for k, v in r.items() if k.endswith("_std")] for r in table}
    small, xavier, he = "small random (std 0.01)", "Xavier (glorot_uniform)", "He (he_normal)"
    small_tanh, xavier_tanh = std[("tanh", small)], std[("tanh", xavier)]
    assert small_tanh[-1] < 1e-6 < 0.1 < xavier_tanh[-1]  # 0.01 init: activations vanish layer by layer
    he_relu, small_relu = std[("relu", he)], std[("relu", small)]
    large_tanh = [r for r in table if r["activation"] == "tanh" and r["initializer"].startswith("large")][0]
    assert large_tanh["layer10_std"] > 0.9  # std 1.0 init: tanh units saturate at +-1 (CS231n's third case)
    assert 0.2 < he_relu[-1] / he_relu[0] < 5 and small_relu[-1] < 1e-6
    assert (tmp_path / "compare_init.png").stat().st_size > 10000


def test_diagnose_cli_writes_the_table(mnist_npz, tmp_path, capsys):
    """The default MLP on real digits: every check passes or warns, none fails, and the LR finder
    prints a usable rate."""
    rc = diagnose.main(
        [
            "--model",
            "mlp",
            "--hidden",
            "64",
            "--dataset",
            "mnist",
            "--data-dir",
            str(mnist_npz),
            "--output-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    with open(tmp_path / "diagnostics.csv") as f:
        rows = {r["check"]: r for r in csv.DictReader(f)}
    assert list(rows) == [
        "initial_loss",
        "regularization_raises_loss",
        "overfit_tiny_subset",
        "lr_range",
        "activation_statistics",
        "update_weight_ratio",
        "gradient_check",
    ]
    assert rows["gradient_check"]["status"] == "pass" and rows["overfit_tiny_subset"]["status"] == "pass"
    assert rc == 0 and "initial_loss" in out and rows["initial_loss"]["status"] == "pass"
    assert re.search(
        r"^suggested lr [0-9.e+-]+ \(SGD, momentum 0.9, batch 128; for batch B scale it by B/128;", out, flags=re.M
    ), out
    for name in ("lr_range.png", "activations.png", "diagnostics.json"):
        assert (tmp_path / name).exists(), name


def test_layer_stats_callback_sees_relus_die_under_a_huge_learning_rate(mnist_small, tmp_path):
    def dead(lr, name):
        cfg = mnist_config(
            mnist_small,
            tmp_path,
            "run.layer_stats=true",
            f"optimizer.learning_rate={lr}",
            "run.epochs=2",
            "data.batch_size=32",
            "optimizer.nesterov=false",
            "optimizer.momentum=0.0",
            "schedule.name=constant",
            "run.precision=float32",
            f"run.name={name}",
            "model.hidden=128",
        )
        result = keras_cnn.train(cfg, verbose=0)
        with open(tmp_path / name / "layer_stats.csv") as f:
            rows = list(csv.DictReader(f))
        relu = [r for r in rows if r["layer"] == "fc1_relu"]
        assert {"fraction_zero", "dead_units", "weight_norm", "gradient_norm", "update_ratio"} <= set(rows[0])
        return float(relu[-1]["dead_units"]), result

    healthy, _ = dead(0.05, "healthy")
    killed, result = dead(30.0, "killed")
    assert healthy < 0.2 and killed > 0.5, (healthy, killed)


def test_the_checks_sample_every_class_of_a_folder_listed_class_by_class(cifar_folder):
    from keras_cnn.cli.diagnose import check_sample
    from keras_cnn.config import TrainConfig, apply_overrides
    from keras_cnn.data import prepare_data

    cfg = apply_overrides(
        TrainConfig(), ["data.dataset=cifar10", f"data.data_dir={cifar_folder}", "data.batch_size=16"]
    )
    data = prepare_data(cfg.data)
    images, labels = check_sample(data, cfg)
    assert len(images) == len(labels) == len(data.train)  # 32-px images: all of them fit 256 MB
    few, _ = check_sample(data, cfg, memory=30 * 4 * 32 * 32 * 3)
    assert len(few) == 30  # larger images: as many as the memory bound holds
    assert len(set(labels[:20].tolist())) >= 5  # the overfit check's 20 examples span the classes
    assert len(set(labels.tolist())) == 10


def test_gradient_check_passes_a_batchnorm_resnet_whose_kinks_move_with_every_weight():
    """BatchNorm on batch statistics lets one weight move every unit after it, so some ReLU sits
    inside the finite-difference step for many weights: centred differences alone put resnet20 at
    64 px at 0.2 relative error ("fail") though its gradient is right."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float64")
    try:
        keras.utils.set_random_seed(0)
        model = create_model("resnet20", (64, 64, 3), 10)
        x = np.random.default_rng(0).standard_normal((2, 64, 64, 3))
        check, errors = d.gradient_check(model, x, np.array([1, 3]))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert check.status == "pass" and max(errors.values()) < 1e-4, check.detail
