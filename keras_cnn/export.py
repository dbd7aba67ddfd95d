"""SavedModel export for TensorFlow Serving, preprocessing inside the graph.

    export_run("runs/resnet20-cifar10", "exports")   # -> exports/resnet20-cifar10/<next version>/

A version directory holds a SavedModel with two signatures, both float32 whatever the
training precision, both loadable with plain `tf.saved_model.load` (no keras_cnn needed):
- `serving_default`: `images`, uint8 [None, H, W, C] -> `probabilities` [None, K] float32,
  `classes` [None] int64, `class_names` [None] string (the predicted class's name);
- `serve_image_bytes`: `image_bytes`, string [None] of encoded JPEG/PNG/GIF/BMP, decoded to C
  channels and resized (bilinear) to H x W inside the graph; same outputs.
A multi-label run's (data.multi_label) `probabilities` are per-class sigmoids, and both signatures
add `above_threshold` [None, K] bool: the classes at or above the threshold chosen on validation.
`images` must have exactly the training size (other sizes fail with an error naming the
expected shape); send files of any size through `image_bytes`. `loaded.class_names[0]` holds all K names. Beside the SavedModel: config.json and model.keras.
"""

import json
import os
import shutil

import keras
import tensorflow as tf

from keras_cnn.config import TrainConfig
from keras_cnn.data.decode import decode_image
from keras_cnn.data.pipeline import eval_inputs
from keras_cnn.deploy.formats import parse
from keras_cnn.deploy.write import CALIBRATION_IMAGES, STOPPED, deploy_request, write_formats
from keras_cnn.errors import UsageError
from keras_cnn.interrupts import raise_if_requested
from keras_cnn.io import DIR_MODE, FILE_MODE, make_private_dir
from keras_cnn.models import create_model
from keras_cnn.run_dir import RunDir
from keras_cnn.training.callbacks import RunCallback
from keras_cnn.training.multi_label import squash
from keras_cnn.training.precision import precision_policy


class ServingFunctions:
    """The two endpoints as plain functions over float32 members (one model, or an ensemble whose
    probabilities are averaged). Each member applies its run's evaluation transform (a center or
    tutorial crop) and normalization, so clients send whole images of the training size."""

    def __init__(self, members, class_names, image_shape, threshold=None):
        self.members = members  # [(model, normalizer, data config)]
        # Multi-label runs: one sigmoid per class, and the validation-chosen threshold.
        self.threshold = threshold
        self.height, self.width, self.channels = image_shape
        # A variable, not a constant: clients read the whole list as `loaded.class_names[0]`.
        self.class_names = tf.Variable(class_names, trainable=False, dtype=tf.string, name="class_names")
        self.images_spec = tf.TensorSpec([None, self.height, self.width, self.channels], tf.uint8, name="images")
        self.bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")

    def probabilities(self, images):
        """[N, K] float32: the members' softmax (multi-label: sigmoid) outputs, averaged."""
        to_probabilities = squash(self.threshold is not None)
        members = [
            to_probabilities(tf.cast(model(eval_inputs(images, data_cfg, normalizer), training=False), tf.float32))
            for model, normalizer, data_cfg in self.members
        ]
        return members[0] if len(members) == 1 else tf.add_n(members) / float(len(members))

    def _predict(self, images):
        probabilities = self.probabilities(images)
        classes = tf.argmax(probabilities, axis=-1)
        outputs = {
            "probabilities": probabilities,
            "classes": classes,
            "class_names": tf.gather(self.class_names, classes),
        }
        if self.threshold is not None:  # every class at or above the run's threshold: [N, K] bool
            outputs["above_threshold"] = probabilities >= self.threshold
        return outputs

    def serve_images(self, images):
        # Loaded signatures do not enforce the spec's H and W; a convnet with global pooling
        # would answer wrong-sized input with confident nonsense, so refuse it by name.
        check = tf.debugging.assert_equal(
            tf.shape(images)[1:3],
            tf.constant([self.height, self.width]),
            message=f"images must be [batch, {self.height}, {self.width}, {self.channels}] uint8; "
            "send other sizes as encoded files through the serve_image_bytes signature",
        )
        with tf.control_dependencies([check]):
            return self._predict(tf.identity(images))

    def serve_bytes(self, image_bytes):
        # The decoder training used (data/decode.py): JPEGs with the accurate integer IDCT, the same
        # bilinear resize, so the served pixels are the trained pixels.
        signature = tf.TensorSpec([self.height, self.width, self.channels], tf.uint8)
        return self._predict(
            tf.map_fn(
                lambda data: decode_image(data, self.channels, (self.height, self.width)),
                image_bytes,
                fn_output_signature=signature,
            )
        )


