"""Data layer: sources -> validation split -> normalization -> tf.data pipeline."""

import dataclasses

import numpy as np

from keras_cnn.config import DataConfig
from keras_cnn.data.normalization import Normalizer
from keras_cnn.data.sources import LoadedData, check_known_dataset, load_data
from keras_cnn.data.split import default_val_size, stratified_folds, stratified_split
from keras_cnn.data.splits import ArraySplit, FileSplit, MappedSplit
from keras_cnn.data.store import place
from keras_cnn.errors import UsageError

__all__ = [
    "ArraySplit",
    "FileSplit",
    "LoadedData",
    "MappedSplit",
    "Normalizer",
    "PreparedData",
    "load_data",
    "prepare_data",
]


# Normalization statistics of a streamed split come from this many of its images, evenly spaced:
# per-channel means and deviations settle long before, and memory stays the same for any set size.
NORMALIZATION_SAMPLE = 1000


@dataclasses.dataclass
class PreparedData(LoadedData):
    """LoadedData after the split is carved, the images placed and normalization fitted (no test
    split: it stays unseen)."""

    normalizer: Normalizer | None = None
    val_size: int = 0  # as used, for config.json
    input_shape: tuple[int, ...] | None = None  # what the model sees: the image shape, or the tutorial's crop of it


def prepare_data(cfg: DataConfig, *, verbose: int = 0) -> "PreparedData":
    """Load cfg.dataset, carve the validation split, fit normalization on the training part."""
    loaded, train, validation, val_size = _carve(cfg, verbose)
    shape = input_shape(cfg, train.image_shape)
    train = place(train, cfg, verbose=verbose, label="training images")
    validation = place(validation, cfg, verbose=verbose, label="validation images")
    return PreparedData(
        train=train,
        validation=validation,
        class_names=loaded.class_names,
        description=loaded.description,
        normalizer=Normalizer.fit(_statistics_sample(train), cfg.normalization),
        val_size=val_size,
        input_shape=shape,
    )


def check_fits(cfg: DataConfig, sources: dict | None = None) -> None:
    """What prepare_data and a run's first epoch would refuse about this data, found without
    decoding it (an image folder is listed, not read): a search or sweep calls this for every
    data setting it will train before its first trial. `sources` keeps the loaded sources between
    calls, for settings that differ only in how they use the same data."""
    _, train, _, _ = _carve(cfg, 0, sources)
    input_shape(cfg, train.image_shape)
    check_full_batch(len(train), cfg.batch_size)


def check_full_batch(num_train: int, batch_size: int) -> None:
    if num_train < batch_size:
        raise UsageError(
            f"{num_train} training images make no full batch of {batch_size}; lower --batch-size (data.batch_size)"
        )


def input_shape(cfg: DataConfig, image_shape):
    """What the model sees: the image shape, or the TF tutorial's crop of it."""
    if cfg.augmentation != "tf_tutorial":
        return image_shape
    if cfg.crop_size >= min(image_shape[:2]):
        raise UsageError(
            f"data.crop_size {cfg.crop_size} must be smaller than the {image_shape[0]}x{image_shape[1]} images"
        )
    return (cfg.crop_size, cfg.crop_size, image_shape[2])


def _carve(cfg, verbose, sources=None):
    """(loaded, train, validation, val_size): the source's splits after the validation carve and the
    limits, not yet placed (decoded) anywhere."""
    key = (cfg.dataset, cfg.data_dir, cfg.image_size, cfg.on_corrupt, cfg.multi_label)
    if sources is not None and key in sources:
        loaded = sources[key]
    else:
        loaded = load_data(
            cfg.dataset,
            cfg.data_dir,
            image_size=cfg.image_size,
            on_corrupt=cfg.on_corrupt,
            verbose=verbose,
            multi_label=cfg.multi_label,
        )
        check_known_dataset(cfg.dataset, loaded, cfg.image_size)
        if sources is not None:
            sources[key] = loaded
    train, validation = loaded.train, loaded.validation
    if cfg.folds:  # k-fold cross-validation over the source's training data
        folds = stratified_folds(train.labels, cfg.folds, cfg.split_seed)
        val_idx = folds[cfg.fold]
        train_idx = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != cfg.fold]))
        train, validation, val_size = train.take(train_idx), train.take(val_idx), len(val_idx)
    elif validation is None:
        val_size = cfg.val_size if cfg.val_size is not None else default_val_size(cfg.dataset, len(train))
        train_idx, val_idx = stratified_split(train.labels, val_size, cfg.split_seed)
        train, validation = train.take(train_idx), (train.take(val_idx) if val_size else None)
    else:
        val_size = len(validation)
    # Stratified subsets keep every class, for smoke runs and tiny-subset checks. Drawn with the split's
    # seed, not the run's: runs of several seeds then validate on the same images (sweeps, ensembles).
    train = _subset(train, cfg.train_limit, cfg.split_seed)
    return loaded, train, _subset(validation, cfg.val_limit, cfg.split_seed), val_size


def _statistics_sample(split):
    """All images of an in-memory split; an evenly spaced sample of a streamed one (its order is by class)."""
    if isinstance(split, ArraySplit):
        return split.images
    picks = np.linspace(0, len(split) - 1, min(NORMALIZATION_SAMPLE, len(split))).astype(int)
    return split.take(picks).sample(len(picks))


def _subset(split, limit, seed):
    if split is None or not limit or limit >= len(split):
        return split
    _, keep = stratified_split(split.labels, limit, seed)
    return split.take(keep)
