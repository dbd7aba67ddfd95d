# Pack the CIFAR-10 JPEGs into one blob + offsets (carried to the GPU machine; never committed).
import os, numpy as np
root = "../../../shared/data/cifar10/train"
classes = sorted(os.listdir(root))
blobs, offsets, labels = [], [0], []
for k, c in enumerate(classes):
    for f in sorted(os.listdir(os.path.join(root, c))):
        b = open(os.path.join(root, c, f), "rb").read()
        blobs.append(b); offsets.append(offsets[-1] + len(b)); labels.append(k)
open("cifar_blob.bin", "wb").write(b"".join(blobs))
np.save("cifar_offsets.npy", np.array(offsets, np.int64)); np.save("cifar_labels.npy", np.array(labels, np.int64))
print(len(labels), offsets[-1])
