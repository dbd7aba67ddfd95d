"""Prepared datasets: sharded TFRecords of encoded images with a manifest, as ImageNet's are.

    OUT_DIR/manifest.json                   format, class names, image shape, normalization statistics,
                                            source, and per split: count, labels file, shards
    OUT_DIR/train-00000-of-00004.tfrecord   tf.train.Example {image: encoded bytes, label, index}
    OUT_DIR/train-labels.npy                every record's label, in index order (for stratified splits)

Writing (`prepare`) is atomic per shard and resumable: a finished shard is recorded in
progress.json with its sha256 and kept by a rerun. Reading (`load_records`) checks every shard
against the manifest (size, and its sha256 once per file version, remembered in the cache folder),
then streams: shards in a per-epoch order, interleaved, filtered to the split, shuffled in a seeded
buffer; under several workers each keeps its 1/n of that stream (sharded by element, so every
example lands on exactly one worker).
"""

import dataclasses
import hashlib
import json
import logging
import os

import numpy as np
import tensorflow as tf

from keras_cnn.cache import cache_dir
from keras_cnn.console import ProgressLine
from keras_cnn.data.decode import as_written, decode_image
from keras_cnn.errors import UsageError
from keras_cnn.io import atomic_write, write_json

log = logging.getLogger("keras_cnn")
FORMAT = "keras_cnn-shards/1"
SHUFFLE_BUFFER = 4096
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "index": tf.io.FixedLenFeature([], tf.int64),
}


@dataclasses.dataclass
class RecordSplit:
    """Some records of one split of a prepared folder (`indices` into the split, in order)."""

    root: str
    name: str  # the manifest's split: train or test
    shards: list  # [(path, count)] in index order
    indices: np.ndarray
    labels: np.ndarray
    size: tuple
    channels: int

    def __len__(self):
        return len(self.labels)

    def take(self, positions):
        return dataclasses.replace(self, indices=self.indices[positions], labels=self.labels[positions])

    @property
    def image_shape(self):
        return (*self.size, self.channels)

    def mask(self):
        total = sum(count for _, count in self.shards)
        member = np.zeros(total, bool)
        member[self.indices] = True
        return member

    def _ordered(self):
        """This split's records in index order, decoded (for samples and evaluation)."""
        ds = tf.data.TFRecordDataset([p for p, _ in self.shards]).map(_parse)
        member = tf.constant(self.mask())
        ds = ds.filter(lambda index, image, label: tf.gather(member, index))
        return ds.map(
            lambda index, image, label: (decode_image(image, self.channels, self.size), tf.cast(label, tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def sample(self, n):
        images = [image for image, _ in self._ordered().take(n).batch(256).as_numpy_iterator()]
        return np.concatenate(images) if images else np.zeros((0, *self.image_shape), np.uint8)

    def batches(self, size):
        yield from self._ordered().batch(size).as_numpy_iterator()


def _parse(serialized):
    example = tf.io.parse_single_example(serialized, FEATURES)
    return example["index"], example["image"], example["label"]


def record_batches(split, batch_size, *, training, seed, epoch, input_context, start_batch, decoder=None):
    """uint8 batches streamed from the shards (see the module docstring)."""
    paths = [p for p, _ in split.shards]
    order = np.arange(len(paths))
    if training:
        order = np.random.default_rng([seed, epoch]).permutation(len(paths))
    workers = input_context.num_input_pipelines if input_context else 1
    files = tf.data.Dataset.from_tensor_slices([paths[i] for i in order])
    ds = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(4, len(order)),
        block_length=16,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).map(_parse)
    member = tf.constant(split.mask())
    ds = ds.filter(lambda index, image, label: tf.gather(member, index))
    if workers > 1:
        # Sharded by element, not by file: every worker reads the same deterministic stream and keeps
        # its 1/n, so each example lands on exactly one worker. Sharding by file would leave workers
        # with unequal counts (shards hold train and validation members in different mixes), and
        # evening them out means repeating examples. The cost is that every worker reads every file;
        # a tf.data service (--data-service) reads each file once for all of them.
        ds = ds.shard(workers, input_context.input_pipeline_id)
    if training:
        # Seeded per epoch, so a resumed epoch replays its order; cut to the same share on every
        # worker, since unequal step counts would hang the all-reduce.
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed * 100003 + epoch, reshuffle_each_iteration=False)
        ds = ds.take(len(split) // workers)
    ds = ds.skip(start_batch * batch_size)
    decoder = decoder or (lambda contents, index: decode_image(contents, split.channels, split.size))
    ds = ds.map(
        as_written(lambda index, image, label: (decoder(image, index), tf.cast(label, tf.int32))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.batch(batch_size, drop_remainder=training)


# ------------------------------------------------------------------------------- reading


def is_prepared(path):
    return os.path.isfile(os.path.join(path, "manifest.json"))


def read_manifest(root):
    path = os.path.join(root, "manifest.json")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {path} ({err}); prepare the folder again with scripts/prepare.py") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("splits"), dict)
    ):
        raise UsageError(
            f"{path} is not a keras_cnn prepared-data manifest ({FORMAT}); prepare it with scripts/prepare.py"
        )
    return manifest


def load_records(root, image_size=None):
    """{split: RecordSplit}, class names and a description, every shard checked against the manifest."""
    manifest = read_manifest(root)
    names = manifest["class_names"]
    shape = manifest.get("image_shape")
    if image_size is None and not shape:
        raise UsageError(f"{root} holds images of mixed sizes; pass --image-size HxW")
    size = tuple(image_size) if image_size is not None else tuple(shape[:2])
    channels = int(manifest["channels"])
    splits = {}
    for name, info in manifest["splits"].items():
        shards = []
        for shard in info["shards"]:
            path = os.path.join(root, shard["file"])
            verify_shard(path, shard)
            shards.append((path, int(shard["count"])))
        labels = _labels(root, info, name)
        if len(labels) != sum(c for _, c in shards) or len(labels) != info["count"]:
            raise UsageError(
                f"{root}: the {name} shards hold {sum(c for _, c in shards)} records, the manifest says "
                f"{info['count']} and the labels {len(labels)}; prepare the folder again"
            )
        splits[name] = RecordSplit(root, name, shards, np.arange(len(labels)), labels, size, channels)
    if "train" not in splits:
        raise UsageError(f"{root} has no train split; prepare it from a source with training data")
    return splits, names, f"prepared:{root} ({manifest.get('source', '?')})"


def _labels(root, info, name):
    path = os.path.join(root, info.get("labels", f"{name}-labels.npy"))
    try:
        return np.load(path, allow_pickle=False).astype(np.int32)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {path} ({err}); prepare the folder again") from None


def verify_shard(path, shard):
    """The shard is the one the manifest lists: its size always, its sha256 once per file version."""
    if not os.path.isfile(path):
        raise UsageError(f"shard {path} is missing; prepare the folder again with scripts/prepare.py (it resumes)")
    stat = os.stat(path)
    if stat.st_size != shard["bytes"]:
        raise UsageError(
            f"shard {path} has {stat.st_size} bytes, the manifest says {shard['bytes']}; it is damaged: "
            "prepare the folder again"
        )
    key = hashlib.sha256(
        f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{shard['sha256']}".encode()
    ).hexdigest()
    stamp = os.path.join(cache_dir("verified"), key)
    if os.path.exists(stamp):
        return
    if file_sha256(path) != shard["sha256"]:
        raise UsageError(
            f"shard {path} does not match its checksum in the manifest; it is damaged: prepare the folder again"
        )
    try:
        open(stamp, "w").close()
    except OSError:
        pass  # only costs the next run another check


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------- writing


def _example(image, label, index):
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(index)])),
            }
        )
    ).SerializeToString()


