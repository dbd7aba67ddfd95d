"""Run exported .tflite/.onnx files as a device or ONNX Runtime client would: no TensorFlow, no Keras, no keras_cnn.

    python deployed_fresh_process.py IMAGES_NPY OUT_NPZ FILE [FILE ...]

Each file gets the uint8 batch (quantized through the file's own input scale and zero point when it
is an integer model) and answers float32 probabilities, saved under the file's name.
"""

import sys

for name in ("tensorflow", "keras", "keras_cnn"):
    sys.modules[name] = None  # any import of these now raises ImportError

import os  # noqa: E402

import numpy as np  # noqa: E402

images_path, out_path, *files = sys.argv[1:]
images = np.load(images_path)


def run_tflite(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], images.shape)
    interpreter.allocate_tensors()
    scale, zero_point = inp["quantization"]
    x = images if not scale else np.clip(np.round(images / scale + zero_point), 0, 255).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])
    scale, zero_point = out["quantization"]
    return (y.astype(np.float32) - zero_point) * scale if scale else y


def run_onnx(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


results = {os.path.basename(f): (run_tflite(f) if f.endswith(".tflite") else run_onnx(f)) for f in files}
np.savez(out_path, **results)
print("imported:", sorted(m for m in ("tensorflow", "keras", "keras_cnn") if sys.modules.get(m) is not None))
