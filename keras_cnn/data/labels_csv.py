"""Labels from a CSV file: `path,label` rows (paths relative to the CSV), an optional `split` column.

The data source for photos whose classes are not folder names, and for multi-label data, where
`label` holds `;`-separated classes. Only the file is read here: which rows, which classes, which
split; the images are checked and streamed like an image folder's (data/sources.py).

Everything a careless CSV holds is refused in one line naming the row: unknown columns, empty
labels, files that are missing, a path listed twice, a class in validation or test that training
never shows (its accuracy could not be learned, and multi-label outputs are per class).
"""

import csv
import os

import numpy as np

from keras_cnn.errors import UsageError

COLUMNS = ("path", "label", "split")
SPLIT_VALUES = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
MULTI_LABEL_SEPARATOR = ";"


def is_labels_csv(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(".csv")


def read_labels_csv(path: str, *, multi_label: bool = False):
    """({split: (paths, labels)}, class_names): labels int32 class indices, or with multi_label an
    int32 multi-hot matrix (N, classes). Classes are the training rows' names, sorted."""
    rows = _rows(path)
    root = os.path.dirname(os.path.abspath(path))
    seen, by_split = {}, {}
    for line, row in rows:
        where = f"{path} line {line}"
        rel = (row.get("path") or "").strip()
        if not rel:
            raise UsageError(f"{where}: the path is empty; every row needs path,label")
        names = _label_names(row.get("label"), multi_label, where)
        split = (row.get("split") or "train").strip().lower()
        if split not in SPLIT_VALUES:
            raise UsageError(f"{where}: split {split!r} is not one of train, validation (val), test")
        full = os.path.normpath(os.path.join(root, rel))
        if full in seen:
            raise UsageError(f"{where}: {rel} is listed twice (first on line {seen[full]}); keep one row per image")
        seen[full] = line
        by_split.setdefault(SPLIT_VALUES[split], []).append((full, names, where))
    if "train" not in by_split:
        raise UsageError(f"{path} has no training rows (split empty or train); add some")
    _check_files(path, [p for items in by_split.values() for p, _, _ in items])
    class_names = sorted({n for _, names, _ in by_split["train"] for n in names})
    if len(class_names) < 2:
        raise UsageError(f"{path}: the training rows name {len(class_names)} class; classification needs at least 2")
    index = {n: i for i, n in enumerate(class_names)}
    listed = {}
    for split, items in by_split.items():
        for _, names, where in items:
            unknown = [n for n in names if n not in index]
            if unknown:
                raise UsageError(
                    f"{where}: class {unknown[0]!r} ({split}) has no training rows; "
                    "add training images of it or drop the row"
                )
        paths = [p for p, _, _ in items]
        listed[split] = (paths, _encode([names for _, names, _ in items], index, multi_label))
    return listed, class_names


def _rows(path):
    """[(line number, row dict)], after the header is checked."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            if not header:
                raise UsageError(f"{path} is empty; a labels CSV starts with the header path,label")
            unknown = [h for h in header if h not in COLUMNS]
            missing = [c for c in ("path", "label") if c not in header]
            if unknown or missing:
                what = f"unknown column(s) {', '.join(unknown)}" if unknown else f"no {' or '.join(missing)} column"
                raise UsageError(f"{path}: {what}; a labels CSV has the columns path,label and optionally split")
            reader.fieldnames = header
            rows = []
            for row in reader:
                if None in row:  # more fields than the header names (DictReader files them under None)
                    raise UsageError(
                        f"{path} line {reader.line_num}: more fields than the header's; quote labels that hold commas"
                    )
                if any((v or "").strip() for v in row.values()):  # blank lines are not rows
                    rows.append((reader.line_num, row))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"cannot read {path} as a CSV file ({err}); check the file") from None
    if not rows:
        raise UsageError(f"{path} has a header but no rows; add one path,label row per image")
    return rows


def _label_names(value, multi_label, where):
    value = (value or "").strip()
    if multi_label:
        names = sorted({n.strip() for n in value.split(MULTI_LABEL_SEPARATOR) if n.strip()})
    else:
        if MULTI_LABEL_SEPARATOR in value:
            raise UsageError(
                f"{where}: label {value!r} holds several classes; pass --multi-label, or give one class per row"
            )
        names = [value] if value else []
    if not names:
        raise UsageError(f"{where}: the label is empty; give every image its class (or drop the row)")
    return names


def _check_files(path, files):
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise UsageError(
            f"{path}: {len(missing)} listed image(s) do not exist, e.g. {missing[0]}; "
            "paths are relative to the CSV's folder"
        )


def _encode(label_lists, index, multi_label):
    if not multi_label:
        return np.asarray([index[names[0]] for names in label_lists], np.int32)
    hot = np.zeros((len(label_lists), len(index)), np.int32)
    for row, names in enumerate(label_lists):
        hot[row, [index[n] for n in names]] = 1
    return hot
