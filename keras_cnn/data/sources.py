"""Where images come from: image-folder trees, .npz arrays, the TFDS catalog.

Every source ends as uint8 arrays (N, H, W, C) with int32 labels and a list of class
names, held in memory: the datasets this toolkit targets (MNIST, CIFAR) fit many times
over, and in-memory arrays make the tf.data pipeline a cheap gather.
"""

import dataclasses
import glob
import logging
import os
import socket
import zipfile

import numpy as np

from keras_cnn.data import records
from keras_cnn.data.decode import scan_headers
from keras_cnn.data.labels_csv import is_labels_csv, read_labels_csv
from keras_cnn.data.splits import ArraySplit, FileSplit
from keras_cnn.errors import UsageError

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "KERAS_CNN_DATA_DIR"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Known class counts, so labels outside them are caught even when a source has no names.
KNOWN_NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
KNOWN_CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"],
    "cifar10": CIFAR10_CLASSES,
}


@dataclasses.dataclass
class LoadedData:
    train: ArraySplit
    class_names: list
    validation: ArraySplit | None = None  # only when the source ships one
    test: ArraySplit | None = None
    description: str = ""  # where the data came from, for logs and config.json

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        return self.train.image_shape

    @classmethod
    def from_splits(cls, splits, class_names, description):
        """From {"train": ..., "validation": ..., "test": ...} (train required)."""
        return cls(
            train=splits["train"],
            validation=splits.get("validation"),
            test=splits.get("test"),
            class_names=list(class_names),
            description=description,
        )


# What the known datasets' images look like, to catch data given under the wrong name.
KNOWN_CHANNELS = {"mnist": 1, "fashion_mnist": 1, "cifar10": 3, "cifar100": 3}


def infer_dataset_name(data_dir: str) -> str:
    """A dataset name from its folder: ../shared/data/mnist -> mnist, data/cifar10/train -> cifar10,
    photos.npz -> photos (split folders and train.npz name their parent)."""
    path = os.path.normpath(os.path.abspath(data_dir))
    name = os.path.splitext(os.path.basename(path))[0] if os.path.isfile(path) else os.path.basename(path)
    if name.lower() in SPLIT_NAMES or name.lower() in ("train", "labels"):  # photos/labels.csv -> photos
        name = os.path.basename(os.path.dirname(path))
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.lower()).strip("_")
    if not name:
        raise UsageError(f"cannot name the dataset in {data_dir}; pass --dataset NAME")
    return name


def check_known_dataset(dataset, loaded, image_size):
    """One line when a known dataset's name is given to data that cannot be it (MNIST digits as cifar10)."""
    channels = KNOWN_CHANNELS.get(dataset)
    if channels is None:
        return
    shape = loaded.image_shape
    if shape[-1] != channels or len(loaded.class_names) != KNOWN_NUM_CLASSES[dataset]:
        raise UsageError(
            f"--dataset {dataset}, but {loaded.description} holds {len(loaded.class_names)} classes of "
            f"{'x'.join(map(str, shape))} images, unlike {dataset}; pass the data's own --dataset name "
            "(or leave --dataset out to name it after its folder)"
        )


def load_data(
    dataset: str,
    data_dir: str | None = None,
    *,
    image_size: tuple[int, ...] | None = None,
    on_corrupt: str = "skip",
    verbose: int = 0,
    multi_label: bool = False,
) -> "LoadedData":
    """Find and load `dataset`: --data-dir, then $KERAS_CNN_DATA_DIR/<dataset>, then TFDS.
    multi_label: a labels CSV's `;`-separated classes become multi-hot labels (no other source has them)."""
    looked = []
    if data_dir:
        if not os.path.exists(data_dir):
            raise UsageError(
                f"--data-dir {data_dir} does not exist; point it at an image folder, a labels .csv, an .npz file "
                "or a TFDS data dir"
            )
        if is_labels_csv(data_dir):
            return load_labels_csv(data_dir, image_size=image_size, on_corrupt=on_corrupt, multi_label=multi_label)
        if multi_label:
            raise UsageError(
                f"--multi-label reads its classes from a labels CSV (path,label with a;b labels), not {data_dir}; "
                "pass --labels FILE.csv"
            )
        return _load_path(dataset, data_dir, image_size=image_size, on_corrupt=on_corrupt, verbose=verbose)
    if multi_label:
        raise UsageError("--multi-label needs a labels CSV; pass --labels FILE.csv")
    looked.append("--data-dir (not given)")
    root = os.environ.get(DATA_ROOT_ENV)
    if root:
        candidate = os.path.join(root, dataset)
        if os.path.exists(candidate):
            return _load_path(dataset, candidate, image_size=image_size, on_corrupt=on_corrupt, verbose=verbose)
        looked.append(f"{candidate} (missing)")
    else:
        looked.append(f"${DATA_ROOT_ENV} (unset)")
    try:
        return load_tfds(dataset, None, image_size=image_size)
    except UsageError as err:
        looked.append(f"TFDS ({err})")
    raise UsageError(
        f"dataset {dataset!r} not found; looked in: {'; '.join(looked)}. "
        f"Point --data-dir at a local copy (image folder, .npz, or TFDS data dir) "
        f"or set {DATA_ROOT_ENV} to a folder holding {dataset}/, e.g. {DATA_ROOT_ENV}=../shared/data"
    )


