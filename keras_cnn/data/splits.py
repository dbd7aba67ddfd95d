"""One split of a dataset, wherever its images live.

- ArraySplit: decoded uint8 images (N, H, W, C) in memory;
- MappedSplit: decoded images in a memory-mapped file (the decode cache), read batch by batch;
- FileSplit: image files, decoded while streaming (nothing held in memory);
- RecordSplit: prepared TFRecord shards (see data/records.py), streamed by shard.

Every split has labels (int32), `take(indices)` (a sub-split, in that order), `image_shape`,
`sample(n)` (the first n images, decoded: for normalization statistics and probes) and
`batches(size)` (uint8 batches in order, for evaluation).
"""

import dataclasses

import numpy as np

from keras_cnn.data import decode


@dataclasses.dataclass
class ArraySplit:
    """One split in memory: uint8 images (N, H, W, C) and int32 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def take(self, indices):
        return ArraySplit(self.images[indices], self.labels[indices])

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    def sample(self, n):
        return np.asarray(self.images[:n])

    def batches(self, size):
        for start in range(0, len(self), size):
            yield np.asarray(self.images[start : start + size]), self.labels[start : start + size]


@dataclasses.dataclass
class MappedSplit:
    """Rows of a memory-mapped uint8 array: decoded once into the cache folder, read as batches need them."""

    images: np.ndarray  # np.memmap (M, H, W, C)
    rows: np.ndarray  # which rows, in order
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def take(self, indices):
        return MappedSplit(self.images, self.rows[indices], self.labels[indices])

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    def gather(self, indices):
        rows = self.rows[np.asarray(indices)]
        order = np.argsort(rows)  # sorted reads are sequential on disk
        out = np.empty((len(rows), *self.image_shape), np.uint8)
        out[order] = self.images[rows[order]]
        return out

    def sample(self, n):
        return self.gather(np.arange(min(n, len(self))))

    def batches(self, size):
        for start in range(0, len(self), size):
            yield self.gather(np.arange(start, min(start + size, len(self)))), self.labels[start : start + size]


@dataclasses.dataclass
class FileSplit:
    """Image files, decoded while streaming; `size` (H, W) resizes, `channels` is the set's."""

    paths: np.ndarray  # str
    labels: np.ndarray
    size: tuple  # (H, W) every image is brought to
    channels: int

    def __len__(self):
        return len(self.labels)

    def take(self, indices):
        return FileSplit(self.paths[indices], self.labels[indices], self.size, self.channels)

    @property
    def image_shape(self):
        return (*self.size, self.channels)

    def sample(self, n):
        images, ok = decode.decode_files(self.paths[:n], self.channels, self.size)
        return images

    def batches(self, size):
        for start in range(0, len(self), size):
            images, ok = decode.decode_files(self.paths[start : start + size], self.channels, self.size)
            yield images, self.labels[start : start + size][ok]
