"""Validation split carved from training data: stratified by class and seeded."""

import numpy as np

from keras_cnn.errors import UsageError

# Defaults follow common practice for the datasets: the last 5,000 / 10,000 images.
DEFAULT_VAL_SIZES = {"mnist": 10000, "fashion_mnist": 10000, "cifar10": 5000, "cifar100": 5000}


def default_val_size(dataset, num_train):
    """The dataset's customary size, or 10% when the data is a small copy or unknown."""
    known = DEFAULT_VAL_SIZES.get(dataset)
    if known is not None and known <= num_train // 5:
        return known
    return max(1, num_train // 10)


def strata(labels):
    """What a split stratifies on: the class, or for multi-hot labels (N, classes) each image's first class."""
    labels = np.asarray(labels)
    return labels.argmax(1) if labels.ndim == 2 else labels


def stratified_split(labels, val_size, seed):
    """Return (train_indices, val_indices): disjoint, sorted, class proportions kept.

    Each class gives its share of val_size (largest remainders settle the rounding),
    drawn by a permutation keyed on `seed`, so the same seed always gives the same split.
    """
    labels = strata(labels)
    n = len(labels)
    if not 0 <= val_size < n:
        raise UsageError(f"validation size {val_size} must be in [0, {n}) for {n} training images")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * val_size / n
    take = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - take), kind="stable")
    take[remainder_order[: val_size - take.sum()]] += 1
    val = []
    for cls, k in zip(classes, take):
        members = np.flatnonzero(labels == cls)
        val.append(rng.permutation(members)[:k])
    val = np.sort(np.concatenate(val)) if val else np.array([], dtype=int)
    train = np.setdiff1d(np.arange(n), val, assume_unique=True)
    return train, val


def stratified_folds(labels, k, seed):
    """K disjoint folds covering every index once, each with the classes' proportions (seeded)."""
    labels = strata(labels)
    if not 2 <= k <= len(labels):
        raise UsageError(f"{k} folds need 2 <= folds <= {len(labels)} training images")
    rng = np.random.default_rng(seed)
    folds = [[] for _ in range(k)]
    offset = 0
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        for i, index in enumerate(members):  # round-robin, continuing where the last class stopped
            folds[(offset + i) % k].append(index)
        offset += len(members)
    return [np.sort(np.asarray(f, dtype=int)) for f in folds]