def _load_path(dataset, path, *, image_size, on_corrupt, verbose=0):
    if os.path.isdir(path) and records.is_prepared(path):  # sharded TFRecords from scripts/prepare.py
        splits, names, description = records.load_records(path, image_size)
        return LoadedData.from_splits(splits, names, description)
    if os.path.isfile(path):
        if path.endswith(".npz"):
            return load_npz(path, dataset, image_size=image_size)
        raise UsageError(f"{path} is a file but neither a labels .csv nor an .npz archive; give one, or a directory")
    if os.path.isfile(os.path.join(path, "train.npz")):
        return load_npz(os.path.join(path, "train.npz"), dataset, image_size=image_size)
    if os.path.isfile(os.path.join(path, "dataset_info.json")) or glob.glob(
        os.path.join(path, dataset, "*", "dataset_info.json")
    ):
        return load_tfds(dataset, path, image_size=image_size)
    return load_image_folder(path, image_size=image_size, on_corrupt=on_corrupt, verbose=verbose)


# ----------------------------------------------------------------------------- .npz


def load_npz(path: str, dataset: str | None = None, *, image_size: tuple[int, ...] | None = None) -> "LoadedData":
    """Keras's layout: x_train, y_train (and optional x_test, y_test, class_names); image_size=(H, W) resizes."""
    with _open_npz(path) as archive:
        missing = [k for k in ("x_train", "y_train") if k not in archive.files]
        if missing:
            raise UsageError(
                f"{path} lacks {', '.join(missing)} (has: {', '.join(archive.files) or 'nothing'}); "
                "an .npz dataset needs Keras's keys x_train and y_train"
            )
        train = _npz_split(_member(archive, "x_train", path), _member(archive, "y_train", path), path, "train")
        test = None
        if "x_test" in archive.files and "y_test" in archive.files:
            test = _npz_split(_member(archive, "x_test", path), _member(archive, "y_test", path), path, "test")
        names = [str(n) for n in _member(archive, "class_names", path)] if "class_names" in archive.files else None
    sibling_test = os.path.join(os.path.dirname(path), "test.npz")
    if test is None and os.path.basename(path) == "train.npz" and os.path.isfile(sibling_test):
        with _open_npz(sibling_test) as t:
            x_key, y_key = ("x_test", "y_test") if "x_test" in t.files else ("x_train", "y_train")
            if x_key in t.files and y_key in t.files:
                test = _npz_split(
                    _member(t, x_key, sibling_test), _member(t, y_key, sibling_test), sibling_test, "test"
                )
    if names is None:
        names = KNOWN_CLASS_NAMES.get(dataset or "")
        if names is None:
            top = int(train.labels.max()) + 1
            names = [str(i) for i in range(KNOWN_NUM_CLASSES.get(dataset or "", top))]
    for split, which in ((train, "train"), (test, "test")):
        if split is not None:
            check_labels(split.labels, len(names), f"{path} ({which})")
    train, test = resize_split(train, image_size), resize_split(test, image_size)
    return LoadedData(train=train, test=test, class_names=list(names), description=f"npz:{path}")


def resize_split(split, image_size, batch=4096):
    """Bilinear resize of uint8 arrays to image_size (H, W), a batch at a time; unchanged when they fit."""
    if split is None or image_size is None or tuple(split.images.shape[1:3]) == tuple(image_size):
        return split
    import tensorflow as tf

    parts = [
        tf.cast(
            tf.clip_by_value(tf.round(tf.image.resize(split.images[i : i + batch], image_size)), 0, 255), tf.uint8
        ).numpy()
        for i in range(0, len(split), batch)
    ]
    return ArraySplit(np.ascontiguousarray(np.concatenate(parts)), split.labels)


