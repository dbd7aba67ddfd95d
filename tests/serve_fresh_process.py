"""Load an exported SavedModel with plain TensorFlow, keras_cnn made unimportable.

    python serve_fresh_process.py SAVED_MODEL IMAGES_NPY OUT_NPZ [IMAGE_FILE ...]

Calls serving_default on the uint8 batch and serve_image_bytes on the files' bytes, then
checks that wrong input gives errors from the signature while the process carries on.
"""

import sys

sys.modules["keras_cnn"] = None  # any import of keras_cnn now raises ImportError

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

path, images_path, out_path, *files = sys.argv[1:]
loaded = tf.saved_model.load(path)
serve = loaded.signatures["serving_default"]
serve_bytes = loaded.signatures["serve_image_bytes"]
images = np.load(images_path)
by_array = serve(images=tf.constant(images))
by_bytes = serve_bytes(image_bytes=tf.constant([open(f, "rb").read() for f in files]))
errors = {}
for case, call in {
    "wrong_dtype": lambda: serve(images=tf.constant(images.astype(np.float32))),
    "wrong_size": lambda: serve(images=tf.constant(np.zeros((1, 7, 7, images.shape[-1]), np.uint8))),
    "undecodable": lambda: serve_bytes(image_bytes=tf.constant([b"definitely not an image"])),
}.items():
    try:
        call()
        errors[case] = "no error"
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as err:
        errors[case] = type(err).__name__ + ": " + str(err).strip().splitlines()[0][:200]
np.savez(
    out_path,
    probabilities=by_array["probabilities"].numpy(),
    classes=by_array["classes"].numpy(),
    class_names=by_array["class_names"].numpy().astype(str),
    bytes_probabilities=by_bytes["probabilities"].numpy(),
    all_class_names=loaded.class_names[0].numpy().astype(str),
    errors=np.array([f"{k}={v}" for k, v in errors.items()]),
)
print("keras_cnn importable:", "keras_cnn" in sys.modules and sys.modules["keras_cnn"] is not None)
