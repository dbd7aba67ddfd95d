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


def copy_tree(src, dst):
    shutil.copytree(src, dst)
    return pathlib.Path(dst)
