"""SavedModel export for TensorFlow Serving, preprocessing inside the graph.

    export_run("runs/resnet20-cifar10", "exports")   # -> exports/resnet20-cifar10/<next version>/

A version directory holds a SavedModel with two signatures, both float32 whatever the
training precision, both loadable with plain `tf.saved_model.load` (no keras_cnn needed):
- `serving_default`: `images`, uint8 [None, H, W, C] -> `probabilities` [None, K] float32,
  `classes` [None] int64, `class_names` [None] string (the predicted class's name);
- `serve_image_bytes`: `image_bytes`, string [None] of encoded JPEG/PNG/GIF/BMP, decoded to C
  channels and resized (bilinear) to H x W inside the graph; same outputs.
`images` must have exactly the training size (other sizes fail with an error naming the
expected shape); send files of any size through `image_bytes`. `loaded.class_names[0]` holds all K names. Beside the SavedModel: config.json and model.keras.
"""
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_cnn.data import Normalizer
from keras_cnn.errors import UsageError
from keras_cnn.models import create_model


class ServingFunctions:
    """The two endpoints as plain functions over a float32 model; see the module docstring."""

    def __init__(self, model, normalizer, class_names):
        self.model = model
        self.normalizer = normalizer
        self.height, self.width, self.channels = model.input_shape[1:]
        # A variable, not a constant: clients read the whole list as `loaded.class_names[0]`.
        self.class_names = tf.Variable(class_names, trainable=False, dtype=tf.string, name="class_names")
        self.images_spec = tf.TensorSpec([None, self.height, self.width, self.channels], tf.uint8, name="images")
        self.bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")

    def _predict(self, images):
        logits = self.model(self.normalizer(images), training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        classes = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "classes": classes,
            "class_names": tf.gather(self.class_names, classes),
        }

    def serve_images(self, images):
        # Loaded signatures do not enforce the spec's H and W; a convnet with global pooling
        # would answer wrong-sized input with confident nonsense, so refuse it by name.
        check = tf.debugging.assert_equal(
            tf.shape(images)[1:3], tf.constant([self.height, self.width]),
            message=f"images must be [batch, {self.height}, {self.width}, {self.channels}] uint8; "
            "send other sizes as encoded files through the serve_image_bytes signature",
        )
        with tf.control_dependencies([check]):
            return self._predict(tf.identity(images))

    def serve_bytes(self, image_bytes):
        def decode(data):
            # JPEGs with the accurate integer IDCT: it decodes bit-identically to PIL, which the
            # training data went through; TF's default (fast) IDCT differs by up to 5 levels
            # on the CIFAR-10 files here, a train/serve skew.
            image = tf.cond(
                tf.io.is_jpeg(data),
                lambda: tf.io.decode_jpeg(data, channels=self.channels, dct_method="INTEGER_ACCURATE"),
                lambda: tf.io.decode_image(data, channels=self.channels, expand_animations=False),
            )
            image = tf.image.resize(image, [self.height, self.width], method="bilinear")
            return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

        signature = tf.TensorSpec([self.height, self.width, self.channels], tf.uint8)
        return self._predict(tf.map_fn(decode, image_bytes, fn_output_signature=signature))


def build_from_record(record):
    """A fresh float32 model of the run's architecture (weight decay is irrelevant here)."""
    cfg = record["config"]
    options = {k: v for k, v in cfg["model"].items() if k != "name" and v is not None}
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return create_model(cfg["model"]["name"], tuple(record["data"]["image_shape"]), len(record["data"]["class_names"]), **options)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model, record):
    """The same architecture under the float32 policy, with the trained weights."""
    copy = build_from_record(record)
    copy.set_weights(model.get_weights())
    return copy


def write_saved_model(model, record, normalizer, version_dir):
    """Write one version directory atomically: build it beside, then rename into place."""
    base = os.path.dirname(os.path.abspath(version_dir))
    os.makedirs(base, exist_ok=True)
    staging = tempfile.mkdtemp(dir=base, prefix=".staging-")  # TF Serving ignores non-numeric names
    try:
        serving = float32_copy(model, record)
        functions = ServingFunctions(serving, normalizer, record["data"]["class_names"])
        # keras.export.ExportArchive, not tf.saved_model.save on a tf.Module holding the model:
        # with the latter, TF1-style loaders (saved_model_cli run, TensorFlow Serving) fail with
        # "Could not find variable" on Keras 3 variables (keras-team/keras#20095, seen here).
        archive = keras.export.ExportArchive()
        archive.track(serving)
        archive.add_variable_collection("class_names", [functions.class_names])
        archive.add_endpoint("serving_default", functions.serve_images, input_signature=[functions.images_spec])
        archive.add_endpoint("serve_image_bytes", functions.serve_bytes, input_signature=[functions.bytes_spec])
        archive.write_out(staging, verbose=False)
        with open(os.path.join(staging, "config.json"), "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        serving.save(os.path.join(staging, "model.keras"))
        os.rename(staging, version_dir)  # fails if the version appeared meanwhile: never overwrite one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version_dir


def next_version(base):
    versions = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def export_run(run_dir, export_dir, *, checkpoint=None, name=None):
    """Export a run's final model (or a checkpoint's weights) as <export_dir>/<name>/<next version>/."""
    record_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(record_path):
        raise UsageError(f"{run_dir} has no config.json; give a run directory written by train.py")
    with open(record_path) as f:
        record = json.load(f)
    if "data" not in record:
        raise UsageError(f"{record_path} predates exports (no data section); rerun the training")
    normalizer = Normalizer.load(run_dir)
    model = _load_weights(run_dir, record, checkpoint)
    base = os.path.join(export_dir, name or os.path.basename(os.path.normpath(run_dir)))
    for _ in range(5):  # another exporter may take the version we picked; take the next
        version_dir = os.path.join(base, str(next_version(base)))
        try:
            return write_saved_model(model, record, normalizer, version_dir)
        except OSError as err:
            if not os.path.isdir(version_dir):
                raise UsageError(f"cannot write {base} ({err.strerror}); choose a writable --export-dir") from None
    raise UsageError(f"could not claim a new version under {base}; retry")


def _load_weights(run_dir, record, checkpoint):
    if checkpoint is None:
        path = os.path.join(run_dir, "model.keras")
        if not os.path.isfile(path):
            raise UsageError(f"{run_dir} has no model.keras (unfinished run?); pass --checkpoint or finish the run")
        return keras.models.load_model(path)
    from keras_cnn.training import checkpoints

    if not os.path.isfile(checkpoint):
        raise UsageError(f"checkpoint {checkpoint} does not exist; list {os.path.join(run_dir, 'checkpoints')}")
    model = build_from_record(record)
    checkpoints.restore_weights(checkpoint, model)
    return model
