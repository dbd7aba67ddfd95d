"""What the seed documents teach, as tools that give the right answer (docs/seeds.md lists every item)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn import diagnostics as d
from keras_cnn.cli import diagnose, params
from keras_cnn.config import TrainConfig
from keras_cnn.models import create_model
from keras_cnn.models.layers import LocalResponseNormalization, NoisyReLU

from conftest import mnist_config

# ------------------------------------------------------------------------ the LR range test


def synthetic_curve(centre, noise, seed=0):
    """A loss falling fastest at lr = 10**centre, then exploding 1.5 decades later."""
    rates = np.geomspace(1e-6, 10, 200)
    lr = np.log10(rates)
    loss = 2.3 - 2.0 / (1 + np.exp(-(lr - centre) * 3)) + np.where(lr > centre + 1.5, (lr - centre - 1.5) * 6, 0) ** 2
    return rates, loss + np.random.default_rng(seed).normal(0, noise, len(loss))


@pytest.mark.parametrize("centre", [-4, -2, -1])
@pytest.mark.parametrize("noise", [0.02, 0.15])
def test_the_lr_finder_points_at_the_steepest_fall_of_a_known_curve(centre, noise):
    rates, losses = synthetic_curve(centre, noise)
    suggestion, lowest, stop = d.suggest_learning_rate(rates, losses)
    assert 10**centre / 2 <= suggestion <= 10**centre * 2, (suggestion, lowest)
    assert suggestion <= lowest / 3 and stop < len(rates)  # before the minimum, and the divergence was cut


def test_the_lr_finder_ignores_noise_spikes_after_the_fall():
    rates, losses = synthetic_curve(-2, 0.05)
    losses[150] = 50.0  # one noisy batch far into the sweep (what made the old finder suggest 7.8)
    suggestion, _, _ = d.suggest_learning_rate(rates, losses)
    assert 0.005 <= suggestion <= 0.02


def test_the_suggested_rate_trains_the_mnist_mlp(mnist_npz, tmp_path):
    with np.load(mnist_npz) as f:
        x, y = f["x_train"][..., None], f["y_train"].astype("int32")
    images = (x.astype("float32") - 33.3) / 78.6
    cfg = TrainConfig().replace(
        model={"name": "mlp", "options": {"hidden": (100,)}},
        data={"dataset": "mnist", "batch_size": 32},
        optimizer={"momentum": 0.9},
        run={"precision": "float32"},
    )
    check = d.lr_range_test(cfg, images, y, 10, steps=120)
    assert check.status == "pass" and 1e-3 <= check.value <= 1.0, check
    result = keras_cnn.train(
        mnist_config(
            tmp_path.parent / "unused",
            tmp_path,
            f"optimizer.learning_rate={check.value}",
            f"data.data_dir={mnist_npz}",
            "model.hidden=100",
            "schedule.name=constant",
            "run.epochs=3",
            "data.batch_size=32",
        ),
        verbose=0,
    )
    assert result.final_val_accuracy >= 0.8, (check.value, result.history)


# ----------------------------------------------------------------- checks that do not cry wolf


def test_the_regularization_check_sees_a_sane_loss_on_resnet20():
    """In training mode BatchNorm normalizes by the batch: no loss of 114 before it has statistics."""
    keras.utils.set_random_seed(0)
    images = tf.constant(np.random.default_rng(0).normal(size=(32, 32, 32, 3)).astype("float32"))
    labels = tf.constant(np.arange(32) % 10)
    plain, regularized = (
        create_model("resnet20", (32, 32, 3), 10),
        create_model("resnet20", (32, 32, 3), 10, weight_decay=1e-2),
    )
    check = d.regularization_raises_loss_check(plain, regularized, images, labels)
    assert check.status == "pass" and float(check.detail.split()[1]) < 10, check


def test_the_gradient_check_names_the_cause_that_fits_the_net():
    assert "kinks" in d.likely_cause(create_model("mlp", (4, 4, 1), 3, activation="relu"))
    smooth = d.likely_cause(create_model("mlp", (4, 4, 1), 3, activation="sigmoid"))
    assert "smooth" in smooth and "not from kinks" in smooth


# --------------------------------------------------------------------------- model options


def test_lrn_settings_reach_the_layer_and_lrn_can_be_off(capsys):
    model = create_model("alexnet", (24, 24, 3), 10, lrn_depth_radius=2, lrn_bias=2.0, lrn_alpha=1e-4, lrn_beta=0.5)
    layer = model.get_layer("norm1")
    assert (layer.depth_radius, layer.bias, layer.alpha, layer.beta) == (2, 2.0, 1e-4, 0.5)
    off = create_model("alexnet", (24, 24, 3), 10, lrn=False)
    assert not any(isinstance(layer, LocalResponseNormalization) for layer in off.layers)
    assert params.main(["--model", "alexnet", "--no-lrn"]) == 0 and "norm1" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "init,scale,check",
    [
        ("random_normal", 1.0, lambda w: abs(w.std() - 1.0) < 0.02),  # CS231n's "std 1.0" saturation case
        (
            "truncated_normal",
            0.04,
            lambda w: abs(w.max()) <= 0.08 + 1e-6 and 0.03 < w.std() < 0.04,
        ),  # the TF tutorial's FC init
        (
            "lecun_uniform",
            None,
            lambda w: np.abs(w).max() <= np.sqrt(3 / 256) and np.abs(w).max() > 0.9 * np.sqrt(3 / 256),
        ),
        ("uniform", 0.2, lambda w: np.abs(w).max() <= 0.2 and np.abs(w).max() > 0.19),
        ("he_normal", 0.5, lambda w: abs(w.std() - np.sqrt(1.0 / 256)) < 2e-3),  # variance factor 2 * 0.5
    ],
)
def test_the_initializers_scale_is_settable(init, scale, check):
    keras.utils.set_random_seed(0)
    options = {"init_scale": scale} if scale else {}
    kernel = (
        create_model("mlp", (16, 16, 1), 3, hidden=[256], kernel_initializer=init, **options)
        .get_layer("fc1")
        .kernel.numpy()
    )
    assert check(kernel), (init, kernel.std(), np.abs(kernel).max())


def test_a_constant_bias_for_hidden_units_and_zero_for_the_classifier():
    model = create_model("mlp", (4, 4, 1), 3, hidden=[8, 8], bias_init=0.01)
    assert np.all(model.get_layer("fc1").bias.numpy() == np.float32(0.01))
    assert np.all(model.get_layer("fc2").bias.numpy() == np.float32(0.01))
    assert not model.get_layer("logits").bias.numpy().any()


def test_noisy_relu_is_noisy_while_training_and_a_relu_at_inference():
    layer = NoisyReLU(seed=1)
    x = tf.constant(np.linspace(-3, 3, 1000).reshape(10, 100).astype("float32"))
    np.testing.assert_array_equal(layer(x, training=False).numpy(), tf.nn.relu(x).numpy())
    noisy = layer(x, training=True).numpy()
    assert (noisy >= 0).all() and not np.allclose(noisy, tf.nn.relu(x).numpy())
    model = create_model("mlp", (4, 4, 1), 3, hidden=[8], activation="noisy_relu")
    assert any("seed_generator" in v.path for v in model.variables)  # checkpointed: a resume draws the same noise


def test_kernel_size_and_filters_of_the_cnn():
    three = create_model("cnn", (32, 32, 3), 10, filters=[64, 64, 64], kernel_size=3, pool_every=3)
    seven = create_model("cnn", (32, 32, 3), 10, filters=[64], kernel_size=7, pool_every=1)
    conv_params = lambda m: sum(l.count_params() for l in m.layers if isinstance(l, keras.layers.Conv2D))  # noqa: E731
    assert conv_params(three) == (27 * 64 + 64) + 2 * (9 * 64 * 64 + 64) and conv_params(seven) == 49 * 3 * 64 + 64
    assert three.get_layer("flatten").output.shape[-1] == seven.get_layer("flatten").output.shape[-1] == 13 * 13 * 64


def test_weight_decay_on_the_dense_layers_only():
    """The TF tutorial's 0.004 on its fully connected layers: no L2 on the convolutions or the classifier."""
    model = create_model("alexnet", (24, 24, 3), 10, weight_decay=4e-3, decay_scope="dense")
    model(np.zeros((1, 24, 24, 3), "float32"))
    decayed = [l.name for l in model.layers if getattr(l, "kernel_regularizer", None) is not None]
    assert decayed == ["fc1", "fc2"] and len(model.losses) == 2
    everything = create_model("alexnet", (24, 24, 3), 10, weight_decay=4e-3)
    assert len([l for l in everything.layers if getattr(l, "kernel_regularizer", None) is not None]) == 5


