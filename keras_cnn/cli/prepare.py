"""Prepare a dataset as sharded TFRecords (as ImageNet's are), to train from with --data-dir OUT_DIR.

    python scripts/prepare.py ../shared/data/cifar10 prepared/cifar10
    python scripts/prepare.py photos/ prepared/photos --shard-size 150MB
    python scripts/prepare.py ../shared/data/mnist/train.npz prepared/mnist
    python scripts/prepare.py cifar100 prepared/cifar100            # a TFDS name (or a TFDS data dir)

SRC is an image folder (files kept as they are encoded), an .npz (images encoded as PNG, lossless)
or a TFDS dataset. Records are shuffled (seeded) before sharding, so every shard mixes the classes.
OUT_DIR gets the shards, each split's labels and manifest.json (class names, counts, image shape,
normalization statistics, source, every shard's size and sha256). Each shard is written atomically;
an interrupted prepare resumes where it stopped.
"""

import os

import numpy as np
import tensorflow as tf

from keras_cnn.cli.common import ArgumentParser, add_image_size_arg, cli_entry, description_of
from keras_cnn.config import TrainConfig, apply_overrides, parse_size
from keras_cnn.data import records
from keras_cnn.data.labels_csv import is_labels_csv
from keras_cnn.data.normalization import channel_moments
from keras_cnn.data.sources import (
    SPLIT_NAMES,
    infer_dataset_name,
    load_image_folder,
    load_labels_csv,
    load_npz,
    load_tfds,
)
from keras_cnn.errors import UsageError


def build_parser():
    parser = ArgumentParser(prog="prepare.py", description=description_of(__doc__))
    parser.add_argument("source", help="an image folder, an .npz file, or a TFDS name / data dir")
    parser.add_argument("out_dir", help="where the shards and manifest.json go")
    parser.add_argument("--dataset", help="dataset name (default: the source folder's name)")
    parser.add_argument("--shard-size", default="128MB", help="about this much per shard (default 128MB)")
    parser.add_argument("--seed", type=int, default=0, help="the order records are shuffled into before sharding")
    add_image_size_arg(parser)  # the records keep the files' own bytes; this is the size they train at
    parser.add_argument("--quiet", action="store_true")
    return parser


def collect(source, dataset, image_size=None):
    """{split: (encoded bytes getter, labels, decode info)}, class names, image shape, description."""
    if is_labels_csv(source):
        return _collect_csv(source, image_size)
    if (
        os.path.isdir(source)
        and not os.path.isfile(os.path.join(source, "dataset_info.json"))
        and not os.path.isfile(os.path.join(source, "train.npz"))
    ):
        loaded = load_image_folder(source, image_size=image_size)
        return _file_records(loaded, image_size, lambda labels: labels)
    if image_size:
        raise UsageError("--image-size applies to image folders; arrays and TFDS sets keep their size")
    if source.endswith(".npz") or os.path.isfile(os.path.join(source, "train.npz")):
        path = source if source.endswith(".npz") else os.path.join(source, "train.npz")
        loaded = load_npz(path, dataset)
    else:
        loaded = load_tfds(dataset if not os.path.isdir(source) else dataset, source if os.path.isdir(source) else None)
    splits = {name: (_png(split.images), split.labels) for name, split in _named(loaded).items()}
    return splits, loaded.class_names, list(loaded.image_shape), loaded.image_shape[-1], loaded.description


def _collect_csv(source, image_size):
    """A labels CSV as an image folder's files; records hold one class per image, so multi-label rows are refused."""
    loaded = load_labels_csv(source, image_size=image_size, multi_label=True)
    named = _named(loaded)
    if any(split.labels.sum(1).max() > 1 for split in named.values()):
        raise UsageError(
            f"{source} holds multi-label rows (a;b); prepared records keep one class per image, "
            "so train from the CSV itself: train.py --labels FILE.csv --multi-label"
        )
    return _file_records(loaded, image_size, lambda labels: labels.argmax(1).astype("int32"))


