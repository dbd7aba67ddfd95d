"""Each speed kernel computes what the plain Keras path computes; the switch turns them all off."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn import hardware, kernels
from keras_cnn.kernels import SGD, BatchNorm, Conv2D, conv


def op_types(fn, *args):
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


def batch_norm_pair(policy):
    ours = BatchNorm(momentum=0.9, epsilon=1e-5, dtype=policy)
    theirs = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=policy)
    return ours, theirs


@pytest.mark.parametrize("policy,tol", [("float32", 1e-4), ("mixed_bfloat16", 3e-2)])
def test_fused_batch_norm_matches_keras_batch_norm(policy, tol):
    """Same outputs, moving statistics and gradients as keras.layers.BatchNormalization."""
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=(8, 5, 5, 6)).astype("float32"))
    ours, theirs = batch_norm_pair(policy)
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

    def as32(t):
        return t.numpy().astype("float32")

    np.testing.assert_allclose(as32(ours(x, training=True)), as32(theirs(x, training=True)), atol=tol, rtol=tol)
    np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.moving_mean.numpy(), rtol=1e-3)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=tol)
    np.testing.assert_allclose(as32(ours(x, training=False)), as32(theirs(x, training=False)), atol=tol, rtol=tol)
    for g_ours, g_theirs in zip(*grads):
        np.testing.assert_allclose(g_ours, g_theirs, atol=tol * 10, rtol=tol)

    def step(inputs):  # ... and it really is the fused kernel, forward and backward
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = ours(inputs, training=True)
        return tape.gradient(out, inputs)

    assert {"FusedBatchNormV3", "FusedBatchNormGradV3"} <= op_types(step, x)
    with kernels.disabled():
        assert "FusedBatchNormV3" not in op_types(step, x)


def kernel_gradient(layer, x):
    def grad(inputs):
        with tf.GradientTape() as tape:
            out = layer(inputs)
        return tape.gradient(out, layer.kernel)

    return grad


@pytest.fixture
def force_swap(monkeypatch):
    """The swap is gated on the hardware where it was measured; force it to test the numerics anywhere."""
    monkeypatch.setattr(conv, "FORCE_SWAP", True)


@pytest.mark.parametrize(
    "size,c_in,c_out,kernel,padding",
    [(4, 256, 256, 3, "same"), (8, 64, 128, 3, "same"), (4, 128, 96, 2, "same"), (6, 128, 128, 3, "valid")],
)
def test_conv2d_swapped_kernel_gradient_is_exact_to_bfloat16_rounding(size, c_in, c_out, kernel, padding, force_swap):
    """Output and input gradient bit-identical to keras.layers.Conv2D; the kernel gradient within
    bfloat16 rounding of the float64 gradient of the same bfloat16 inputs. (Keras's own bfloat16
    kernel gradient is not the reference: on AVX2-only CPUs it is off by up to 4% of its largest entry.)"""
    x = tf.constant(np.random.default_rng(0).normal(size=(16, size, size, c_in)).astype("float32"))
    ours = Conv2D(c_out, kernel, padding=padding, use_bias=False, dtype="mixed_bfloat16")
    theirs = keras.layers.Conv2D(c_out, kernel, padding=padding, use_bias=False, dtype="mixed_bfloat16")
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    weights = tf.linspace(-1.0, 1.0, c_out)
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
        results.append([y.numpy().astype("float32"), *(g.numpy() for g in tape.gradient(loss, [x, layer.kernel]))])
    (y_ours, dx_ours, dk_ours), (y_theirs, dx_theirs, _) = results
    np.testing.assert_array_equal(y_ours, y_theirs)
    np.testing.assert_array_equal(dx_ours, dx_theirs)
    x16 = tf.cast(tf.cast(x, tf.bfloat16), tf.float64)
    dy = tf.cast(tf.cast(tf.broadcast_to(weights, y_ours.shape), tf.bfloat16), tf.float64)
    exact = tf.raw_ops.Conv2DBackpropFilter(
        input=x16,
        filter_sizes=[kernel, kernel, c_in, c_out],
        out_backprop=dy,
        strides=[1, 1, 1, 1],
        padding=padding.upper(),
    ).numpy()
    np.testing.assert_allclose(dk_ours, exact, atol=8e-3 * np.abs(exact).max())
    assert "Conv2DBackpropFilter" not in op_types(kernel_gradient(ours, x), x)
    with kernels.disabled():
        assert "Conv2DBackpropFilter" in op_types(kernel_gradient(ours, x), x)


@pytest.mark.parametrize(
    "dtype,size,c_in", [("float32", 4, 256), ("mixed_bfloat16", 16, 256), ("mixed_bfloat16", 4, 32)]
)
def test_conv2d_keeps_tensorflows_kernel_gradient_off_the_measured_shapes(dtype, size, c_in, force_swap):
    """float32, large feature maps and narrow layers use TensorFlow's own weight-gradient kernel."""
    layer = Conv2D(128, 3, padding="same", dtype=dtype)
    x = tf.zeros([2, size, size, c_in])
    layer.build(x.shape)
    assert "Conv2DBackpropFilter" in op_types(kernel_gradient(layer, x), x)


