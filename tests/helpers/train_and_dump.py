"""Run keras_cnn.train on a config given as JSON and dump the final weights (for process tests).

python train_and_dump.py CONFIG_JSON WEIGHTS_NPZ
"""

import json
import sys

import numpy as np

import keras_cnn
from keras_cnn.config import TrainConfig

if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        cfg = TrainConfig.from_dict(json.load(f))
    result = keras_cnn.train(cfg)
    np.savez(sys.argv[2], **{v.path.replace("/", "__"): v.numpy() for v in result.model.weights})
    print(f"status={result.status} loss={result.history[-1]['train_loss']:.6f}", flush=True)
