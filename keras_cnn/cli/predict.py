"""Classify image files with an exported SavedModel: top-k classes with probabilities.

    python scripts/predict.py --model exports/resnet20-cifar10/1 cat.jpg ship.png --top-k 3

Uses only TensorFlow (the model's `serve_image_bytes` signature), as a serving client would.
"""

import numpy as np
import tensorflow as tf

from keras_cnn.cli.common import ArgumentParser, cli_entry
from keras_cnn.errors import UsageError
from keras_cnn.export import load_saved_model


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="predict.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported SavedModel version directory")
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, GIF, BMP)")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args(argv)
    if args.top_k < 1:
        raise UsageError("--top-k must be at least 1")


    loaded = load_saved_model(args.model)
    serve = loaded.signatures["serve_image_bytes"]
    class_names = [n.decode() for n in loaded.class_names[0].numpy()]
    for path in args.images:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise UsageError(f"cannot read {path} ({err.strerror})") from None
        try:
            out = serve(image_bytes=tf.constant([data]))
        except tf.errors.InvalidArgumentError:
            raise UsageError(f"{path} is not a decodable image (JPEG, PNG, GIF or BMP)") from None
        probabilities = out["probabilities"].numpy()[0]
        top = np.argsort(-probabilities)[: args.top_k]
        ranked = ", ".join(f"{class_names[i]} {probabilities[i]:.4f}" for i in top)
        print(f"{path}: {ranked}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
