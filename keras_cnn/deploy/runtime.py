"""Run an exported .tflite or .onnx file on the CPU: LiteRT's interpreter or ONNX Runtime, no TensorFlow.

    model = load("exports/resnet20-cifar10/3/model_int8.tflite")
    probabilities = model.predict(uint8_images)   # [N, H, W, C] uint8 -> [N, K] float32

Integer files are fed and read through the scale and zero point they carry, so every format
answers in float32 probabilities.
"""

import importlib.util
import os

import numpy as np

from keras_cnn.deploy.formats import EXTRA
from keras_cnn.errors import UsageError
from keras_cnn.quiet import muted_stderr


def threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load(path):
    """A TfliteModel or OnnxModel for a file; a missing runtime or a damaged file is one line."""
    if not os.path.isfile(path):
        raise UsageError(f"{path} does not exist; give a .tflite or .onnx file written by export.py")
    if not path.endswith((".tflite", ".onnx")):
        raise UsageError(f"{path} is neither a .tflite nor an .onnx file; give a file written by export.py --format")
    runtime = "ai_edge_litert" if path.endswith(".tflite") else "onnxruntime"
    if importlib.util.find_spec(runtime) is None:
        raise UsageError(f"running {os.path.basename(path)} needs {runtime}, which is not installed; {EXTRA}")
    try:
        return TfliteModel(path) if path.endswith(".tflite") else OnnxModel(path)
    except Exception as err:  # each runtime has its own errors for a truncated or foreign file
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot load {path} ({reason}); the file is damaged: export it again") from None


class TfliteModel:
    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        with muted_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate" from C++
            self.interpreter = Interpreter(model_path=path, num_threads=threads())
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = None
        self.input_shape = tuple(int(d) for d in self.input["shape"][1:])

    def predict(self, images):
        images = check_input(images, self.input_shape)
        if images.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input["index"], images.shape)
            self.interpreter.allocate_tensors()
            self.batch = images.shape[0]
        self.interpreter.set_tensor(self.input["index"], quantize(images, self.input))
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)


class OnnxModel:
    def __init__(self, path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads()
        options.log_severity_level = 3  # its warnings about unused initializers are not the user's business
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(int(d) for d in self.session.get_inputs()[0].shape[1:])

    def predict(self, images):
        images = check_input(images, self.input_shape)
        return np.asarray(self.session.run(None, {self.input_name: images})[0], np.float32)


def check_input(images, shape):
    images = np.asarray(images)
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != shape:
        raise UsageError(
            f"the model takes uint8 images of shape [N, {', '.join(map(str, shape))}], got {images.dtype} {list(images.shape)}"
        )
    return np.ascontiguousarray(images)


def quantize(images, detail):
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.uint8 and scale and (scale, zero_point) != (1.0, 0):
        q = np.round(images.astype(np.float32) / scale + zero_point)
        return np.clip(q, 0, 255).astype(np.uint8)
    return images.astype(detail["dtype"], copy=False)


def dequantize(values, detail):
    scale, zero_point = detail["quantization"]
    if np.issubdtype(values.dtype, np.integer) and scale:
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values.astype(np.float32, copy=False)
