"""Image decoding, one function for training and serving, so both see the same pixels.

`decode_image(contents, channels, size)` runs in the TensorFlow graph: JPEG with the accurate
integer IDCT (bit-identical to PIL/libjpeg's default), PNG/GIF/BMP with TensorFlow's decoders
(16-bit PNGs keep their high byte), grayscale and colour converted to `channels`, then a bilinear
resize to `size` when given (rounded to uint8), exactly as the exported serving signature does.
`scan_headers` reads every file's header (size, mode) without decoding, to size a dataset, find
unreadable files early and decide its channel count; it remembers them in the cache folder.
"""

import concurrent.futures
import hashlib
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_cnn.cache import cache_dir
from keras_cnn.io import atomic_write

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")

# For the input pipelines' map functions: tf.data converts each one with AutoGraph before tracing it,
# on every epoch's dataset (2.25 s of a 3-epoch MNIST run went to its four datasets; 0.21 s without,
# docs/performance.md). Ours branch only on Python values, so they are traced as written.
as_written = tf.autograph.experimental.do_not_convert


def decode_image(contents, channels, size=None):
    """uint8 [H, W, channels] from encoded bytes (a scalar string tensor), resized to `size` (H, W) if given."""
    image = tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=channels, expand_animations=False),
    )
    image.set_shape([None, None, channels])
    return resize(image, size) if size is not None else image


def resize(image, size):
    """Bilinear resize to (H, W), rounded back to uint8; a no-op when the image already has that size."""
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[-3], size[0]), tf.equal(shape[-2], size[1]))
    resized = lambda: tf.cast(
        tf.clip_by_value(tf.round(tf.image.resize(image, size, method="bilinear")), 0, 255), tf.uint8
    )  # noqa: E731
    out = tf.cond(same, lambda: tf.cast(image, tf.uint8), resized)
    out.set_shape([*image.shape[:-3], size[0], size[1], image.shape[-1]])
    return out


def _header(path):
    try:
        with Image.open(path) as img:
            return img.size[::-1], img.mode not in GRAY_MODES
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


HEADER_FORMAT = 1  # bump when the cached table's meaning changes


def scan_headers(paths):
    """[((height, width), is_colour) or None per file], read from the headers only.

    Opening 50,000 files' headers takes ~10 s on two cores, so the results are kept in the cache
    folder per file list, and a later scan re-reads only the files whose size or mtime changed
    (a stat of each file, ~0.3 s for 50,000)."""
    paths = [str(p) for p in paths]
    stats = _stats(paths)
    key = hashlib.sha256(("\n".join(os.path.abspath(p) for p in paths) + f"|{HEADER_FORMAT}").encode()).hexdigest()[:32]
    try:
        entry = os.path.join(cache_dir("headers"), key + ".npz")
    except OSError:  # an unwritable cache folder: scan every time, as before the cache
        entry = None
    known = _read_headers(entry, len(paths)) if entry else None
    fresh = np.zeros(len(paths), bool) if known is None else (known["stat"] == stats).all(1)
    todo = np.flatnonzero(~fresh)
    if not len(todo):
        return [((int(h), int(w)), bool(c)) if ok else None for h, w, c, ok in known["header"]]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        scanned = list(pool.map(_header, [paths[i] for i in todo], chunksize=512))
    table = np.zeros((len(paths), 4), np.int64) if known is None else known["header"].copy()
    for i, found in zip(todo, scanned):
        table[i] = (*found[0], found[1], 1) if found else (0, 0, 0, 0)
    if entry:
        _write_headers(entry, stats, table)
    return [((int(h), int(w)), bool(c)) if ok else None for h, w, c, ok in table]


def _stats(paths):
    def one(path):
        try:
            st = os.stat(path)
            return st.st_size, st.st_mtime_ns
        except OSError:
            return -1, -1

    return np.asarray([one(p) for p in paths], np.int64).reshape(len(paths), 2)


def _read_headers(entry, count):
    """The cached table for this file list, or None (missing, damaged or of another length: rescanned)."""
    try:
        with np.load(entry, allow_pickle=False) as f:
            known = {"stat": f["stat"], "header": f["header"]}
        return known if known["stat"].shape == (count, 2) and known["header"].shape == (count, 4) else None
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _write_headers(entry, stats, table):
    buffer = io.BytesIO()
    np.savez(buffer, stat=stats, header=table)
    try:
        atomic_write(entry, buffer.getvalue(), "wb")
    except OSError:  # a full or read-only cache folder only costs the next run a scan
        pass


def decode_files(paths, channels, size=None, *, progress=None):
    """Decode image files in a parallel tf.data pipeline; returns (uint8 images, ok mask).

    A file that fails to decode (truncated, not an image) leaves a False in the mask instead of an
    error, so the caller applies the corrupt-file policy. Without `size` every decodable image must
    have the same shape (the caller checked the headers).
    """
    paths = list(paths)
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(paths), dtype=tf.int64), tf.constant(paths or [""])[: len(paths)])
    )
    ds = ds.map(
        as_written(lambda i, p: (i, decode_image(tf.io.read_file(p), channels, size))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ignore_errors().batch(256).prefetch(2)
    ok = np.zeros(len(paths), bool)
    chunks, indices = [], []
    for index, images in ds.as_numpy_iterator():
        chunks.append(images)
        indices.append(index)
        ok[index] = True
        if progress is not None:
            progress(int(ok.sum()))
    if not chunks:
        return np.zeros((0, *(size or (1, 1)), channels), np.uint8), ok
    images = np.concatenate(chunks)
    order = np.argsort(np.concatenate(indices), kind="stable")  # deterministic map keeps order; be sure anyway
    return np.ascontiguousarray(images[order]), ok


def decode_random_crop(contents, channels, size, seed, scale, ratio, flip):
    """Inception-style random-resized-crop fused with decoding, for streamed training batches: the box
    (area fraction in `scale`, aspect ratio in `ratio`, as torchvision's RandomResizedCrop) is chosen
    from the header's shape and only that window of a JPEG is decoded; then one resize to `size`
    and an optional horizontal flip. `seed`: a stateless seed (2 ints) for this image."""
    box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    is_jpeg = tf.io.is_jpeg(contents)
    shape = tf.cond(
        is_jpeg,
        lambda: tf.image.extract_jpeg_shape(contents),
        lambda: tf.shape(tf.io.decode_image(contents, channels=channels, expand_animations=False)),
    )
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=box_seed,
        min_object_covered=0.0,
        aspect_ratio_range=tuple(ratio),
        area_range=tuple(scale),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], extent[0], extent[1]])
    image = tf.cond(
        is_jpeg,
        lambda: tf.image.decode_and_crop_jpeg(contents, window, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.slice(
            tf.io.decode_image(contents, channels=channels, expand_animations=False),
            [begin[0], begin[1], 0],
            [extent[0], extent[1], channels],
        ),
    )
    image.set_shape([None, None, channels])
    image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, size, method="bilinear")), 0, 255), tf.uint8)
    if flip:
        image = tf.cond(tf.random.stateless_uniform([], flip_seed) < 0.5, lambda: tf.reverse(image, [1]), lambda: image)
    return image
