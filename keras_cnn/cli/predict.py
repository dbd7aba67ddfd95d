"""Classify images with exported SavedModels: top-k classes with probabilities.

    python scripts/predict.py --model exports/resnet20-cifar10/1 cat.jpg ship.png --top-k 3
    python scripts/predict.py --model exports/a/1 --model runs/b photos/ 'more/*.png' --output predictions.csv

    python scripts/predict.py --model exports/resnet20-cifar10/2/model_int8.tflite cat.jpg

Images: files, folders (searched recursively for JPEG/PNG/GIF/BMP) and glob patterns. --model is a
SavedModel version folder (its `serve_image_bytes` signature, as a serving client would call it),
a run folder (its saved_model/1), or an exported .tflite / .onnx file (decoded and resized as in
training, then run by LiteRT / ONNX Runtime). Several --model form an ensemble: their
probabilities are averaged (CS231n's model ensembles). --output writes a CSV (path, then
class and probability for each of the top k) or JSON; without it, one line per image.
"""

import glob
import json
import logging
import os

import numpy as np
import tensorflow as tf

from keras_cnn.cli.common import ArgumentParser, at_least, cli_entry, description_of
from keras_cnn.data.sources import IMAGE_EXTENSIONS
from keras_cnn.errors import UsageError
from keras_cnn.export import load_saved_model, serving_threshold
from keras_cnn.io import atomic_write, csv_text
from keras_cnn.quiet import muted_stderr

