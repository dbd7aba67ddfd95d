"""Input normalization per CS231n: statistics from the training split, applied in the graph.

Modes: `none` (x/255), `center` (subtract the per-channel mean), `standardize` (also divide
by the per-channel std, the default), `pca_whiten` (decorrelate all pixels; small inputs only),
`per_image` (each image minus its own mean, over its own std: the TF CIFAR-10 tutorial's
tf.image.per_image_standardization), `backbone` (pixels unchanged, 0..255: keras_* models
scale them inside, models.applications).
The statistics are saved with the run and the export puts them inside the served graph.
"""

import dataclasses
import io
import json
import os

import numpy as np
import tensorflow as tf

from keras_cnn.errors import UsageError, choose
from keras_cnn.io import atomic_write

MODES = ("none", "center", "standardize", "pca_whiten", "per_image", "backbone")
MAX_WHITEN_DIM = 4096  # a D x D covariance; beyond this PCA whitening is impractical
WHITEN_EPSILON = 1e-2  # on [0, 1] pixels; keeps near-zero eigenvalues from exploding noise


@dataclasses.dataclass
class Normalizer:
    mode: str
    mean: list  # per channel, pixel units 0..255
    std: list
    whitening: np.ndarray | None = None  # (D, D), for pca_whiten

    @classmethod
    def fit(cls, images, mode="standardize", *, chunk_values=1 << 24):
        """Compute statistics from uint8 images (N, H, W, C) in float64, ~16M values (128 MB) at a time."""
        choose("normalization", mode, MODES)
        step = max(1, chunk_values // max(int(np.prod(images.shape[1:])), 1))
        mean, std = channel_moments(images[start : start + step] for start in range(0, len(images), step))
        whitening = None
        if mode == "pca_whiten":
            whitening = _pca_whitening(images, mean)
        return cls(mode, mean.tolist(), std.tolist(), whitening)

    def __call__(self, images):
        """uint8/float images (B, H, W, C) -> float32, in the graph."""
        x = tf.cast(images, tf.float32)
        mean = tf.constant(self.mean, tf.float32)
        if self.mode == "none":
            return x / 255.0
        if self.mode == "backbone":  # pixels as they are: the model's BackbonePreprocessing scales them
            return x
        if self.mode == "center":
            return (x - mean) / 255.0
        if self.mode == "per_image":
            return tf.image.per_image_standardization(x)
        if self.mode == "standardize":
            # One multiply-add per pixel: x * (1/std) + (-mean/std).
            scale = 1.0 / np.asarray(self.std)
            return x * tf.constant(scale, tf.float32) + tf.constant(-np.asarray(self.mean) * scale, tf.float32)
        shape = tf.shape(x)
        flat = tf.reshape((x - mean) / 255.0, [shape[0], -1])
        return tf.reshape(tf.matmul(flat, tf.constant(self.whitening, tf.float32)), shape)

    def to_dict(self):
        return {"mode": self.mode, "mean": self.mean, "std": self.std}

    def save(self, directory):
        atomic_write(os.path.join(directory, "normalization.json"), json.dumps(self.to_dict(), indent=2))
        if self.whitening is not None:
            buffer = io.BytesIO()
            np.save(buffer, self.whitening)
            atomic_write(os.path.join(directory, "whitening.npy"), buffer.getvalue(), mode="wb")

    @classmethod
    def load(cls, directory):
        with open(os.path.join(directory, "normalization.json")) as f:
            d = json.load(f)
        path = os.path.join(directory, "whitening.npy")
        whitening = np.load(path) if d["mode"] == "pca_whiten" else None
        return cls(d["mode"], d["mean"], d["std"], whitening)


def channel_moments(chunks):
    """Per-channel mean and std (pixel units) of image chunks (n, H, W, C), one chunk at a time, so a
    sample never needs to be in memory at once. uint8 chunks are counted into per-channel histograms
    (exact, and ~8x faster than float64 sums over CIFAR-10's 46M pixels); others are summed in float64."""
    values = np.arange(256, dtype=np.float64)
    total = squares = None
    count = 0
    for chunk in chunks:
        chunk = np.asarray(chunk)
        flat = chunk.reshape(-1, chunk.shape[-1])
        if chunk.dtype == np.uint8:
            hist = np.stack([np.bincount(flat[:, c], minlength=256) for c in range(flat.shape[1])]).astype(np.float64)
            sums, sq = hist @ values, hist @ values**2
        else:
            flat = flat.astype(np.float64)
            sums, sq = flat.sum(0), (flat**2).sum(0)
        total = sums if total is None else total + sums
        squares = sq if squares is None else squares + sq
        count += len(flat)
    if not count:
        raise ValueError("no images to compute statistics from")
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean**2, 1e-12))


def _pca_whitening(images, mean, max_samples=20000):
    dim = int(np.prod(images.shape[1:]))
    if dim > MAX_WHITEN_DIM:
        raise UsageError(
            f"pca_whiten needs small inputs (at most {MAX_WHITEN_DIM} values per image, got {dim}); "
            "use --normalization standardize"
        )
    sample = images[:max_samples].reshape(-1, images.shape[-1]).astype(np.float64)
    flat = ((sample - mean) / 255.0).reshape(min(len(images), max_samples), dim)
    cov = flat.T @ flat / len(flat)
    eigvals, eigvecs = np.linalg.eigh(cov)
    # ZCA form (rotate back): whitened images still look like images, which convnets need.
    return (eigvecs / np.sqrt(eigvals + WHITEN_EPSILON)) @ eigvecs.T