def _file_records(loaded, image_size, class_of):
    """collect()'s answer for a source of files (an image folder, a CSV): their paths, one class each."""
    named = _named(loaded)
    splits = {name: (list(split.paths), class_of(split.labels)) for name, split in named.items()}
    sizes = {tuple(image_size) if image_size else split.size for split in named.values()}
    shape = [*sizes.pop(), loaded.train.channels] if len(sizes) == 1 else None
    return splits, loaded.class_names, shape, loaded.train.channels, loaded.description


def _named(loaded):
    return {
        name: split
        for name, split in (("train", loaded.train), ("validation", loaded.validation), ("test", loaded.test))
        if split is not None
    }


def _png(images):
    return [tf.io.encode_png(image).numpy() for image in images]


@cli_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    shard_bytes = parse_size(args.shard_size)
    if records.is_prepared(args.out_dir):
        manifest = records.read_manifest(args.out_dir)
        print(
            f"{args.out_dir} is already prepared ({sum(s['count'] for s in manifest['splits'].values()):,} records); "
            "train with --data-dir " + args.out_dir
        )
        return 0
    if not os.path.exists(args.source) and "/" in args.source:
        raise UsageError(f"{args.source} does not exist; give an image folder, an .npz file or a TFDS name")
    dataset = args.dataset or (infer_dataset_name(args.source) if os.path.exists(args.source) else args.source)
    size = None
    if args.image_size:  # checked as --set data.image_size is, with the same message
        size = apply_overrides(TrainConfig(), [f"data.image_size={args.image_size}"]).data.image_size
    splits, names, shape, channels, description = collect(args.source, dataset, size)
    try:
        os.makedirs(args.out_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {args.out_dir} ({err.strerror}); choose a writable OUT_DIR") from None
    entries = {}
    for name, (encoded, labels) in splits.items():
        order = np.random.default_rng(args.seed).permutation(len(labels))  # every shard mixes the classes
        encoded = [encoded[i] for i in order]
        if isinstance(encoded[0], str):  # image files: their bytes, read as each shard is written
            encoded = (lambda paths: lambda i: open(paths[i], "rb").read())(encoded)
        split = SPLIT_NAMES.get(name, name)
        entries[split] = records.write_split(
            args.out_dir, split, encoded, np.asarray(labels)[order], shard_bytes, verbose=0 if args.quiet else 1
        )
    stats = train_statistics(args.out_dir, entries["train"], shape, channels)
    records.finish_manifest(
        args.out_dir,
        {
            "class_names": list(names),
            "image_shape": shape,
            "channels": int(channels),
            "source": description,
            "normalization": stats,
            "splits": entries,
            "dataset": dataset,
            "seed": args.seed,
        },
    )
    total = sum(e["count"] for e in entries.values())
    print(
        f"prepared {total:,} records in {sum(len(e['shards']) for e in entries.values())} shard(s) -> {args.out_dir}; "
        f"train with --data-dir {args.out_dir}"
    )
    return 0


def train_statistics(out_dir, entry, shape, channels, limit=5000):
    """Per-channel mean and std (pixel units) of the first `limit` training records, read back from the shards."""
    size = tuple(shape[:2]) if shape else (224, 224)
    split = records.RecordSplit(
        out_dir,
        "train",
        [(os.path.join(out_dir, s["file"]), s["count"]) for s in entry["shards"]],
        np.arange(entry["count"]),
        np.zeros(entry["count"], np.int32),
        size,
        int(channels),
    )
    # Batch by batch: a 224-px sample held at once in float64 took 13 GB for 5,000 images.
    head = split.take(np.arange(min(limit, entry["count"])))
    mean, std = channel_moments(images for images, _ in head.batches(256))
    return {"mean": mean.tolist(), "std": std.tolist(), "images": int(min(limit, entry["count"]))}


if __name__ == "__main__":
    raise SystemExit(main())
