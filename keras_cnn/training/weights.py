"""`--weights`: pretrained weights for a keras_* model's backbone.

    load_backbone_weights(model, "imagenet")                 # Keras's own download, into its cache
    load_backbone_weights(model, "backbone.weights.h5")      # backbone.save_weights(...) of this architecture
    load_backbone_weights(model, "resnet50.keras")           # a saved keras.applications model (top or not)
    load_backbone_weights(model, "runs/keras_resnet50-pets") # a keras_cnn run: its final model.keras

Weights are matched layer by layer by name and shape (keras.applications names its layers the same
in every build, at every input size); the classifier is never taken: it is built for this run's
classes. Anything that leaves a backbone layer without its weights is another architecture, and a
UsageError.
"""

import hashlib
import os

import keras
import numpy as np

from keras_cnn.data.records import file_sha256
from keras_cnn.errors import UsageError
from keras_cnn.models.applications import APPLICATIONS, BACKBONE, make_backbone, registered_name
from keras_cnn.run_dir import RunDir

SOURCES_HELP = "imagenet, none, or a path: a .weights.h5, a .keras file or a keras_cnn run folder"


def load_backbone_weights(model: keras.Model, source: str) -> dict:
    """Set the backbone of keras_* `model` from `source`; returns where they came from, for the run record:
    {"source", "sha256" (of the file, for a file), "values_sha256" (of the weights as loaded)}."""
    target = model.get_layer(BACKBONE)
    application = type_of(model)
    record = {"source": source}
    if source == "imagenet":
        donor = _imagenet(application, target.input_shape[1:])
    elif os.path.isdir(source):
        donor = RunDir(source).load_model()
    elif os.path.isfile(source):
        record["sha256"] = file_sha256(source)
        donor = _from_file(source, application, target.input_shape[1:])
    else:
        raise UsageError(f"--weights {source} does not exist; give {SOURCES_HELP}")
    copy_by_name(_backbone_of(donor), target, source)
    record["values_sha256"] = values_sha256(target)
    return record


def type_of(model: keras.Model) -> str:
    """The keras.applications class a keras_* model was built from (its registered name)."""
    return next(a for a in APPLICATIONS if registered_name(a) == model.name)


def _imagenet(application, input_shape):
    try:
        return make_backbone(application, input_shape, weights="imagenet")
    except Exception as err:  # keras.utils.get_file raises a bare Exception for a failed download
        if "URL fetch failure" not in str(err) and not isinstance(err, OSError):
            raise
        raise UsageError(
            f"cannot download the ImageNet weights of {application} (no network?); on a machine with internet "
            f"they are cached once in Keras's folder (~/.keras/models), or pass --weights PATH ({SOURCES_HELP})"
        ) from None


def _from_file(path, application, input_shape):
    if path.endswith(".keras"):
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as err:  # noqa: BLE001  (a damaged zip, an unknown layer: all one answer)
            raise UsageError(f"--weights {path} is not a readable .keras model ({type(err).__name__}: {err})") from None
    if not path.endswith(".weights.h5"):
        raise UsageError(f"--weights {path}: expected {SOURCES_HELP}")
    donor = make_backbone(application, input_shape)
    try:
        donor.load_weights(path)
    except Exception as err:  # noqa: BLE001  (h5py and Keras raise several kinds for a foreign file)
        raise UsageError(
            f"--weights {path} holds no {application} backbone (include_top=False) weights; "
            f"save them with backbone.save_weights(...) ({type(err).__name__})"
        ) from None
    return donor


def _backbone_of(donor):
    try:
        return donor.get_layer(BACKBONE)
    except ValueError:
        return donor  # a keras.applications model itself


def copy_by_name(donor: keras.Model, target: keras.Model, source: str) -> None:
    """Every weighted layer of `target` from `donor`'s layer of the same name, all checked before any is set."""
    layers = {layer.name: layer for layer in donor.layers}
    pairs = []
    for layer in (layer for layer in target.layers if layer.weights):
        found = layers.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if found is None or [tuple(w.shape) for w in found.weights] != shapes:
            raise UsageError(
                f"--weights {source} is another architecture: it has no layer {layer.name!r} of the "
                f"backbone's shapes {shapes}; give weights of the same keras.applications model"
            )
        pairs += zip(layer.weights, found.weights, strict=True)
    for variable, value in pairs:
        variable.assign(value)


def values_sha256(model: keras.Model) -> str:
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return digest.hexdigest()
