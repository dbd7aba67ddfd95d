"""Shared fixtures: small real datasets cut from ../shared/data, and two logical CPU devices."""
import os
import pathlib
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

# Two replicas on a machine without GPUs: split the CPU before TensorFlow initialises,
# as Keras's own distribute tests do.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def require_shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA}")


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory):
    """The first 2,000 real MNIST training images as a Keras-style .npz file."""
    require_shared_data()
    with np.load(SHARED_DATA / "mnist" / "train.npz") as f:
        x, y = f["x_train"][:2000], f["y_train"][:2000]
    path = tmp_path_factory.mktemp("mnist") / "mnist_small.npz"
    np.savez(path, x_train=x, y_train=y)
    return path


@pytest.fixture(scope="session")
def mnist_full():
    require_shared_data()
    return SHARED_DATA / "mnist"


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory):
    """30 real CIFAR-10 JPEGs per class in an image-folder tree (root/<class>/*.jpg)."""
    require_shared_data()
    root = tmp_path_factory.mktemp("cifar_small")
    for name in CIFAR_CLASSES:
        source = SHARED_DATA / "cifar10" / "train" / name
        (root / name).mkdir()
        for f in sorted(os.listdir(source))[:30]:
            shutil.copy(source / f, root / name / f)
    return root


def child_env(**extra):
    """Environment for a subprocess under test: quiet TF, unbuffered output, and none of the
    variables (TF_CONFIG, KERAS_CNN_FAULT) that would turn it into a worker or make it kill itself."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    for name in ("TF_CONFIG", "KERAS_CNN_FAULT"):
        env.pop(name, None)
    env.update(extra)
    return env


def copy_tree(src, dst):
    shutil.copytree(src, dst)
    return pathlib.Path(dst)


def mnist_config(data_dir, output_dir, *overrides):
    """MNIST MLP 784-128-10, SGD+Nesterov, cosine, 3 epochs; overrides are --set strings."""
    from keras_cnn.config import TrainConfig, apply_overrides

    return apply_overrides(
        TrainConfig(),
        [
            "data.dataset=mnist", f"data.data_dir={data_dir}", f"run.output_dir={output_dir}",
            "model.name=mlp", "model.hidden=128", "optimizer.name=sgd", "optimizer.learning_rate=0.1",
            "optimizer.nesterov=true", "schedule.name=cosine", "run.epochs=3",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def trained_mlp(mnist_full, tmp_path_factory):
    """The one real training run of the session: MNIST MLP 784-128-10, 3 epochs, EMA on."""
    import keras_cnn

    out = tmp_path_factory.mktemp("runs")
    cfg = mnist_config(mnist_full, out, "ema.enabled=true")
    return keras_cnn.train(cfg)




@pytest.fixture(scope="session")
def trained_cifar(cifar_folder, tmp_path_factory):
    """A few steps of ResNet-20 (identity shortcuts, BN, EMA, default precision) on real CIFAR JPEGs."""
    import keras_cnn
    from keras_cnn.config import TrainConfig, apply_overrides

    cfg = apply_overrides(TrainConfig(), [
        "data.dataset=cifar10", f"data.data_dir={cifar_folder}", f"run.output_dir={tmp_path_factory.mktemp('runs')}",
        "model.name=resnet20", "model.shortcut=identity", "data.batch_size=32", "run.epochs=1", "run.steps_per_epoch=4",
        "ema.enabled=true", "ema.decay=0.9", "data.crop_padding=4", "data.flip=true",
    ])
    return keras_cnn.train(cfg)
