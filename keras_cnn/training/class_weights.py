"""Loss weights per class for imbalanced data: `--class-weight balanced` or `--class-weight cat=2,dog=0.5`.

`balanced` is scikit-learn's (and Keras's `class_weight` recipes'): n / (k * count_c), so a class
with a twentieth of the others' images weighs twenty times as much and the weights average 1 over
the training images. A mapping names classes by their names (or label numbers); classes it leaves
out weigh 1. The weights multiply each training example's loss; evaluation is unweighted.
"""

import numpy as np

from keras_cnn.errors import UsageError


def class_weights(spec: str | None, labels: np.ndarray, class_names: list[str]) -> np.ndarray | None:
    """float32 weights, one per class, or None for an unweighted loss."""
    if spec is None or spec.strip() == "none":
        return None
    if np.ndim(labels) == 2:
        raise UsageError(
            "--class-weight weighs single-label classes; multi-label training weighs every class's "
            "binary loss alike (leave --class-weight out)"
        )
    k = len(class_names)
    counts = class_counts(labels, k)
    if spec.strip() == "balanced":
        empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise UsageError(
                f"--class-weight balanced: class {empty[0]!r} has no training images, so it has no frequency "
                "to invert; add some, or give weights by name (--class-weight CLASS=W,...)"
            )
        return (len(labels) / (k * counts)).astype("float32")
    return _mapping(spec, class_names)


def _mapping(spec: str, class_names: list[str]) -> np.ndarray:
    weights = np.ones(len(class_names), "float32")
    index = {name: i for i, name in enumerate(class_names)} | {str(i): i for i in range(len(class_names))}
    for item in spec.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name.strip() not in index:
            known = ", ".join(class_names[:6]) + (", ..." if len(class_names) > 6 else "")
            raise UsageError(
                f"--class-weight {spec!r}: {item.strip()!r} is not CLASS=WEIGHT for a class of this data ({known}); "
                "use balanced or CLASS=W,CLASS=W"
            )
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not np.isfinite(weight) or weight < 0:
            raise UsageError(f"--class-weight {spec!r}: the weight of {name.strip()!r} must be a number >= 0")
        weights[index[name.strip()]] = weight
    if not weights.any():
        raise UsageError(f"--class-weight {spec!r} weighs every class 0: nothing would train")
    return weights


def class_counts(labels: np.ndarray, k: int) -> np.ndarray:
    """Training images per class: a label's count, or for multi-hot labels the images holding the class."""
    labels = np.asarray(labels)
    return labels.sum(0) if labels.ndim == 2 else np.bincount(labels, minlength=k)


def describe_counts(labels: np.ndarray, class_names: list[str], weights: np.ndarray | None, limit: int = 12) -> str:
    """'training images per class: cat 500, dog 25 (weight 10.5), ...' for the run's start line."""
    counts = class_counts(labels, len(class_names))
    parts = []
    for i, name in enumerate(class_names[:limit]):
        weight = f" (weight {weights[i]:.3g})" if weights is not None else ""
        parts.append(f"{name} {counts[i]:,}{weight}")
    more = f", ... ({len(class_names) - limit} more)" if len(class_names) > limit else ""
    return "training images per class: " + ", ".join(parts) + more