def _open_npz(path):
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UsageError(f"cannot read {path} as an .npz archive ({err}); check the file") from None
    if not hasattr(archive, "files"):  # a bare .npy saved under an .npz name
        raise UsageError(f"{path} is a single array, not an .npz archive with x_train and y_train")
    return archive


def _member(archive, key, path):
    """One array of an .npz; object arrays are refused, never unpickled (loading one could run code)."""
    try:
        return archive[key]
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise UsageError(f"{path}: {key} holds Python objects (a pickled array); store numeric arrays") from None
        raise UsageError(f"{path}: cannot read {key} ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise UsageError(f"{path}: cannot read {key} ({err}); the file is damaged") from None


def _npz_split(x, y, path, which):
    if x.ndim == 3:  # MNIST-style (N, H, W): add the channel axis every model expects
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise UsageError(f"{path}: x_{which} has shape {x.shape}; expected (N, H, W) or (N, H, W, 1|3)")
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise UsageError(f"{path}: x_{which} has {len(x)} images but y_{which} has {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"{path}: y_{which} holds {y.dtype} values; labels must be integers")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise UsageError(f"{path}: x_{which} holds {x.dtype} values; store pixels as uint8")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise UsageError(
            f"{path}: x_{which} holds NaN or infinite values ({int((~np.isfinite(x)).sum())} of them); "
            "fix or drop those images"
        )
    if x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255:
            raise UsageError(f"{path}: x_{which} values lie outside 0..255; store pixels as uint8")
        scale = 255.0 if x.max() <= 1.0 and np.issubdtype(x.dtype, np.floating) else 1.0
        x = np.round(x * scale).astype(np.uint8)
    return ArraySplit(np.ascontiguousarray(x), y.astype(np.int32))


def check_labels(labels, num_classes, where):
    if num_classes < 2:
        raise UsageError(f"{where}: found {num_classes} class; classification needs at least 2")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise UsageError(
            f"{where}: {int(bad.sum())} labels outside 0..{num_classes - 1} (e.g. {int(labels[bad][0])}); "
            "fix the labels or the class list"
        )


# ----------------------------------------------------------------------- image folder

SPLIT_NAMES = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def load_image_folder(
    root: str, *, image_size: tuple[int, ...] | None = None, on_corrupt: str = "skip", verbose: int = 0
) -> "LoadedData":
    """`root/<split>/<class>/*.jpg|png` or `root/<class>/...`; classes in sorted order.

    Returns FileSplits (nothing decoded yet): every file's header is read to find unreadable files
    (on_corrupt="skip" drops them with one warning and a count; "error" stops), the set's channel
    count (a set with any colour image is RGB) and its size: image_size=(H, W) resizes every image;
    without it, mixed sizes are an error.
    """
    subdirs = _subdirs(root)
    splits = {SPLIT_NAMES[d]: os.path.join(root, d) for d in subdirs if d in SPLIT_NAMES}
    if splits and "train" not in splits:
        raise UsageError(f"{root} has {', '.join(sorted(splits))} split folders but no train/; add one")
    if not splits:
        splits = {"train": root}
    class_names = _subdirs(splits["train"])
    if len(class_names) < 2:
        raise UsageError(
            f"{splits['train']} has {len(class_names)} class folder(s); an image folder needs "
            "one sub-folder per class and at least 2 classes"
        )
    listed = {split: _list_split(path, class_names) for split, path in splits.items()}
    loaded = _file_splits(listed, splits, root, image_size, on_corrupt)
    return LoadedData.from_splits(loaded, class_names, f"image_folder:{root}")


def load_labels_csv(
    path: str, *, image_size: tuple[int, ...] | None = None, on_corrupt: str = "skip", multi_label: bool = False
) -> "LoadedData":
    """A `path,label[,split]` CSV (data/labels_csv.py): its images checked and streamed as a folder's."""
    listed, class_names = read_labels_csv(path, multi_label=multi_label)
    loaded = _file_splits(listed, {split: f"{path} ({split})" for split in listed}, path, image_size, on_corrupt)
    return LoadedData.from_splits(loaded, class_names, f"labels_csv:{path}")


def _file_splits(listed, where, root, image_size, on_corrupt):
    """{split: FileSplit} from {split: (files, labels)}: every header read once, unreadable files
    dropped (or refused), the set's channels and size settled."""
    headers = {split: scan_headers(files) for split, (files, _) in listed.items()}
    channels = 3 if any(h and h[1] for hs in headers.values() for h in hs) else 1
    loaded = {}
    for split, (files, labels) in listed.items():
        keep = _readable(files, headers[split], on_corrupt, where[split])
        sizes = {headers[split][i][0] for i in keep}
        if image_size is None and len(sizes) > 1:
            raise UsageError(
                f"{where[split]} mixes image sizes {sorted(sizes)[:3]}...; pass --image-size HxW to resize them all"
            )
        size = tuple(image_size) if image_size is not None else sizes.pop()
        loaded[split] = FileSplit(np.asarray(files)[keep], np.asarray(labels, np.int32)[keep], size, channels)
    shapes = {s: a.image_shape for s, a in loaded.items()}
    if len(set(shapes.values())) > 1:
        raise UsageError(f"{root}: splits differ in image shape {shapes}; pass --image-size HxW to resize all")
    return loaded


def _subdirs(path):
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _list_split(split_dir, class_names):
    files, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            continue  # a split may lack a class (a small test split, say)
        # Regular files only: a FIFO or device named .jpg would block the decoder forever.
        entries = [e for e in os.scandir(class_dir) if e.name.lower().endswith(IMAGE_EXTENSIONS)]
        names = sorted(e.name for e in entries if e.is_file())
        if len(names) < len(entries):
            log.warning("skipped %d entries in %s that are not regular files", len(entries) - len(names), class_dir)
        if not names:
            raise UsageError(
                f"class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add images or remove it"
            )
        files += [os.path.join(class_dir, n) for n in names]
        labels += [label] * len(names)
    return files, labels


def _readable(files, headers, on_corrupt, split_dir):
    bad = [f for f, h in zip(files, headers) if h is None]
    if bad:
        if on_corrupt == "error":
            raise UsageError(
                f"cannot decode {bad[0]} ({len(bad)} unreadable in all); remove it or pass --on-corrupt skip"
            )
        log.warning("skipped %d unreadable image(s) in %s, e.g. %s", len(bad), split_dir, bad[0])
    keep = [i for i, h in enumerate(headers) if h is not None]
    if not keep:
        raise UsageError(f"no readable images in {split_dir}")
    return np.asarray(keep, dtype=int)


# ------------------------------------------------------------------------------ TFDS


def load_tfds(name: str, data_dir: str | None, *, image_size: tuple[int, ...] | None = None) -> "LoadedData":
    """A TFDS dataset by catalog name (data_dir = a TFDS data dir) or a prepared dataset dir."""
    import tensorflow_datasets as tfds

    try:
        if data_dir and os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
            builder = tfds.builder_from_directory(data_dir)
        else:
            builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UsageError(f"{name!r} is not in the TFDS catalog") from None
    try:
        splits = _tfds_splits(builder, image_size)
    except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError):
        # Not prepared locally (checked this way, not with is_prepared(), so that
        # tfds.testing.mock_data works in tests). Download only when online.
        if data_dir or not _online():
            raise UsageError(f"not prepared in {data_dir or 'the default TFDS dir'} and offline") from None
        builder.download_and_prepare()
        splits = _tfds_splits(builder, image_size)
    info = builder.info
    label_key = _tfds_keys(builder)[1]
    if "train" not in splits:
        raise UsageError(f"TFDS dataset {name!r} has no train split")
    return LoadedData.from_splits(splits, info.features[label_key].names, f"tfds:{builder.name}@{builder.version}")


def _tfds_keys(builder):
    import tensorflow_datasets as tfds

    features = builder.info.features
    image_key = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
    label_key = next((k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), None)
    if image_key is None or label_key is None:
        raise UsageError(
            f"TFDS dataset {builder.name!r} is not an image classification dataset (needs an image and a class label)"
        )
    return image_key, label_key


def _tfds_splits(builder, image_size):
    import tensorflow_datasets as tfds

    image_key, label_key = _tfds_keys(builder)
    # A mocked builder (tfds.testing.mock_data) lists no splits but serves any name.
    available = set(builder.info.splits.keys()) or {"train", "test"}
    splits = {}
    for split in ("train", "validation", "test"):
        if split not in available:
            continue
        ds = builder.as_dataset(split=split).map(lambda ex: (ex[image_key], ex[label_key]))
        parts = list(tfds.as_numpy(ds.batch(4096)))
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        splits[split] = resize_split(
            ArraySplit(np.ascontiguousarray(images, np.uint8), labels.astype(np.int32)), image_size
        )
    return splits


def _online(host="storage.googleapis.com", timeout=3.0):
    """TFDS downloads can hang for minutes offline; ask the network once, quickly."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
