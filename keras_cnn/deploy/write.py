"""Write the requested formats and export_report.json into an export's staging folder.

Called by export.write_saved_model after the SavedModel is staged and before the folder is renamed
into place, so a failed conversion or an interrupt leaves no half-written version behind.
"""

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from keras_cnn.config import TrainConfig
from keras_cnn.data import prepare_data
from keras_cnn.deploy import convert, report, runtime
from keras_cnn.deploy.formats import FORMATS, Format
from keras_cnn.errors import UsageError
from keras_cnn.interrupts import raise_if_requested
from keras_cnn.io import write_json
from keras_cnn.quiet import muted_stderr

log = logging.getLogger("keras_cnn")
REPORT = "export_report.json"
STOPPED = "while exporting (no version was written)"
CALIBRATION_IMAGES = 300  # int8 calibration sample: enough for stable activation ranges, seconds to run


@dataclasses.dataclass
class DeployRequest:
    formats: list[Format]
    validation: object | None  # the run's validation split (None: its data is gone)
    calibration: np.ndarray | None  # uint8 training images for int8 (None unless tflite-int8 is asked)
    calibration_seed: int | None = None


def write_formats(staging, functions, serving_models, request: DeployRequest):
    image_shape = (functions.height, functions.width, functions.channels)
    conversion_dir = os.path.join(staging, ".conversion")
    details = {}
    files = [f for f in request.formats if f.name != "savedmodel"]
    if files:
        convert.write_conversion_model(functions.probabilities, serving_models, image_shape, conversion_dir)
        try:
            for fmt in files:
                raise_if_requested(STOPPED)  # Ctrl-C between conversions: the staging folder goes
                log.info("converting to %s", fmt.name)
                try:
                    details[fmt.name] = convert.convert(
                        fmt, conversion_dir, os.path.join(staging, fmt.filename), request.calibration
                    )
                except (ValueError, tf.errors.OpError, RuntimeError) as err:
                    reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
                    raise UsageError(f"cannot convert to {fmt.name}: {reason}") from None
                if fmt.quantized:
                    details[fmt.name].update(quantization(os.path.join(staging, fmt.filename)))
                    details[fmt.name]["calibration_seed"] = request.calibration_seed
        finally:
            convert.remove(conversion_dir)
    raise_if_requested(STOPPED)
    scored = score_folder(staging, request.formats, details, request.validation, sample_images(request, image_shape))
    write_json(os.path.join(staging, REPORT), scored)
    return scored


def score_folder(folder, formats, details, validation, sample):
    """The report over an export folder's files (the SavedModel and each of `formats` present)."""
    serving = tf.saved_model.load(folder).signatures["serving_default"]
    predictors = {"savedmodel": (FORMATS["savedmodel"], _saved_model_predict(serving), folder, {})}
    for fmt in formats:
        if fmt.name != "savedmodel":
            path = os.path.join(folder, fmt.filename)
            predictors[fmt.name] = (fmt, runtime.load(path).predict, path, details.get(fmt.name, {}))
    scored = report.score(predictors, validation, sample)
    scored["formats"]["savedmodel"]["size_bytes"] = _saved_model_size(folder)
    return scored


def deploy_request(record, formats, calibration_images):
    """The run's validation split (for the report) and a seeded sample of its training split (for int8)."""
    cfg = TrainConfig.from_dict(record["config"]).data
    quantized = any(f.quantized for f in formats)
    try:
        prepared = prepare_data(cfg)
    except UsageError as err:
        if quantized:
            raise UsageError(
                f"tflite-int8 calibrates on the run's training images, which cannot be read: {err}"
            ) from None
        log.warning("warning: the run's data cannot be read (%s); export_report.json will have no accuracy", err)
        return DeployRequest(formats, None, None)
    calibration, seed = None, cfg.split_seed
    if quantized and calibration_images:
        count = min(calibration_images, len(prepared.train))
        picked = np.sort(np.random.default_rng(seed).choice(len(prepared.train), count, replace=False))
        calibration = prepared.train.take(picked).sample(count)
    return DeployRequest(formats, prepared.validation, calibration, seed)


def _saved_model_predict(serving):
    return lambda images: serving(images=tf.constant(images))["probabilities"].numpy()


def _saved_model_size(staging):
    files = [os.path.join(staging, "saved_model.pb"), os.path.join(staging, "variables")]
    return sum(report.file_size(p) for p in files if os.path.exists(p))


def sample_images(request, image_shape):
    """A batch for timing (and for agreement when the validation data is gone)."""
    if request.validation is not None and len(request.validation):
        return request.validation.sample(64)
    if request.calibration is not None:
        return request.calibration[:64]
    return np.random.default_rng(0).integers(0, 256, (64, *image_shape), dtype=np.uint8)


def quantization(path):
    """The scale and zero point of an integer file's input and output, as clients need them."""
    from ai_edge_litert.interpreter import Interpreter

    with muted_stderr():
        interpreter = Interpreter(model_path=path)

    def describe(detail):
        scale, zero_point = detail["quantization"]
        return {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}

    return {
        "input_quantization": describe(interpreter.get_input_details()[0]),
        "output_quantization": describe(interpreter.get_output_details()[0]),
    }
