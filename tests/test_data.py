"""The data layer on small real data: every source, the split, the pipeline, and bad input."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_cnn.cli import benchmark
from keras_cnn.cli import train as train_cli
from keras_cnn.config import DataConfig
from keras_cnn.data import Normalizer, decode, prepare_data
from keras_cnn.data.normalization import channel_moments
from keras_cnn.data.pipeline import make_dataset
from keras_cnn.data.sources import DATA_ROOT_ENV, load_data, load_image_folder, load_npz, load_tfds
from keras_cnn.data.split import stratified_split
from keras_cnn.data.store import place
from keras_cnn.errors import UsageError

from conftest import CIFAR_CLASSES

# ------------------------------------------------------------------------ sources


def test_npz_file_and_directory(mnist_npz, tmp_path):
    data = load_npz(str(mnist_npz), "mnist")
    assert data.train.images.shape == (600, 28, 28, 1) and data.train.images.dtype == np.uint8
    assert data.class_names == [str(d) for d in range(10)]
    directory = tmp_path / "mnist"
    directory.mkdir()
    with np.load(mnist_npz) as f:
        np.savez(directory / "train.npz", x_train=f["x_train"][:100], y_train=f["y_train"][:100])
        np.savez(directory / "test.npz", x_test=f["x_train"][100:150], y_test=f["y_train"][100:150])
    data = load_data("mnist", str(directory))
    assert len(data.train) == 100 and len(data.test) == 50


def test_image_folder_with_and_without_split_folders(cifar_folder, tmp_path):
    flat = load_image_folder(str(cifar_folder))
    assert flat.class_names == CIFAR_CLASSES
    assert flat.train.image_shape == (32, 32, 3) and len(flat.train) == 300
    assert np.bincount(flat.train.labels).tolist() == [30] * 10
    # Pixels equal PIL's decoding of the same file (TensorFlow's accurate-IDCT JPEG decoder, as served).
    decoded = place(flat.train, DataConfig(cache="memory"))
    first = sorted(os.listdir(cifar_folder / "airplane"))[0]
    np.testing.assert_array_equal(decoded.images[0], np.asarray(Image.open(cifar_folder / "airplane" / first)))
    split_root = tmp_path / "split"
    shutil.copytree(cifar_folder, split_root / "train")
    (split_root / "val" / "cat").mkdir(parents=True)
    shutil.copy(cifar_folder / "cat" / sorted(os.listdir(cifar_folder / "cat"))[0], split_root / "val" / "cat")
    data = load_image_folder(str(split_root))
    assert len(data.train) == 300 and len(data.validation) == 1
    assert data.validation.labels.tolist() == [CIFAR_CLASSES.index("cat")]


def test_shared_cifar_folder_resolves_through_env(monkeypatch, tmp_path, cifar_folder):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    os.symlink(cifar_folder, tmp_path / "cifar10")
    data = load_data("cifar10")
    assert data.description.startswith("image_folder:") and len(data.train) == 300


def test_tfds_catalog_through_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24):
        data = load_tfds("mnist", None)
        assert data.train.images.shape == (24, 28, 28, 1)
        assert data.train.images.dtype == np.uint8 and data.num_classes == 10
        prepared = prepare_data(DataConfig(dataset="mnist", val_size=4))
    assert len(prepared.train) == 20 and len(prepared.validation) == 4


def test_missing_everywhere_names_where_it_looked(monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.setattr("keras_cnn.data.sources._online", lambda *a, **k: False)
    with pytest.raises(UsageError, match=r"looked in: --data-dir \(not given\); \$KERAS_CNN_DATA_DIR \(unset\); TFDS"):
        load_data("cifar10")


# -------------------------------------------------------------------------- split


def test_split_is_seeded_disjoint_and_stratified():
    labels = np.repeat(np.arange(10), 100)
    train_a, val_a = stratified_split(labels, 200, seed=1)
    train_b, val_b = stratified_split(labels, 200, seed=1)
    _, val_c = stratified_split(labels, 200, seed=2)
    np.testing.assert_array_equal(val_a, val_b)
    assert not np.array_equal(val_a, val_c)
    assert len(np.intersect1d(train_a, val_a)) == 0 and len(train_a) + len(val_a) == 1000
    assert np.bincount(labels[val_a]).tolist() == [20] * 10


@pytest.mark.shared_data
def test_prepare_data_carves_default_validation_and_fits_training_stats(mnist_full):
    data = prepare_data(DataConfig(dataset="mnist", data_dir=str(mnist_full)))
    assert len(data.validation) == 10000 and len(data.train) == 50000 and data.val_size == 10000
    expected = data.train.images.astype(np.float64).mean()
    assert abs(data.normalizer.mean[0] - expected) < 1e-6


# ----------------------------------------------------------------------- pipeline


def small_split(cifar_folder):
    return place(load_image_folder(str(cifar_folder)).train, DataConfig(cache="memory"))


def test_evaluation_batches_are_untouched_by_augmentation(cifar_folder):
    split = small_split(cifar_folder)
    norm = Normalizer.fit(split.images)
    cfg = DataConfig(batch_size=64, crop_padding=4, flip=True, cutout=8)
    x, y = next(iter(make_dataset(split, cfg, training=False, normalizer=norm)))
    np.testing.assert_allclose(x.numpy(), norm(split.images[:64]).numpy(), atol=1e-5)
    np.testing.assert_array_equal(y.numpy(), split.labels[:64])
    xt, _ = next(iter(make_dataset(split, cfg, training=True, normalizer=norm)))
    assert xt.shape == x.shape and not np.allclose(xt.numpy(), x.numpy())


def test_training_order_and_augmentation_are_keyed_on_seed_and_epoch(cifar_folder):
    split = small_split(cifar_folder)
    cfg = DataConfig(batch_size=32, crop_padding=4, flip=True)

    def epoch(seed, e, start=0):
        return [b for b in make_dataset(split, cfg, training=True, seed=seed, epoch=e, start_batch=start)]

    a, b, c = epoch(0, 1), epoch(0, 1), epoch(0, 2)
    assert len(a) == 300 // 32  # ragged last batch dropped in training
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    assert not np.array_equal(a[0][1].numpy(), c[0][1].numpy())
    resumed = epoch(0, 1, start=3)  # a resumed epoch sees the remaining batches unchanged
    np.testing.assert_array_equal(resumed[0][0].numpy(), a[3][0].numpy())


def test_crop_and_flip_keep_pixels_from_the_padded_image():
    from keras_cnn.data.augment import crop_and_flip

    images = tf.reshape(tf.range(2 * 8 * 8, dtype=tf.int32) % 251 + 1, [2, 8, 8, 1])
    out = crop_and_flip(images, 0, True, tf.constant([3, 4])).numpy()
    for i in range(2):
        assert np.array_equal(out[i], images[i].numpy()) or np.array_equal(out[i], images[i].numpy()[:, ::-1])
    cropped = crop_and_flip(images, 2, False, tf.constant([1, 2])).numpy()
    assert set(np.unique(cropped)) <= set(np.unique(images.numpy())) | {0}


def test_shards_are_disjoint_and_cover_the_epoch(cifar_folder):
    split = small_split(cifar_folder)
    cfg = DataConfig(batch_size=20)
    seen = []
    for pipeline_id in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2)
        labels_and_pixels = [
            x.numpy().reshape(len(x), -1).sum(1) for x, _ in make_dataset(split, cfg, training=True, input_context=ctx)
        ]
        seen.append(np.concatenate(labels_and_pixels))
    assert len(seen[0]) == len(seen[1]) == 150
    assert len(np.intersect1d(seen[0], seen[1])) < 3  # distinct images (sums can collide rarely)


def test_pipeline_benchmark_prints_images_per_sec(cifar_folder, capsys):
    rc = benchmark.main(
        ["--pipeline", "--dataset", "cifar10", "--data-dir", str(cifar_folder), "--epochs", "2", "--batch-size", "32"]
    )
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images_per_sec"] > 0 and result["train_images"] == 270


# ---------------------------------------------------------------------- bad input


def make_jpeg(path, size=(32, 32), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path, quality=90)


def folder(tmp_path, per_class=3, classes=("a", "b")):
    root = tmp_path / "imgs"
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            make_jpeg(root / name / f"{i}.jpg", seed=10 * c + i)
    return root


def run_train(argv, capsys):
    rc = train_cli.main(argv + ["--epochs", "1", "--model", "linear", "--set", "run.steps_per_epoch=1"])
    return rc, capsys.readouterr().err.strip()


def corrupt(root):
    (root / "a" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = (root / "b" / "0.jpg").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    return root


def test_corrupt_and_truncated_files_are_skipped_with_a_count(tmp_path, caplog):
    root = corrupt(folder(tmp_path))
    with caplog.at_level("WARNING"):
        split = load_image_folder(str(root)).train
        streamed = list(make_dataset(split, DataConfig(batch_size=16), training=False))
        decoded = place(split, DataConfig(cache="memory"))
    assert len(split) == 7 and "skipped 1 unreadable image" in caplog.text  # the garbage file: its header fails
    assert len(decoded) == 6 and "skipped 1 undecodable image" in caplog.text  # the truncated one: its data does
    assert sum(len(y) for _, y in streamed) == 6  # streaming drops it too


def test_grayscale_files_in_an_rgb_set_are_converted(tmp_path):
    root = folder(tmp_path)
    make_jpeg(root / "a" / "gray.jpg", mode="L")
    data = place(load_image_folder(str(root)).train, DataConfig(cache="memory"))
    assert data.images.shape == (7, 32, 32, 3)
    gray = data.images[3]
    assert np.array_equal(gray[..., 0], gray[..., 1])


def test_mixed_sizes_resize_by_flag(tmp_path):
    root = folder(tmp_path)
    make_jpeg(root / "a" / "big.jpg", size=(40, 36))
    resized = place(load_image_folder(str(root), image_size=(32, 32)).train, DataConfig(cache="memory"))
    assert resized.images.shape == (7, 32, 32, 3)


@pytest.mark.parametrize(
    "case,needle",
    [
        ("missing_dir", "does not exist"),
        ("empty_class", "holds no images"),
        ("corrupt_fatal", "cannot decode"),
        ("mixed_sizes", "mixes image sizes"),
        ("npz_keys", "lacks x_train"),
        ("labels_range", "labels outside 0..9"),
        ("one_class", "at least 2"),
        ("npz_garbage", "cannot read"),
    ],
)
def test_bad_data_is_one_line_and_exit_2(case, needle, tmp_path, capsys):
    extra = []
    if case == "missing_dir":
        path = tmp_path / "nope"
    elif case == "empty_class":
        path = folder(tmp_path)
        (path / "c").mkdir()
    elif case == "corrupt_fatal":
        path = corrupt(folder(tmp_path))
        extra = ["--set", "data.on_corrupt=error"]
    elif case == "mixed_sizes":
        path = folder(tmp_path)
        make_jpeg(path / "a" / "big.jpg", size=(40, 36))
    elif case == "npz_keys":
        path = tmp_path / "d.npz"
        np.savez(path, images=np.zeros((4, 8, 8), np.uint8))
    elif case == "labels_range":
        path = tmp_path / "d.npz"
        np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 1, 2, 12]))
    elif case == "one_class":
        path = folder(tmp_path, classes=("only",))
    else:
        path = tmp_path / "d.npz"
        path.write_bytes(b"garbage")
    rc, err = run_train(
        ["--dataset", "mnist", "--data-dir", str(path), "--output-dir", str(tmp_path / "runs")] + extra, capsys
    )
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_header_scans_are_remembered_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_CNN_CACHE_DIR", str(tmp_path / "cache"))
    paths = []
    for i, (h, w) in enumerate([(8, 8), (8, 8), (16, 12)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (w, h)).save(paths[-1])
    first = decode.scan_headers(paths)
    assert first == [((8, 8), True), ((8, 8), True), ((16, 12), True)]
    real, opened = decode._header, []
    monkeypatch.setattr(decode, "_header", lambda path: opened.append(path) or real(path))
    assert decode.scan_headers(paths) == first and opened == []  # from the cache folder
    Image.new("L", (5, 7)).save(paths[1])
    os.utime(paths[1], ns=(10**18, 10**18))
    assert decode.scan_headers(paths)[1] == ((7, 5), False) and opened == [paths[1]]  # only the changed file


def test_channel_moments_match_float64_statistics_chunk_by_chunk():
    images = np.random.default_rng(0).integers(0, 256, (50, 9, 7, 3), dtype=np.uint8)
    flat = images.reshape(-1, 3).astype(np.float64)
    for chunks in (
        [images],
        [images[:13], images[13:]],
        [images[:20].astype(np.float32), images[20:].astype(np.float32)],
    ):
        mean, std = channel_moments(chunks)
        np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-12)
        np.testing.assert_allclose(std, flat.std(0), rtol=1e-9)


def test_an_unusable_cache_folder_only_costs_the_header_scan_its_memory(tmp_path, monkeypatch):
    (tmp_path / "blocker").write_text("")  # a file where the cache folder would go
    monkeypatch.setenv("KERAS_CNN_CACHE_DIR", str(tmp_path / "blocker" / "cache"))
    Image.new("RGB", (4, 3)).save(tmp_path / "a.png")
    assert decode.scan_headers([str(tmp_path / "a.png")]) == [((3, 4), True)]