def plan_shards(sizes, shard_bytes):
    """Split records (by their encoded sizes) into consecutive shards of about shard_bytes each."""
    counts, current, total = [], 0, 0
    for size in sizes:
        if current and total + size > shard_bytes:
            counts.append(current)
            current, total = 0, 0
        current += 1
        total += size
    if current:
        counts.append(current)
    return counts


def write_split(out_dir, name, encoded, labels, shard_bytes, verbose=0):
    """Write one split's records (encoded: a callable i -> bytes) as shards; returns its manifest entry."""
    sizes = [len(encoded(i)) for i in range(len(labels))] if callable(encoded) else [len(e) for e in encoded]
    counts = plan_shards(sizes, shard_bytes)
    progress_path = os.path.join(out_dir, "progress.json")
    done = json.load(open(progress_path)) if os.path.isfile(progress_path) else {}
    shards, start = [], 0
    line = ProgressLine(f"writing {name} shards", len(labels), enabled=verbose > 0)
    for k, count in enumerate(counts):
        file = f"{name}-{k:05d}-of-{len(counts):05d}.tfrecord"
        path = os.path.join(out_dir, file)
        entry = done.get(file)
        if not (entry and os.path.isfile(path) and os.path.getsize(path) == entry["bytes"]):
            tmp = f"{path}.tmp-{os.getpid()}"
            with tf.io.TFRecordWriter(tmp) as writer:
                for i in range(start, start + count):
                    writer.write(_example(encoded(i) if callable(encoded) else encoded[i], labels[i], i))
            os.replace(tmp, path)
            entry = {"file": file, "count": count, "bytes": os.path.getsize(path), "sha256": file_sha256(path)}
            done[file] = entry
            write_json(progress_path, done)
        shards.append(entry)
        start += count
        line.update(start)
    line.close()
    labels_file = f"{name}-labels.npy"
    buffer_path = os.path.join(out_dir, labels_file)
    np.save(f"{buffer_path}.tmp.npy", np.asarray(labels, np.int32))
    os.replace(f"{buffer_path}.tmp.npy", buffer_path)
    return {"count": len(labels), "labels": labels_file, "shards": shards}


def finish_manifest(out_dir, manifest):
    atomic_write(os.path.join(out_dir, "manifest.json"), json.dumps({"format": FORMAT, **manifest}, indent=2) + "\n")
    progress = os.path.join(out_dir, "progress.json")
    if os.path.exists(progress):
        os.unlink(progress)