log = logging.getLogger("keras_cnn")
BATCH = 64


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="predict.py", description=description_of(__doc__))
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="a SavedModel version folder, a run folder, or a .tflite/.onnx file; repeat it for an ensemble",
    )
    parser.add_argument("images", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--output", help="write the predictions to FILE.csv or FILE.json")
    args = parser.parse_args(argv)
    at_least(args.top_k, "--top-k")
    if args.output and not args.output.endswith((".csv", ".json")):
        raise UsageError(f"--output {args.output} must end in .csv or .json")
    models = [load_member(path) for path in args.model]
    class_names = check_same_classes(models, args.model)
    threshold = models[0][2]  # multi-label models: the classes at or above it are the answer
    files, named = expand(args.images)
    rows = []
    for start in range(0, len(files), BATCH):
        batch = files[start : start + BATCH]
        probabilities, kept = predict_batch(models, batch, named)
        for path, p in zip(kept, probabilities):
            top = np.argsort(-p)[: args.top_k]
            row = {"path": path, "top": [(class_names[i], float(p[i])) for i in top]}
            if threshold is not None:
                row["above_threshold"] = [class_names[i] for i in np.argsort(-p) if p[i] >= threshold]
            rows.append(row)
    write(rows, args.output, args.top_k, threshold)
    return 0


def load_member(path):
    """(predict(list of encoded images) -> probabilities, class names, multi-label threshold or None)
    of a SavedModel, a run folder's own saved_model/1, or an exported .tflite/.onnx file."""
    if os.path.isfile(path):
        return _file_member(path)
    version = path
    if not os.path.isfile(os.path.join(path, "saved_model.pb")) and os.path.isdir(
        os.path.join(path, "saved_model", "1")
    ):
        version = os.path.join(path, "saved_model", "1")
    loaded = load_saved_model(version)
    serve = loaded.signatures["serve_image_bytes"]
    return (
        lambda blobs: serve(image_bytes=tf.constant(blobs))["probabilities"].numpy(),
        [n.decode() for n in loaded.class_names[0].numpy()],
        _threshold(version),
    )


def _threshold(folder):
    """A multi-label export's threshold, from the run record beside it (older exports: none)."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return serving_threshold(json.load(f))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _file_member(path):
    """The file's runtime, fed the pixels training saw: decoded by data/decode.py, resized bilinearly."""
    from keras_cnn.data.decode import decode_image
    from keras_cnn.deploy import runtime
    from keras_cnn.run_dir import RunDir

    model = runtime.load(path)
    record = RunDir(os.path.dirname(os.path.abspath(path))).read_record()  # the export's config.json
    height, width, channels = record["data"]["image_shape"]

    def predict(blobs):
        images = np.stack([decode_image(tf.constant(b), channels, (height, width)).numpy() for b in blobs])
        return model.predict(images)

    return predict, list(record["data"]["class_names"]), serving_threshold(record)


def check_same_classes(models, paths):
    names, threshold = models[0][1], models[0][2]
    for (_, other, other_threshold), path in zip(models[1:], paths[1:]):
        if (other_threshold is None) != (threshold is None):
            raise UsageError(f"{path} and {paths[0]}: one is multi-label, the other not; ensemble models of one kind")
        if other != names:
            raise UsageError(
                f"{path} predicts other classes than {paths[0]}; an ensemble's members must share their classes"
            )
    return names


def expand(patterns):
    """Files from files, folders (recursive) and globs, in order; the set of files named one by one."""
    files, named = [], set()
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                os.path.join(d, f) for d, _, fs in os.walk(pattern) for f in fs if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif any(c in pattern for c in "*?["):
            found = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        else:
            found = [pattern]
            named.add(pattern)
        if not found:
            raise UsageError(f"{pattern} matches no image files ({', '.join(IMAGE_EXTENSIONS)})")
        files += found
    return files, named


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise UsageError(f"cannot read {path} ({err.strerror})") from None


def predict_batch(models, paths, named):
    """Averaged probabilities for the decodable images of a batch. An undecodable file named on the
    command line is an error; one found in a folder or by a glob is skipped with a warning."""
    data = [read_bytes(p) for p in paths]
    try:
        return _average(models, data), paths
    except tf.errors.InvalidArgumentError:
        pass
    kept, good = [], []
    for path, blob in zip(paths, data):  # find the undecodable ones, one at a time
        try:
            _average(models[:1], [blob])
            kept.append(path)
            good.append(blob)
        except tf.errors.InvalidArgumentError:
            if path in named:
                raise UsageError(f"{path} is not a decodable image (JPEG, PNG, GIF or BMP)") from None
            log.warning("warning: skipped %s: not a decodable image", path)
    return (_average(models, good) if good else np.zeros((0, 1))), kept


def _average(models, blobs):
    # libjpeg writes its warnings ("Corrupt JPEG data: 2 extraneous bytes ...") straight to file
    # descriptor 2 while the decoders run; the images still decode, and a file that fails to is
    # reported by the caller in one line. KERAS_CNN_VERBOSE=1 shows them.
    with muted_stderr():
        return np.mean([predict(blobs) for predict, *_ in models], axis=0)


def write(rows, output, k, threshold=None):
    if output is None:
        for row in rows:
            above = (
                f" (at or above {threshold:.2f}: {', '.join(row['above_threshold']) or 'none'})" if threshold else ""
            )
            print(f"{row['path']}: " + ", ".join(f"{name} {p:.4f}" for name, p in row["top"]) + above)
        return
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise UsageError(f"--output {output}: folder {directory} does not exist")
    if output.endswith(".json"):
        atomic_write(
            output,
            json.dumps(
                [
                    {
                        "path": r["path"],
                        "top": [{"class": c, "probability": p} for c, p in r["top"]],
                        **({"above_threshold": r["above_threshold"]} if "above_threshold" in r else {}),
                    }
                    for r in rows
                ],
                indent=2,
            )
            + "\n",
        )
        return
    columns = ["path"] + [f"{kind}_{i}" for i in range(1, k + 1) for kind in ("class", "probability")]
    if threshold is not None:
        columns.append("above_threshold")
    table = [
        {
            "path": r["path"],
            **({"above_threshold": ";".join(r["above_threshold"])} if "above_threshold" in r else {}),
            **{f"class_{i}": c for i, (c, _) in enumerate(r["top"], 1)},
            **{f"probability_{i}": round(p, 6) for i, (_, p) in enumerate(r["top"], 1)},
        }
        for r in rows
    ]
    atomic_write(output, csv_text(table, columns))
    print(f"{len(rows)} images -> {output}")


if __name__ == "__main__":
    raise SystemExit(main())
