"""In a fresh process: `import keras_cnn`, load each model.keras given, and save its outputs on fixed inputs.

python reload_models.py OUT_NPZ INPUTS_NPZ MODEL.keras [MODEL.keras ...]
"""

import sys

import keras
import numpy as np

import keras_cnn  # noqa: F401  (registers every custom layer; nothing else is imported from it)

out_path, inputs_path, *paths = sys.argv[1:]
inputs = np.load(inputs_path)
outputs = {}
for path in paths:
    model = keras.models.load_model(path)
    name = model.name
    outputs[name] = keras.ops.convert_to_numpy(model(inputs[name], training=False))
np.savez(out_path, **outputs)
print("reloaded", len(outputs), flush=True)