def build_from_record(record):
    """A fresh float32 model of the run's architecture (weight decay is irrelevant here)."""
    model = TrainConfig.from_dict(record["config"]).model  # either schema
    with precision_policy("float32"):
        shape = record["data"].get("input_shape") or record["data"]["image_shape"]  # older records: no crop
        return create_model(model.name, tuple(shape), len(record["data"]["class_names"]), **model.options)


def serving_threshold(record):
    """A multi-label run's threshold (0.5 where none was chosen), or None for a single-label run."""
    if not record["config"]["data"].get("multi_label"):
        return None
    return float(record.get("multi_label", {}).get("threshold", 0.5))


def float32_copy(model, record):
    """The same architecture under the float32 policy, with the trained weights."""
    copy = build_from_record(record)
    copy.set_weights(model.get_weights())
    return copy


def write_saved_model(model, record, normalizer, version_dir, *, members=None, deploy=None):
    """Write one version directory atomically: build it beside, then rename into place.

    members: [(model, record, normalizer)] of an ensemble, instead of the one model.
    deploy: a deploy.write.DeployRequest: the other formats and export_report.json, written before the rename.
    """
    base = os.path.dirname(os.path.abspath(version_dir))
    os.makedirs(base, exist_ok=True)
    remove_stale_staging(base)
    # TF Serving ignores non-numeric names; the pid lets the next export tell a dead writer's folder.
    staging = make_private_dir(base, f".staging-{os.getpid()}-")
    try:
        members = members or [(model, record, normalizer)]
        serving = [(float32_copy(m, r), n, TrainConfig.from_dict(r["config"]).data) for m, r, n in members]
        functions = ServingFunctions(
            serving, record["data"]["class_names"], tuple(record["data"]["image_shape"]), serving_threshold(record)
        )
        # keras.export.ExportArchive, not tf.saved_model.save on a tf.Module holding the model:
        # with the latter, TF1-style loaders (saved_model_cli run, TensorFlow Serving) fail with
        # "Could not find variable" on Keras 3 variables (keras-team/keras#20095, seen here).
        archive = keras.export.ExportArchive()
        for member, _, _ in serving:
            archive.track(member)
        archive.add_variable_collection("class_names", [functions.class_names])
        archive.add_endpoint("serving_default", functions.serve_images, input_signature=[functions.images_spec])
        archive.add_endpoint("serve_image_bytes", functions.serve_bytes, input_signature=[functions.bytes_spec])
        archive.write_out(staging, verbose=False)
        with open(os.path.join(staging, "config.json"), "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        for i, (member, _, _) in enumerate(serving):
            member.save(os.path.join(staging, "model.keras" if len(serving) == 1 else f"member-{i}.keras"))
        if deploy is not None:
            raise_if_requested(STOPPED)

            write_formats(staging, functions, [member for member, _, _ in serving], deploy)
        _readable_by_all(staging)
        os.chmod(staging, DIR_MODE)
        os.rename(staging, version_dir)  # fails if the version appeared meanwhile: never overwrite one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version_dir


def _readable_by_all(root):
    """TensorFlow writes some SavedModel files 0600; a serving process under another user must read them."""
    for directory, subdirs, files in os.walk(root):
        for name in subdirs:
            os.chmod(os.path.join(directory, name), DIR_MODE)
        for name in files:
            os.chmod(os.path.join(directory, name), FILE_MODE)


def remove_stale_staging(base):
    """Staging folders of exports that were killed mid-write (their process is gone)."""
    for entry in os.listdir(base):
        if not entry.startswith(".staging-"):
            continue
        pid = entry.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_saved_model(path):
    """tf.saved_model.load, with a missing or damaged SavedModel as one line naming it."""
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UsageError(f"{path} is not a SavedModel directory (no saved_model.pb); give an export version directory")
    try:
        return tf.saved_model.load(path)
    except Exception as err:  # protobuf's DecodeError, TF's OpErrors, ValueError: all mean a damaged export
        raise UsageError(
            f"cannot load the SavedModel in {path} ({type(err).__name__}); it is damaged: export it again"
        ) from None


def next_version(base):
    versions = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def export_run(
    run_dir: str,
    export_dir: str,
    *,
    checkpoint: str | None = None,
    name: str | None = None,
    formats: str = "savedmodel",
    calibration_images: int = CALIBRATION_IMAGES,
) -> str:
    """Export a run's final model (or a checkpoint's weights) as <export_dir>/<name>/<next version>/:
    the SavedModel, the other `formats` (comma-separated, see deploy/formats.py) and export_report.json.

    Holds the run's lock while it reads, so an export never sees a training run's half-written state.
    """
    chosen = parse(formats)  # an unknown format or a missing converter, before any work
    run = RunDir(run_dir)
    record = run.read_record()
    run.data_record()
    with run.lock():
        normalizer = run.load_normalizer()
        model = run.load_model() if checkpoint is None else run.load_weights(build_from_record(record), checkpoint)
    deploy = deploy_request(record, chosen, calibration_images)
    return _write_next_version(
        os.path.join(export_dir, name or run.name),
        lambda version: write_saved_model(model, record, normalizer, version, deploy=deploy),
    )


def export_ensemble(run_dirs, export_dir, name, *, formats="savedmodel", calibration_images=CALIBRATION_IMAGES):
    """One SavedModel averaging several runs' probabilities (same classes and image shape), with the
    same two signatures (and the other `formats`, each averaging inside its graph): <export_dir>/<name>/<next version>/."""
    chosen = parse(formats)
    members = []
    for path in run_dirs:
        run = RunDir(path)
        record = run.read_record()
        run.data_record()
        with run.lock():
            members.append((run.load_model(), record, run.load_normalizer()))
    first = members[0][1]["data"]
    for (_, record, _), path in zip(members[1:], run_dirs[1:]):
        if (
            record["data"]["class_names"] != first["class_names"]
            or record["data"]["image_shape"] != first["image_shape"]
        ):
            raise UsageError(
                f"{path} differs from {run_dirs[0]} in classes or image shape; an ensemble needs one dataset"
            )
        if (serving_threshold(record) is None) != (serving_threshold(members[0][1]) is None):
            raise UsageError(f"{path} and {run_dirs[0]}: one is multi-label, the other not; ensemble runs of one kind")
    record = {**members[0][1], "ensemble": [os.path.abspath(p) for p in run_dirs]}
    # The first member's validation split scores the ensemble (all members share the dataset).
    deploy = deploy_request(record, chosen, calibration_images)
    return _write_next_version(
        os.path.join(export_dir, name),
        lambda version: write_saved_model(None, record, None, version, members=members, deploy=deploy),
    )


def _write_next_version(base, write):
    for _ in range(5):  # another exporter may take the version we picked; take the next
        version_dir = os.path.join(base, str(next_version(base)))
        try:
            return write(version_dir)
        except (OSError, tf.errors.OpError) as err:
            if not os.path.isdir(version_dir):
                reason = err.strerror if isinstance(err, OSError) else err.message.splitlines()[0]
                raise UsageError(
                    f"cannot write {base} ({reason}); free some space or choose another --export-dir"
                ) from None
    raise UsageError(f"could not claim a new version under {base}; retry")


class ExportOnFinish(RunCallback):
    """Writes <run>/saved_model/1/ when a run ends without diverging: the version TF Serving loads
    straight from the run. Runs last among on_train_end hooks, so restored best weights are exported."""

    def on_train_end(self, logs=None):
        run = self.run
        if not run.chief or (logs or {}).get("status") == "diverged":
            return
        version_dir = os.path.join(run.run_dir.saved_model_dir, "1")
        if os.path.isdir(version_dir):
            return  # a rerun of a finished run: the export is already there
        write_saved_model(run.built.model, run.run_dir.read_record(), run.data.normalizer, version_dir)
