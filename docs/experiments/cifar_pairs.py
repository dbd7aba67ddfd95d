"""The multi-label experiment's data: pairs of CIFAR-10 training images side by side, labelled with both.

    python docs/experiments/cifar_pairs.py ../shared/data/cifar10/train /tmp/pairs --pairs 6000
    python scripts/train.py --labels /tmp/pairs/labels.csv --multi-label --model resnet20 ...

Each 32x64 image joins two images of different classes (left and right, drawn without reuse), so
every row of labels.csv has two classes ("cat;ship"). The first 5/6 of the pairs are training rows,
the rest validation (the `split` column), built from disjoint source images.
"""

import argparse
import csv
import os

import numpy as np
from PIL import Image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a CIFAR-10 image folder (root/<class>/*.jpg)")
    parser.add_argument("out", help="where the pair images and labels.csv go")
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    classes = sorted(d for d in os.listdir(args.source) if os.path.isdir(os.path.join(args.source, d)))
    files = [(c, os.path.join(args.source, c, f)) for c in classes for f in sorted(os.listdir(os.path.join(args.source, c)))]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(files))
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    rows, used, i = [], 0, 0
    while len(rows) < args.pairs and used + 1 < len(order):
        (a_cls, a), (b_cls, b) = files[order[used]], files[order[used + 1]]
        used += 2
        if a_cls == b_cls:
            continue
        image = Image.new("RGB", (64, 32))
        image.paste(Image.open(a).convert("RGB"), (0, 0))
        image.paste(Image.open(b).convert("RGB"), (32, 0))
        name = f"images/{i:05d}.png"
        image.save(os.path.join(args.out, name))
        rows.append({"path": name, "label": f"{a_cls};{b_cls}"})
        i += 1
    for row_index, row in enumerate(rows):  # of the pairs made: a small source makes fewer than asked
        row["split"] = "train" if row_index < len(rows) * 5 // 6 else "validation"
    with open(os.path.join(args.out, "labels.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} pairs in {args.out}/labels.csv")


if __name__ == "__main__":
    main()