# ------------------------------------------------------------------------ what convnets learn


def test_diagnose_draws_filters_activation_maps_and_saliency_of_a_trained_run(
    trained_cifar, cifar_folder, tmp_path, capsys
):
    image = cifar_folder / "cat" / "0000.jpg"
    assert (
        diagnose.main(
            [
                "--run",
                trained_cifar.run_dir,
                "--visualize",
                str(image),
                "--output-dir",
                str(tmp_path),
                "--layers",
                "conv1_out",
                "conv4_block3_out",
                "--class",
                "cat",
            ]
        )
        == 0
    )
    for name in ("filters.png", "activation_maps.png", "saliency.png"):
        assert (tmp_path / name).stat().st_size > 2000, name
    assert "filters.png (16 of conv1_conv)" in capsys.readouterr().out
    from keras_cnn import visualize

    model = keras.models.load_model(os.path.join(trained_cifar.run_dir, "model.keras"))
    x = np.random.default_rng(0).normal(size=(32, 32, 3)).astype("float32")
    saliency = visualize.class_saliency(model, x, 3)
    assert saliency.shape == (32, 32) and saliency.max() > 0
    assert (
        diagnose.main(
            [
                "--run",
                trained_cifar.run_dir,
                "--visualize",
                str(image),
                "--output-dir",
                str(tmp_path),
                "--layers",
                "nope",
            ]
        )
        == 2
    )
