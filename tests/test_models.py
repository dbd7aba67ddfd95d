"""One harness over list_models(): shapes, finiteness, serialization, golden parameter counts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.cli import params
from keras_cnn.models import create_model, list_models, model_options
from keras_cnn.models.layers import ACTIVATIONS, INITIALIZERS, IdentityInit, LocalResponseNormalization, ZeroPadShortcut

MNIST_SHAPE, CIFAR_SHAPE = (28, 28, 1), (32, 32, 3)
SMALL_MODELS = {"linear", "mlp", "alexnet", "resnet20", "vgg11"}


def input_shape(name):
    return MNIST_SHAPE if name in ("linear", "mlp") else CIFAR_SHAPE  # keras_* backbones take 32 px too


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_dtype_and_finite(name):
    model = create_model(name, input_shape(name), 10)
    x = np.random.default_rng(0).normal(size=(2, *input_shape(name))).astype("float32")
    logits = model(x, training=False)
    assert logits.shape == (2, 10)
    assert logits.dtype == "float32"
    assert np.isfinite(logits.numpy()).all()
    assert model.layers[-1].name == "logits"


@pytest.mark.parametrize("name", list_models())
def test_config_round_trip_and_keras_file(name, tmp_path):
    model = create_model(name, input_shape(name), 10)
    clone = keras.Model.from_config(model.get_config())
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert clone.count_params() == model.count_params()
    if name not in SMALL_MODELS:
        return  # saving the 11M-14M parameter nets costs seconds and tests nothing new
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    x = np.random.default_rng(1).normal(size=(3, *input_shape(name))).astype("float32")
    np.testing.assert_allclose(reloaded(x).numpy(), model(x).numpy(), atol=1e-5)


GOLDEN = [
    ("mlp", (28, 28, 1), 10, {"hidden": [64]}, 50_890),
    ("mlp", (64, 64, 1), 3, {"hidden": [32]}, 131_203),
    ("alexnet", (24, 24, 3), 10, {}, 1_068_298),
    ("alexnet", (32, 32, 3), 10, {}, 1_756_426),
    ("resnet20", (32, 32, 3), 10, {"shortcut": "identity"}, 269_722),
    ("resnet20", (32, 32, 3), 10, {"shortcut": "projection"}, 272_474),
    ("vgg16", (32, 32, 3), 10, {}, 14_724_042),
    ("inception", (32, 32, 3), 10, {}, 1_651_114),  # Zhang et al. 2017's small Inception: ~1.65M
]


@pytest.mark.parametrize("name,shape,classes,options,expected", GOLDEN)
def test_golden_parameter_counts(name, shape, classes, options, expected):
    assert trainable(create_model(name, shape, classes, **options)) == expected


@pytest.mark.parametrize(
    "name,millions", [("resnet32", 0.46), ("resnet44", 0.66), ("resnet56", 0.85), ("resnet110", 1.7)]
)
def test_deep_cifar_resnets_match_the_paper(name, millions):
    for shortcut in ("identity", "projection"):
        count = trainable(create_model(name, CIFAR_SHAPE, 10, shortcut=shortcut))
        assert abs(count / 1e6 - millions) / millions < 0.02, (shortcut, count)


def test_batch_norm_switch_and_options_change_the_graph():
    with_bn = create_model("resnet18", CIFAR_SHAPE, 10)
    without = create_model("resnet18", CIFAR_SHAPE, 10, batch_norm=False)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in with_bn.layers)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in without.layers)
    vgg = create_model("vgg11", CIFAR_SHAPE, 10, batch_norm=False, dropout=0.5, activation="elu")
    assert any(isinstance(l, keras.layers.Dropout) for l in vgg.layers)
    assert vgg.get_layer("block1_conv1").use_bias  # without BN the convs need their bias
    maxout = create_model("mlp", MNIST_SHAPE, 10, hidden=[50], activation="maxout")
    assert maxout.get_layer("fc1").units == 100 and maxout.get_layer("fc1_maxout").output.shape[-1] == 50


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds_and_runs(activation):
    model = create_model("alexnet", (24, 24, 3), 10, activation=activation)
    layer = model.get_layer(f"conv1_{activation}")
    x = np.linspace(-3, 3, 24 * 24 * 3, dtype="float32").reshape(1, 24, 24, 3)
    probe = keras.Model(model.inputs, [layer.input, layer.output])
    before, after = (t.numpy() for t in probe(x))
    assert np.isfinite(model(x).numpy()).all() and np.isfinite(after).all()
    assert not np.allclose(before[..., : after.shape[-1]], after)  # it is a nonlinearity, not a pass-through


FAN = 256  # a 256 -> 256 dense kernel: fan_in = fan_out = 256, 65,536 draws


# What each name in models.layers.INITIALIZERS promises; the test runs over that table, so a new
# initializer without a promise here fails.
PROMISES = dict(
    [
        ("zeros", lambda w: not w.any()),
        ("constant", lambda w: np.all(w == np.float32(0.1))),
        ("random_normal", lambda w: abs(w.std() - 0.01) < 5e-4 and abs(w.mean()) < 5e-4),  # CS231n's "small random"
        ("uniform", lambda w: np.abs(w).max() <= 0.05 and abs(w.std() - 0.05 / np.sqrt(3)) < 1e-3),
        (
            "glorot_uniform",
            lambda w: np.abs(w).max() <= np.sqrt(6 / (2 * FAN)) and abs(w.std() - np.sqrt(2 / (2 * FAN))) < 2e-3,
        ),
        # Keras's fan-in normals are truncated at 2 std (std scaled back up): std sqrt(s / fan_in), no draw beyond 2 std.
        (
            "lecun_normal",
            lambda w: (
                abs(w.std() - np.sqrt(1 / FAN)) < 2e-3 and np.abs(w).max() <= 2.01 * np.sqrt(1 / FAN) / 0.87962566
            ),
        ),
        (
            "he_normal",
            lambda w: (
                abs(w.std() - np.sqrt(2 / FAN)) < 3e-3 and np.abs(w).max() <= 2.01 * np.sqrt(2 / FAN) / 0.87962566
            ),
        ),
        ("orthogonal", lambda w: np.allclose(w.T @ w, np.eye(FAN), atol=1e-4)),
        ("identity", lambda w: np.array_equal(w, np.eye(FAN))),
        (
            "truncated_normal",
            lambda w: np.abs(w).max() <= 2 * 0.05 + 1e-6 and 0.035 < w.std() < 0.05,
        ),  # the TF tutorial's
        ("lecun_uniform", lambda w: np.abs(w).max() <= np.sqrt(3 / FAN) and abs(w.std() - np.sqrt(1 / FAN)) < 2e-3),
    ]
)


@pytest.mark.parametrize("init", INITIALIZERS)
def test_every_initializer_draws_what_its_name_promises(init):
    assert init in PROMISES, f"say what {init!r} draws in PROMISES"
    check = PROMISES[init]
    keras.utils.set_random_seed(0)
    model = create_model("mlp", (16, 16, 1), 3, hidden=[FAN], kernel_initializer=init)
    kernel = model.get_layer("fc1").kernel.numpy()
    assert kernel.shape == (FAN, FAN) and check(kernel), (init, kernel.mean(), kernel.std(), np.abs(kernel).max())


def test_weight_decay_adds_l2_losses():
    model = create_model("resnet20", CIFAR_SHAPE, 10, weight_decay=5e-4)
    model(np.zeros((1, *CIFAR_SHAPE), "float32"))
    kernels = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(model.losses) == len(kernels)
    # L2(wd / 2): the gradient of the penalty is wd * w, PyTorch's SGD weight_decay.
    layer = model.get_layer("logits")
    penalty = 0.5 * 5e-4 * float(tf.reduce_sum(tf.square(layer.kernel)))
    assert any(abs(float(loss) - penalty) < 1e-7 for loss in model.losses)


def test_lrn_matches_the_formula_and_computes_in_float32():
    x = np.random.default_rng(0).uniform(0, 3, size=(2, 4, 4, 12)).astype("float32")
    layer = LocalResponseNormalization(depth_radius=2, bias=1.0, alpha=1e-2, beta=0.75)
    expected = np.empty_like(x)
    for c in range(12):
        window = x[..., max(0, c - 2) : c + 3]
        expected[..., c] = x[..., c] / (1.0 + 1e-2 * (window**2).sum(-1)) ** 0.75
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5)
    mixed = LocalResponseNormalization(depth_radius=2, bias=1.0, alpha=1e-2, beta=0.75, dtype="mixed_bfloat16")
    bf16 = mixed(x)  # TF has no bfloat16 LRN kernel on the CPU: this only runs if it computes in float32
    assert bf16.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(bf16, tf.float32).numpy(), expected, rtol=2e-2)
    assert LocalResponseNormalization.from_config(layer.get_config()).alpha == 1e-2


def test_identity_shortcut_and_conv_identity_initializer():
    out = ZeroPadShortcut(32, 2)(np.ones((1, 8, 8, 16), "float32"))
    assert out.shape == (1, 4, 4, 32)
    assert float(tf.reduce_sum(out)) == 4 * 4 * 16  # channels padded with zeros
    kernel = IdentityInit()((3, 3, 4, 4)).numpy()
    np.testing.assert_array_equal(kernel[1, 1], np.eye(4))
    assert kernel.sum() == 4


def test_options_are_introspectable():
    assert set(model_options("resnet20")) >= {"shortcut", "activation", "batch_norm", "dropout", "weight_decay"}
    assert "depth" not in model_options("vgg16")  # fixed by the registered variant


def test_params_cli_prints_table_and_keras_totals(capsys):
    assert params.main(["--model", "mlp", "--input-shape", "64x64x1", "--hidden", "32", "--num-classes", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3:] == ["Total params: 131,203", "Trainable params: 131,203", "Non-trainable params: 0"]
    assert any(line.startswith("fc1 ") and "131,104" in line for line in lines)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--model", "vgg17"], "choose one of: alexnet"),
        (["--model", "mlp", "--activation", "swishy"], "choose one of: relu, leaky_relu"),
        (["--model", "resnet20", "--shortcut", "C"], "choose one of: projection, identity"),
        (["--model", "resnet20", "--hidden", "10"], "has no option 'hidden'"),
        (["--model", "mlp", "--dropout", "1.5"], "dropout must be in [0, 1)"),
        (["--model", "mlp", "--kernel-initializer", "magic"], "choose one of: zeros, constant"),
        (["--model", "mlp", "--input-shape", "28by28"], "not HxWxC"),
        (["--model", "resnet20", "--activation", "maxout"], "activation for ResNets"),
    ],
)
def test_bad_model_input_is_one_line_and_exit_2(argv, needle, capsys):
    assert params.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err


def test_every_model_reloads_in_a_fresh_process_with_equal_outputs(tmp_path):
    """`import keras_cnn; keras.models.load_model(p)` in a new process finds every custom layer, for
    every registered model, and computes what the saving process computed."""
    import subprocess
    import sys

    from conftest import ROOT, child_env

    inputs, expected, paths = {}, {}, []
    # keras_* backbones: one stands for them here (their custom layer is the same in all; each of them
    # is exported and served in a fresh process by test_backbones.py)
    for name in [m for m in list_models() if not m.startswith("keras_") or m == "keras_mobilenetv3small"]:
        keras.utils.set_random_seed(0)
        model = (
            create_model(name, input_shape(name), 10, dropout=0.1)
            if "dropout" in model_options(name)
            else create_model(name, input_shape(name), 10)
        )
        x = np.random.default_rng(1).normal(size=(2, *input_shape(name))).astype("float32")
        inputs[model.name], expected[model.name] = x, model(x, training=False).numpy()
        paths.append(str(tmp_path / f"{name}.keras"))
        model.save(paths[-1])
    np.savez(tmp_path / "inputs.npz", **inputs)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "helpers" / "reload_models.py"),
            str(tmp_path / "out.npz"),
            str(tmp_path / "inputs.npz"),
            *paths,
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reloaded = np.load(tmp_path / "out.npz")
    assert sorted(reloaded.files) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(reloaded[name], values, atol=1e-5, err_msg=name)


def test_the_learning_rate_schedule_round_trips_through_keras_serialization():
    from keras_cnn.config import ScheduleConfig
    from keras_cnn.training.optim import Schedule

    schedule = Schedule(
        0.1,
        ScheduleConfig(name="piecewise", warmup_epochs=1.0, boundaries=(2.0, 4.0), multipliers=(0.1, 0.01)),
        steps_per_epoch=10,
        total_steps=60,
    )
    rebuilt = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    steps = tf.range(60, dtype=tf.float32)
    np.testing.assert_allclose(rebuilt(steps).numpy(), schedule(steps).numpy())
    assert rebuilt.cfg == schedule.cfg and float(schedule(tf.constant(45.0))) == pytest.approx(0.001)


def test_zero_init_residual_starts_every_block_as_its_shortcut():
    model = create_model("resnet20", CIFAR_SHAPE, 10, zero_init_residual=True)
    probe = keras.Model(model.inputs, [model.get_layer("conv1_out").output, model.get_layer("conv2_block1_add").output])
    block_input, added = probe(np.random.default_rng(0).normal(size=(2, *CIFAR_SHAPE)).astype("float32"))
    np.testing.assert_allclose(added.numpy(), block_input.numpy(), atol=1e-6)  # the residual branch adds 0
    plain = create_model("resnet20", CIFAR_SHAPE, 10)
    assert np.all(plain.get_layer("conv2_block1_2_bn").gamma.numpy() == 1)
