"""Data beyond memory: placement (memory, disk, streamed), the decode cache, prepared shards, workers,
tf.data service, augmentation at real resolutions, 224-px models, and the faults of each."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_cnn
from keras_cnn.cli import prepare, train
from keras_cnn.config import DataConfig, TrainConfig, apply_overrides
from keras_cnn.data import decode, prepare_data, records, store
from keras_cnn.data.augment import center_crop, random_resized_crop
from keras_cnn.data.pipeline import make_dataset
from keras_cnn.data.sources import load_data, load_image_folder
from keras_cnn.data.splits import ArraySplit, FileSplit, MappedSplit


def batches(split, cfg, *, training, epoch=0, start=0, ctx=None, normalizer=None):
    return [
        (x.numpy(), y.numpy())
        for x, y in make_dataset(
            split, cfg, training=training, epoch=epoch, start_batch=start, input_context=ctx, normalizer=normalizer
        )
    ]


@pytest.fixture(scope="module")
def folder_split(cifar_folder):
    return load_image_folder(str(cifar_folder)).train


# ------------------------------------------------------------------------------ placement


@pytest.mark.parametrize("augmentation", ["standard", "tf_tutorial"])
def test_memory_disk_and_streamed_placements_give_the_same_batches(folder_split, augmentation):
    cfg = DataConfig(batch_size=32, crop_padding=4, flip=True, cutout=4, augmentation=augmentation, crop_size=24)
    memory, disk = (
        store.place(folder_split, DataConfig(cache="memory")),
        store.place(folder_split, DataConfig(cache="disk")),
    )
    assert isinstance(memory, ArraySplit) and isinstance(disk, MappedSplit)
    for training in (True, False):
        reference = batches(memory, cfg, training=training)
        for other in (disk, folder_split):
            got = batches(other, cfg, training=training)
            assert len(got) == len(reference)
            for (xa, ya), (xb, yb) in zip(reference, got):
                np.testing.assert_array_equal(ya, yb)
                np.testing.assert_allclose(xa, xb, atol=1e-6)


def test_auto_streams_what_does_not_fit_the_memory_budget(cifar_folder):
    fits = prepare_data(DataConfig(dataset="cifar10", data_dir=str(cifar_folder)))
    over = prepare_data(DataConfig(dataset="cifar10", data_dir=str(cifar_folder), memory_budget="100KB"))
    assert isinstance(fits.train, ArraySplit) and isinstance(over.train, FileSplit)
    assert len(over.train) == len(fits.train) and over.train.labels.tolist() == fits.train.labels.tolist()
    np.testing.assert_allclose(over.normalizer.mean, fits.normalizer.mean, rtol=0.05)  # a sample's statistics


def test_the_decode_cache_serves_a_second_run_and_is_rebuilt_when_files_change(
    cifar_folder, tmp_path, monkeypatch, caplog
):
    folder = tmp_path / "imgs"
    shutil.copytree(cifar_folder, folder)
    first = store.place(load_image_folder(str(folder)).train, DataConfig(cache="memory"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(store, "decode_files", no_decoding)
        again = store.place(load_image_folder(str(folder)).train, DataConfig(cache="memory"))
    np.testing.assert_array_equal(first.images, again.images)
    cached = sorted((tmp_path.parent / "cache").rglob("*.npy")) or sorted(
        os.path.join(d, f) for d, _, fs in os.walk(os.environ["KERAS_CNN_CACHE_DIR"]) for f in fs if f.endswith(".npy")
    )
    assert cached and not list(folder.rglob("*.npy"))  # in the cache folder, never in the data folder
    changed = folder / "cat" / "0000.jpg"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(changed)
    rebuilt = store.place(load_image_folder(str(folder)).train, DataConfig(cache="memory"))
    index = list(load_image_folder(str(folder)).train.paths).index(str(changed))
    assert rebuilt.images[index].max() == 0 and first.images[index].max() > 0
    # A damaged entry is decoded again, never used.
    entry = max(cached, key=os.path.getmtime)
    with open(entry, "wb") as f:
        f.write(b"garbage")
    with caplog.at_level("WARNING"):
        store.place(load_image_folder(str(folder)).train, DataConfig(cache="memory"))


def test_a_streamed_epoch_resumes_at_a_batch_exactly(folder_split):
    cfg = DataConfig(batch_size=32, augmentation="random_resized_crop", flip=True, image_size=(32, 32))
    whole = batches(folder_split, cfg, training=True, epoch=2)[:8]
    resumed = batches(folder_split, cfg, training=True, epoch=2, start=3)[:5]
    for (xa, ya), (xb, yb) in zip(whole[3:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other_epoch = batches(folder_split, cfg, training=True, epoch=3)[0]
    assert not np.array_equal(whole[0][0], other_epoch[0])


# ------------------------------------------------------------------------- prepared shards


@pytest.fixture(scope="module")
def prepared(cifar_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "cifar10"
    assert prepare.main([str(cifar_folder.parent), str(out), "--shard-size", "60KB", "--quiet"]) == 0
    return out


def test_prepare_writes_shards_labels_and_a_manifest(prepared, cifar_folder):
    manifest = records.read_manifest(prepared)
    train = manifest["splits"]["train"]
    assert manifest["class_names"][:2] == ["airplane", "automobile"] and manifest["image_shape"] == [32, 32, 3]
    assert train["count"] == 300 and len(train["shards"]) >= 4 and sum(s["count"] for s in train["shards"]) == 300
    assert {"mean", "std"} <= set(manifest["normalization"]) and manifest["source"].startswith("image_folder:")
    labels = [np.load(prepared / train["labels"])[s] for s in range(300)]
    first_shard = list(tf.data.TFRecordDataset(str(prepared / train["shards"][0]["file"])).map(records._parse).take(20))
    assert len({int(label) for _, _, label in first_shard}) >= 5  # shuffled before sharding: classes mixed
    assert [int(label) for _, _, label in first_shard] == [int(labels[int(i)]) for i, _, _ in first_shard]


def test_shards_decode_to_the_folders_pixels_and_split_alike(prepared, cifar_folder):
    shards = prepare_data(DataConfig(dataset="cifar10", data_dir=str(prepared)))
    folder = prepare_data(DataConfig(dataset="cifar10", data_dir=str(cifar_folder.parent)))
    assert isinstance(shards.train, records.RecordSplit)
    assert sorted(np.bincount(shards.validation.labels)) == sorted(np.bincount(folder.validation.labels))
    images = shards.train.sample(4)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    # The same file bytes, so the same pixels: find one record's source by content.
    folder_images = store.place(load_image_folder(str(cifar_folder)).train, DataConfig(cache="memory")).images
    assert any(np.array_equal(images[0], f) for f in folder_images)


def test_a_prepare_interrupted_after_some_shards_resumes(cifar_folder, tmp_path):
    out = tmp_path / "p"
    assert prepare.main([str(cifar_folder.parent), str(out), "--shard-size", "60KB", "--quiet"]) == 0
    manifest = records.read_manifest(out)
    first = out / manifest["splits"]["train"]["shards"][0]["file"]
    (out / "manifest.json").unlink()
    records.write_json(out / "progress.json", {s["file"]: s for s in manifest["splits"]["train"]["shards"][:1]})
    for shard in manifest["splits"]["train"]["shards"][1:]:
        (out / shard["file"]).unlink()
    stamp = first.stat().st_mtime_ns
    assert prepare.main([str(cifar_folder.parent), str(out), "--shard-size", "60KB", "--quiet"]) == 0
    assert first.stat().st_mtime_ns == stamp and records.read_manifest(out) == manifest  # kept, then completed


DAMAGE = {
    "a missing shard": (lambda out, m: (out / m["splits"]["train"]["shards"][1]["file"]).unlink(), "is missing"),
    "a truncated shard": (
        lambda out, m: _truncate(out / m["splits"]["train"]["shards"][1]["file"]),
        "bytes, the manifest says",
    ),
    "a flipped byte": (
        lambda out, m: _flip(out / m["splits"]["train"]["shards"][2]["file"]),
        "does not match its checksum",
    ),
    "a manifest that miscounts": (
        lambda out, m: _edit(out, lambda d: d["splits"]["train"].__setitem__("count", 999)),
        "the manifest says 999",
    ),
    "a manifest of another format": (
        lambda out, m: _edit(out, lambda d: d.__setitem__("format", "other/9")),
        "not a keras_cnn prepared",
    ),
    "a lost labels file": (lambda out, m: (out / "train-labels.npy").unlink(), "train-labels.npy"),
}


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-10])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit(out, change):
    manifest = json.loads((out / "manifest.json").read_text())
    change(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_prepared_data_is_one_line_naming_the_file(case, prepared, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(prepared, out)
    damage, needle = DAMAGE[case]
    damage(out, records.read_manifest(out))
    rc = train.main(
        [
            "--model",
            "linear",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(out),
            "--output-dir",
            str(tmp_path / "runs"),
            "--epochs",
            "1",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ workers


@pytest.mark.parametrize("source", ["shards", "files"])
def test_workers_read_disjoint_parts_and_together_see_each_example_once(source, prepared, folder_split):
    split = records.load_records(str(prepared))[0]["train"] if source == "shards" else folder_split
    cfg = DataConfig(batch_size=20)
    steps = len(split) // cfg.batch_size
    seen = []
    for worker in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        got = (
            batches(split, cfg, training=True, ctx=ctx)[:steps]
            if source == "files"
            else [
                (x.numpy(), y.numpy())
                for (x, y), _ in zip(make_dataset(split, cfg, training=True, input_context=ctx), range(steps))
            ]
        )
        assert len(got) == steps  # every worker has its full count of steps (else the all-reduce would hang)
        seen.append(np.concatenate([x.reshape(len(x), -1) for x, _ in got]))
    fingerprints = [{row.tobytes() for row in part} for part in seen]
    assert not fingerprints[0] & fingerprints[1]  # no example on both workers
    assert len(fingerprints[0] | fingerprints[1]) == 2 * steps * 10  # none seen twice within a worker either


def test_training_through_a_tf_data_service_with_two_workers(cifar_folder, tmp_path):
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address)) for _ in range(2)]
    cfg = apply_overrides(
        TrainConfig(),
        [
            f"data.data_dir={cifar_folder}",
            "data.dataset=cifar10",
            "model.name=linear",
            f"run.output_dir={tmp_path}",
            "run.epochs=2",
            "data.batch_size=32",
            "data.cache=none",
            f"data.service={dispatcher.target}",
        ],
    )
    result = keras_cnn.train(cfg, verbose=0)
    assert result.status == "finished" and len(result.history) == 2 and workers


# ------------------------------------------------------------------ augmentation and models


def test_random_resized_crops_are_seeded_windows_of_the_image():
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8))
    a = random_resized_crop(images, (0.08, 1.0), (0.75, 1.333), tf.constant([1, 2], tf.int64))
    b = random_resized_crop(images, (0.08, 1.0), (0.75, 1.333), tf.constant([1, 2], tf.int64))
    assert a.shape == images.shape and a.dtype == tf.uint8
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    whole = random_resized_crop(images, (1.0, 1.0), (1.0, 1.0), tf.constant([1, 2], tf.int64))
    np.testing.assert_allclose(whole.numpy(), images.numpy(), atol=1)  # the whole image: unchanged
    assert center_crop(images, 1.0) is images and center_crop(images, 0.5).shape == images.shape


def test_the_fused_streaming_crop_decodes_only_its_window(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.jpg", quality=95)
    contents = tf.io.read_file(str(tmp_path / "x.jpg"))
    crop = decode.decode_random_crop(
        contents, 3, (48, 48), tf.constant([3, 4], tf.int64), (0.2, 0.5), (0.75, 1.333), True
    )
    again = decode.decode_random_crop(
        contents, 3, (48, 48), tf.constant([3, 4], tf.int64), (0.2, 0.5), (0.75, 1.333), True
    )
    assert crop.shape == (48, 48, 3) and np.array_equal(crop.numpy(), again.numpy())


def test_the_tutorial_preset_trains_24px_crops_and_its_export_takes_whole_images(cifar_folder, tmp_path):
    from keras_cnn.presets import preset

    cfg = apply_overrides(
        preset("cifar10-alexnet-tutorial-smoke"),
        [f"data.data_dir={cifar_folder}", f"run.output_dir={tmp_path}", "run.precision=float32"],
    )  # serving computes in float32
    result = keras_cnn.train(cfg, verbose=0)
    assert result.model.input_shape == (None, 24, 24, 3)
    serve = tf.saved_model.load(os.path.join(result.run_dir, "saved_model", "1")).signatures["serving_default"]
    image = np.asarray(Image.open(cifar_folder / "cat" / "0000.jpg"))[None]
    probabilities = serve(images=tf.constant(image))["probabilities"].numpy()
    x = tf.image.per_image_standardization(tf.cast(image[:, 4:28, 4:28, :], tf.float32))  # central 24x24 crop
    expected = tf.nn.softmax(result.model(x, training=False)).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


@pytest.fixture(scope="module")
def photos_224(cifar_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for c in sorted(os.listdir(cifar_folder))[:4]:
        (root / c).mkdir()
        for f in sorted(os.listdir(cifar_folder / c))[:4]:
            Image.open(cifar_folder / c / f).resize((224, 224), Image.BICUBIC).save(root / c / f, quality=90)
    return root


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "alexnet",
        "vgg11",
        pytest.param("resnet34", marks=pytest.mark.slow),
        pytest.param("vgg16", marks=pytest.mark.slow),
        pytest.param("vgg19", marks=pytest.mark.slow),
    ],
)
def test_models_train_from_a_224px_folder(name, photos_224, tmp_path):
    cfg = apply_overrides(
        TrainConfig(),
        [
            f"data.data_dir={photos_224}",
            "data.dataset=photos",
            f"model.name={name}",
            f"run.output_dir={tmp_path}",
            "run.epochs=1",
            "data.batch_size=4",
            "data.val_size=4",
            "data.cache=none",
            "data.augmentation=random_resized_crop",
            "data.flip=true",
            "data.eval_crop=0.875",
            "run.steps_per_epoch=2",
            "run.export=false",
        ],
    )
    result = keras_cnn.train(cfg, verbose=0)
    assert result.status == "finished" and result.model.input_shape == (None, 224, 224, 3)
    assert json.load(open(os.path.join(result.run_dir, "config.json")))["data"]["placement"] == "FileSplit"


def test_a_data_service_refuses_an_in_memory_set(mnist_small, tmp_path, capsys):
    rc = train.main(
        [
            "--model",
            "linear",
            "--data-dir",
            str(mnist_small),
            "--output-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--data-service",
            "grpc://localhost:1",
            "--quiet",
        ]
    )
    assert rc == 2 and "needs a streamed dataset" in capsys.readouterr().err


def test_a_memory_budget_that_is_not_a_size_is_one_line(cifar_folder, tmp_path, capsys):
    rc = train.main(
        [
            "--model",
            "linear",
            "--data-dir",
            str(cifar_folder),
            "--output-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--set",
            "data.memory_budget=lots",
            "--quiet",
        ]
    )
    assert rc == 2 and "is not a size" in capsys.readouterr().err
    assert load_data is not None
