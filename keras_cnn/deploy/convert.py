"""Converters from the serving graph to each file format, all through maintained converters:
TensorFlow's LiteRT converter (tf.lite.TFLiteConverter) and tf2onnx. No graph rewriting here.

Both converters read a small conversion SavedModel written next to the export (two endpoints
returning probabilities only: uint8 pixels, and float32 pixels for int8 calibration) rather than
the serving SavedModel, whose string outputs and shape assertion neither format carries. Reading
a SavedModel also freezes every variable the graph uses (the normalizer's included), which
converting a tf.function directly does not: LiteRT then fails with READ_VARIABLE (seen here).
"""

import logging
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.deploy.formats import Format
from keras_cnn.quiet import muted_stderr

UINT8_ENDPOINT, FLOAT_ENDPOINT = "pixels_uint8", "pixels_float32"
ONNX_OPSET = 17


def write_conversion_model(probabilities, members, image_shape, directory):
    """probabilities(images) -> [N, K] float32, over `members` (the float32 models it calls)."""
    archive = keras.export.ExportArchive()
    for member in members:
        archive.track(member)
    for name, dtype in ((UINT8_ENDPOINT, tf.uint8), (FLOAT_ENDPOINT, tf.float32)):
        spec = tf.TensorSpec([None, *image_shape], dtype, name="images")
        archive.add_endpoint(name, lambda images: {"probabilities": probabilities(images)}, input_signature=[spec])
    archive.write_out(directory, verbose=False)
    return directory


def convert(fmt: Format, conversion_dir: str, out_path: str, calibration: np.ndarray | None = None) -> dict:
    """Write fmt's file at out_path; returns what the report records about the conversion."""
    if fmt.name == "onnx":
        return _onnx(conversion_dir, out_path)
    endpoint = FLOAT_ENDPOINT if fmt.quantized else UINT8_ENDPOINT
    converter = tf.lite.TFLiteConverter.from_saved_model(conversion_dir, signature_keys=[endpoint])
    details: dict = {}
    if fmt.name == "tflite-fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt.quantized:
        # Full-integer: the float graph takes pixels as float32 in [0, 255], so calibration gives the
        # input a scale of about 1 and zero point 0; with uint8 inference input the file then takes
        # raw pixels (the exact scale and zero point are recorded beside it for other inputs).
        assert calibration is not None and len(calibration)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
        details["calibration_images"] = int(len(calibration))
    with _quiet_converter():
        flatbuffer = converter.convert()
    with open(out_path, "wb") as f:
        f.write(flatbuffer)
    return details


def _onnx(conversion_dir, out_path):
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(conversion_dir)
    concrete = loaded.signatures[UINT8_ENDPOINT]
    spec = concrete.structured_input_signature[1]["images"]
    function = tf.function(lambda images: concrete(images=images)["probabilities"], input_signature=[spec])
    # Frozen here, not by tf2onnx: from_function freezes variables but leaves captured tensors (Keras's
    # Normalization keeps its reshaped mean and variance as such, inside EfficientNet) as graph
    # inputs the ONNX file then demands ("Required inputs ... are missing from input feed").
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    with _quiet_converter():
        tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(),
            input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs],
            opset=ONNX_OPSET,
            output_path=out_path,
        )
    return {"opset": ONNX_OPSET}


class _quiet_converter(muted_stderr):
    """The converters log pages at INFO: tf2onnx's optimizer passes through logging, the MLIR
    quantizer's summary straight from C++."""

    def __enter__(self):
        self.levels = {name: logging.getLogger(name).level for name in ("tf2onnx", "absl")}
        for name in self.levels:
            logging.getLogger(name).setLevel(logging.ERROR)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        return super().__exit__(*exc)


def remove(directory):
    shutil.rmtree(directory, ignore_errors=True)
    return not os.path.exists(directory)
