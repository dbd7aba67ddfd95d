"""Shared fixtures: the committed real-data fixtures (tests/data), one trained model per session,
and two logical CPU devices.

Every test runs on tests/data unless it carries the `shared_data` marker (it needs the full sets
in ../shared/data); those are deselected, not skipped, where the full sets are absent.
"""

import os
import pathlib
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two replicas on a machine without GPUs: split the CPU before TensorFlow initialises,
# as Keras's own distribute tests do.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data"
SHARED_DATA = ROOT.parent / "shared" / "data"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# The longest files first: with `--dist loadfile` a worker takes the next file when it is free, so a
# long file collected last (test_readme.py, alphabetically) would run alone at the end.
LONGEST_FIRST = [
    "test_readme.py",
    "test_backbones.py",
    "test_tuning.py",
    "test_signals.py",
    "test_models.py",
    "test_processes.py",
    "test_tracking.py",
    "test_faults.py",
    "test_every_model.py",
    "test_photo_folder.py",
    "test_train.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file is kept
    if (SHARED_DATA / "mnist" / "train.npz").exists():
        return
    deselected = [item for item in items if item.get_closest_marker("shared_data")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("shared_data")]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never write to the user's ~/.cache/keras_cnn."""
    monkeypatch.setenv("KERAS_CNN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def mnist_npz():
    """600 real MNIST training images (60 per digit) as a Keras-style .npz file."""
    return FIXTURES / "mnist" / "train.npz"


@pytest.fixture(scope="session")
def mnist_small():
    """The folder holding mnist_npz, as `--data-dir` takes it."""
    return FIXTURES / "mnist"


@pytest.fixture(scope="session")
def mnist_full():
    """The full 60,000-image MNIST training set (tests using it are marked shared_data)."""
    return SHARED_DATA / "mnist"


@pytest.fixture(scope="session")
def cifar_folder():
    """300 real CIFAR-10 JPEGs (30 per class) in an image-folder tree (root/<class>/*.jpg)."""
    return FIXTURES / "cifar10" / "train"


@pytest.fixture
def writable_copy(tmp_path):
    """copy(src) -> a fresh copy of a fixture folder under tmp_path (fixtures stay read-only)."""

    def copy(src, name=None):
        dst = tmp_path / (name or pathlib.Path(src).name)
        shutil.copytree(src, dst)
        return dst

    return copy


def child_env(**extra):
    """Environment for a subprocess under test: quiet TF, unbuffered output, and none of the
    variables (TF_CONFIG, KERAS_CNN_FAULT) that would turn it into a worker or make it kill itself."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    for name in ("TF_CONFIG", "KERAS_CNN_FAULT"):
        env.pop(name, None)
    env.update(extra)
    return env


def mnist_config(data_dir, output_dir, *overrides):
    """MNIST MLP 784-128-10, SGD+Nesterov, cosine, 3 epochs; overrides are --set strings.

    float32, as the mnist-mlp preset: `auto` would pick bfloat16 on AVX512-BF16/AMX CPUs and not on
    others, and the tests' thresholds and float32-serving parity checks must hold on either."""
    from keras_cnn.config import TrainConfig, apply_overrides

    return apply_overrides(
        TrainConfig(),
        [
            "data.dataset=mnist",
            f"data.data_dir={data_dir}",
            f"run.output_dir={output_dir}",
            "model.name=mlp",
            "model.hidden=128",
            "optimizer.name=sgd",
            "optimizer.learning_rate=0.1",
            "optimizer.nesterov=true",
            "schedule.name=cosine",
            "run.epochs=3",
            "run.precision=float32",
            *overrides,
        ],
    )


def tiny_run(name, data, out, *extra):
    """Two steps of batch 8 of model `name` on the CIFAR folder fixture (16 train, 8 validation), Adam."""
    from keras_cnn.config import TrainConfig, apply_overrides

    return apply_overrides(
        TrainConfig(),
        [
            f"model.name={name}",
            "data.dataset=cifar10",
            f"data.data_dir={data}",
            "data.train_limit=16",
            "data.val_limit=8",
            "data.batch_size=8",
            "run.epochs=1",
            "run.steps_per_epoch=2",
            "run.precision=float32",
            f"run.output_dir={out}",
            "optimizer.name=adam",
            "optimizer.learning_rate=0.001",
            *extra,
        ],
    )


@pytest.fixture(scope="session")
def trained_mlp(mnist_small, tmp_path_factory):
    """The session's trained MLP: 784-128-10 on the 600-image MNIST fixture, 5 epochs of batch 32, EMA on."""
    import keras_cnn

    out = tmp_path_factory.mktemp("runs")
    cfg = mnist_config(mnist_small, out, "ema.enabled=true", "ema.decay=0.9", "run.epochs=5", "data.batch_size=32")
    return keras_cnn.train(cfg, verbose=0)


@pytest.fixture(scope="session")
def trained_cifar(cifar_folder, tmp_path_factory):
    """A few steps of ResNet-20 (identity shortcuts, BN, EMA, default precision) on real CIFAR JPEGs."""
    import keras_cnn
    from keras_cnn.config import TrainConfig, apply_overrides

    cfg = apply_overrides(
        TrainConfig(),
        [
            "data.dataset=cifar10",
            f"data.data_dir={cifar_folder}",
            f"run.output_dir={tmp_path_factory.mktemp('runs')}",
            "model.name=resnet20",
            "model.shortcut=identity",
            "data.batch_size=32",
            "run.epochs=1",
            "run.steps_per_epoch=4",
            "ema.enabled=true",
            "ema.decay=0.9",
            "data.crop_padding=4",
            "data.flip=true",
        ],
    )
    return keras_cnn.train(cfg, verbose=0)
