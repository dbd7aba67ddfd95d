"""Data layer: sources -> validation split -> normalization -> tf.data pipeline."""
import dataclasses

from keras_cnn.data.normalization import Normalizer
from keras_cnn.data.sources import ArraySplit, LoadedData, check_known_dataset, load_data
from keras_cnn.data.split import default_val_size, stratified_split

__all__ = ["ArraySplit", "LoadedData", "Normalizer", "PreparedData", "load_data", "prepare_data"]


@dataclasses.dataclass
class PreparedData(LoadedData):
    """LoadedData after the split is carved and normalization fitted (no test split: it stays unseen)."""

    normalizer: Normalizer = None
    val_size: int = 0  # as used, for config.json


def prepare_data(cfg, *, seed=0, verbose=0):
    """Load cfg.dataset, carve the validation split, fit normalization on the training part."""
    loaded = load_data(cfg.dataset, cfg.data_dir, image_size=cfg.image_size, on_corrupt=cfg.on_corrupt, verbose=verbose)
    check_known_dataset(cfg.dataset, loaded, cfg.image_size)
    train, validation = loaded.train, loaded.validation
    if validation is None:
        val_size = cfg.val_size if cfg.val_size is not None else default_val_size(cfg.dataset, len(train))
        train_idx, val_idx = stratified_split(train.labels, val_size, cfg.split_seed)
        train, validation = train.take(train_idx), (train.take(val_idx) if val_size else None)
    else:
        val_size = len(validation)
    # Stratified subsets keep every class, for smoke runs and tiny-subset checks.
    train = _subset(train, cfg.train_limit, seed)
    validation = _subset(validation, cfg.val_limit, seed)
    normalizer = Normalizer.fit(train.images, cfg.normalization)
    return PreparedData(train=train, validation=validation, class_names=loaded.class_names, description=loaded.description,
                        normalizer=normalizer, val_size=val_size)


def _subset(split, limit, seed):
    if split is None or not limit or limit >= len(split):
        return split
    _, keep = stratified_split(split.labels, limit, seed)
    return split.take(keep)