def test_conv2d_swap_runs_only_on_the_hardware_where_it_was_measured():
    """AVX512-BF16 without AMX and without a GPU: elsewhere (AVX2, AMX, GPUs) TensorFlow's kernel runs."""
    flags = hardware.cpu_flags()
    expected = "avx512_bf16" in flags and "amx_bf16" not in flags and not hardware.gpu_capabilities()
    assert conv.swap_measured_here() == expected
    layer = Conv2D(256, 3, padding="same", dtype="mixed_bfloat16")
    x = tf.zeros([2, 4, 4, 256])
    layer.build(x.shape)
    assert ("Conv2DBackpropFilter" not in op_types(kernel_gradient(layer, x), x)) == expected


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_sgd_matches_keras_sgd(strategy_name, nesterov):
    """The one-kernel momentum update gives Keras's SGD weights bit for bit, under either strategy."""
    from keras_cnn.training.strategy import get_strategy

    strategy = get_strategy(strategy_name)
    rng = np.random.default_rng(0)
    start = rng.normal(size=(6, 4)).astype("float32")
    grads = [rng.normal(size=(6, 4)).astype("float32") for _ in range(4)]
    finals = []
    for cls in (SGD, keras.optimizers.SGD):
        with strategy.scope():
            w = keras.Variable(start)
            opt = cls(learning_rate=0.1, momentum=0.9, nesterov=nesterov)
            opt.build([w])

        @tf.function
        def step(g):
            def replica(g):
                # Each replica contributes g / replicas, so the all-reduced gradient is g.
                opt.apply_gradients([(g / strategy.num_replicas_in_sync, w)])

            strategy.run(replica, args=(g,))

        for g in grads:
            step(tf.constant(g))
        finals.append(w.numpy())
    assert not np.allclose(finals[0], start)
    np.testing.assert_array_equal(finals[0], finals[1])


def test_fused_sgd_uses_one_op_and_the_switch_restores_kerass_update():
    w = keras.Variable(np.ones((3, 3), "float32"))
    opt = SGD(learning_rate=0.1, momentum=0.9)
    opt.build([w])

    def step(g):
        opt.apply_gradients([(g, w)])
        return w.value

    g = tf.ones((3, 3))
    assert "ResourceApplyKerasMomentum" in op_types(step, g)
    with kernels.disabled():
        assert "ResourceApplyKerasMomentum" not in op_types(step, g)


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_the_evaluation_pass_equals_the_models_own_numbers(strategy_name):
    # The Trainer's compiled evaluation (iterator loop, ragged last batch, replicas) against Keras directly.
    from keras_cnn.config import TrainConfig
    from keras_cnn.training.build import build_training
    from keras_cnn.training.strategy import get_strategy

    cfg = TrainConfig().replace(
        model={"name": "mlp", "options": {"hidden": (32,), "batch_norm": True}},
        data={"batch_size": 16},
        run={"precision": "float32", "strategy": strategy_name},
    )
    strategy = get_strategy(strategy_name)
    built = build_training(cfg, image_shape=(6, 6, 1), num_classes=7, steps_per_epoch=1, strategy=strategy)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6, 6, 1)).astype("float32"), rng.integers(0, 7, 50).astype("int32")
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    got = built.trainer.evaluate(dataset)
    logits = built.model(x, training=False).numpy()
    loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True).numpy().mean()
    top5 = np.mean([label in np.argsort(-row)[:5] for row, label in zip(logits, y)])
    np.testing.assert_allclose(
        [got["loss"], got["accuracy"], got["top5_accuracy"]], [loss, np.mean(logits.argmax(1) == y), top5], rtol=1e-5
    )
