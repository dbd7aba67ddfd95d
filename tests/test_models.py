"""One harness over list_models(): shapes, finiteness, serialization, golden parameter counts."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.cli import params
from keras_cnn.models import create_model, list_models, model_options
from keras_cnn.models.layers import IdentityInit, LocalResponseNormalization, ZeroPadShortcut

MNIST_SHAPE, CIFAR_SHAPE = (28, 28, 1), (32, 32, 3)
SMALL_MODELS = {"linear", "mlp", "alexnet", "resnet20", "vgg11"}


def input_shape(name):
    return MNIST_SHAPE if name in ("linear", "mlp") else CIFAR_SHAPE


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
]


@pytest.mark.parametrize("name,shape,classes,options,expected", GOLDEN)
def test_golden_parameter_counts(name, shape, classes, options, expected):
    assert trainable(create_model(name, shape, classes, **options)) == expected


@pytest.mark.parametrize("name,millions", [("resnet32", 0.46), ("resnet44", 0.66), ("resnet56", 0.85), ("resnet110", 1.7)])
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


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid", "maxout"])
def test_every_activation_builds_and_runs(activation):
    model = create_model("alexnet", (24, 24, 3), 10, activation=activation)
    assert np.isfinite(model(np.ones((1, 24, 24, 3), "float32")).numpy()).all()


@pytest.mark.parametrize(
    "init", ["zeros", "constant", "random_normal", "uniform", "glorot_uniform", "lecun_normal", "he_normal", "orthogonal", "identity"]
)
def test_every_initializer_builds(init):
    model = create_model("mlp", (4, 4, 1), 3, hidden=[16], kernel_initializer=init)
    kernel = model.get_layer("fc1").kernel.numpy()
    if init == "zeros":
        assert not kernel.any()
    if init == "identity":
        np.testing.assert_array_equal(kernel, np.eye(16, 16))


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
        (["--model", "mlp", "--activation", "swishy"], "choose one of: elu"),
        (["--model", "resnet20", "--shortcut", "C"], "choose one of: identity, projection"),
        (["--model", "resnet20", "--hidden", "10"], "has no option 'hidden'"),
        (["--model", "mlp", "--dropout", "1.5"], "dropout must be in [0, 1)"),
        (["--model", "mlp", "--kernel-initializer", "magic"], "choose one of: constant"),
        (["--model", "mlp", "--input-shape", "28by28"], "not HxWxC"),
        (["--model", "resnet20", "--activation", "maxout"], "activation for ResNets"),
    ],
)
def test_bad_model_input_is_one_line_and_exit_2(argv, needle, capsys):
    assert params.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err


@pytest.mark.parametrize("policy,tol", [("float32", 1e-4), ("mixed_bfloat16", 3e-2)])
def test_fused_batch_norm_matches_keras_batch_norm(policy, tol):
    """Same outputs, moving statistics and gradients as keras.layers.BatchNormalization."""
    from keras_cnn.models.layers import BatchNorm

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=(8, 5, 5, 6)).astype("float32"))
    ours = BatchNorm(momentum=0.9, epsilon=1e-5, dtype=policy)
    theirs = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=policy)
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, 6))
        layer.beta.assign(np.linspace(-1, 1, 6))
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.range(6, dtype=tf.float32))
        grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])
        assert y.dtype == layer.compute_dtype
    np.testing.assert_allclose(ours(x, training=True).numpy().astype("float32"), theirs(x, training=True).numpy().astype("float32"), atol=tol, rtol=tol)
    np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.moving_mean.numpy(), rtol=1e-3)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=tol)
    np.testing.assert_allclose(ours(x, training=False).numpy().astype("float32"), theirs(x, training=False).numpy().astype("float32"), atol=tol, rtol=tol)
    for g_ours, g_theirs in zip(*grads):
        np.testing.assert_allclose(g_ours, g_theirs, atol=tol * 10, rtol=tol)
    # ... and it really is the fused kernel, forward and backward, not the Keras fallback.
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = ours(inputs, training=True)
        return tape.gradient(out, inputs)

    ops = {op.type for op in tf.function(step).get_concrete_function(x).graph.get_operations()}
    assert {"FusedBatchNormV3", "FusedBatchNormGradV3"} <= ops, sorted(ops)


@pytest.mark.parametrize("size,c_in,c_out,kernel,padding", [(4, 256, 256, 3, "same"), (8, 64, 128, 3, "same"),
                                                             (4, 128, 96, 2, "same"), (6, 128, 128, 3, "valid")])
def test_conv2d_swapped_kernel_gradient_matches_keras(size, c_in, c_out, kernel, padding):
    """Same output, input gradient and (to bfloat16 rounding) kernel gradient as keras.layers.Conv2D."""
    from keras_cnn.models.layers import Conv2D

    x = tf.constant(np.random.default_rng(0).normal(size=(16, size, size, c_in)).astype("float32"))
    ours = Conv2D(c_out, kernel, padding=padding, use_bias=False, dtype="mixed_bfloat16")
    theirs = keras.layers.Conv2D(c_out, kernel, padding=padding, use_bias=False, dtype="mixed_bfloat16")
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.linspace(-1.0, 1.0, c_out))
        results.append([y.numpy().astype("float32"), *(g.numpy() for g in tape.gradient(loss, [x, layer.kernel]))])
    (y_ours, dx_ours, dk_ours), (y_theirs, dx_theirs, dk_theirs) = results
    np.testing.assert_array_equal(y_ours, y_theirs)
    np.testing.assert_array_equal(dx_ours, dx_theirs)
    # Both round a float32 sum to bfloat16 (8 significant bits), in different orders.
    np.testing.assert_allclose(dk_ours, dk_theirs, atol=1e-2 * np.abs(dk_theirs).max())

    ops = kernel_gradient_op_types(ours, x)
    assert "Conv2DBackpropFilter" not in ops, sorted(ops)


@pytest.mark.parametrize("dtype,size,c_in", [("float32", 4, 256), ("mixed_bfloat16", 16, 256), ("mixed_bfloat16", 4, 32)])
def test_conv2d_keeps_tensorflows_kernel_gradient_elsewhere(dtype, size, c_in):
    """float32, large feature maps and narrow layers use TensorFlow's own weight-gradient kernel."""
    from keras_cnn.models.layers import Conv2D

    layer = Conv2D(128, 3, padding="same", dtype=dtype)
    x = tf.zeros([2, size, size, c_in])
    layer.build(x.shape)

    assert "Conv2DBackpropFilter" in kernel_gradient_op_types(layer, x)


def kernel_gradient_op_types(layer, x):
    """The op types in the traced graph of the layer's kernel gradient."""

    def kernel_grad(inputs):
        with tf.GradientTape() as tape:
            out = layer(inputs)
        return tape.gradient(out, layer.kernel)

    return {op.type for op in tf.function(kernel_grad).get_concrete_function(x).graph.get_operations()}
