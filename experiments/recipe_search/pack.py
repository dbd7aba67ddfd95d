"""Pack the CIFAR-10 JPEGs into one blob + offsets (carried to the GPU machine; never committed).

    python pack.py CIFAR10_TRAIN_FOLDER       # e.g. ../../../shared/data/cifar10/train
"""
import os, sys, numpy as np
if len(sys.argv) != 2:
    sys.exit(__doc__)
root = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
classes = sorted(os.listdir(root))
blobs, offsets, labels = [], [0], []
for k, c in enumerate(classes):
    for f in sorted(os.listdir(os.path.join(root, c))):
        b = open(os.path.join(root, c, f), "rb").read()
        blobs.append(b); offsets.append(offsets[-1] + len(b)); labels.append(k)
open(os.path.join(here, "cifar_blob.bin"), "wb").write(b"".join(blobs))
np.save(os.path.join(here, "cifar_offsets.npy"), np.array(offsets, np.int64))
np.save(os.path.join(here, "cifar_labels.npy"), np.array(labels, np.int64))
print(len(labels), offsets[-1])
