"""Evaluate a run directory (or an exported SavedModel) on a data split.

    python scripts/evaluate.py --run runs/resnet20-cifar10                 # its validation split
    python scripts/evaluate.py --run runs/mlp-mnist --data-dir other/mnist --split all
    python scripts/evaluate.py --run runs/a --run runs/b --run runs/c --output-dir ensemble   # an ensemble
    python scripts/evaluate.py --model exports/resnet20-cifar10/2/model_int8.tflite   # an exported file

--model takes an export's SavedModel folder, .tflite or .onnx file (LiteRT / ONNX Runtime on the
CPU), so every format gives the same metrics. Several --run / --saved-model / --model form an
ensemble (CS231n): their probabilities are averaged.

Writes evaluation.json (accuracy, top-5, log loss), per_class.csv (precision, recall, f1),
confusion_matrix.csv and confusion_matrix.png into --output-dir (default <run>/eval-<split>).
A multi-label run's are mAP, micro F1 and exact match at the threshold it chose on validation,
and per class AP, precision, recall and F1 (no confusion matrix).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_cnn.cli.common import (
    ArgumentParser,
    add_labels_args,
    at_least,
    cli_entry,
    description_of,
    labels_assignments,
)
from keras_cnn.config import TrainConfig
from keras_cnn.data import load_data, prepare_data
from keras_cnn.errors import UsageError
from keras_cnn.evaluation import classification_metrics, run_predictor, write_evaluation
from keras_cnn.export import load_saved_model, serving_threshold
from keras_cnn.run_dir import RunDir
from keras_cnn.training.multi_label import multi_label_metrics

SPLITS = ("validation", "train", "test", "all")


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="evaluate.py", description=description_of(__doc__))
    parser.add_argument(
        "--run", action="append", default=[], help="a run directory (config.json + model.keras); repeat for an ensemble"
    )
    parser.add_argument(
        "--saved-model", action="append", default=[], help="an exported SavedModel version directory; repeatable"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="an exported .tflite or .onnx file (or SavedModel folder) with its config.json beside it; repeatable",
    )
    parser.add_argument(
        "--split",
        default="validation",
        choices=SPLITS,
        help="validation/train: the run's own split; test: the source's test split; all: every image of --data-dir",
    )
    parser.add_argument("--dataset", help="dataset name (default: the run's)")
    parser.add_argument("--data-dir", help="evaluate on data from here instead of the run's source")
    add_labels_args(parser, multi_label=False)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--output-dir")
    args = parser.parse_args(argv)
    labels_assignments(args)  # --labels FILE.csv is --data-dir FILE.csv
    at_least(args.batch_size, "--batch-size")
    if not args.run and not args.saved_model and not args.model:
        raise UsageError("pass --run RUN_DIR, --saved-model VERSION_DIR or --model FILE (several make an ensemble)")
    members = _members(args)
    record = members[0][1]
    first = (args.run + args.saved_model + args.model)[0]
    default_out = _default_folder(first) if len(members) == 1 else (args.output_dir or "ensemble-eval")
    split, class_names = _load_split(record, args)
    probabilities, labels = [], []
    for images, batch_labels in split.batches(args.batch_size):
        probabilities.append(np.mean([predict(images) for predict, _ in members], axis=0))
        labels.append(batch_labels)
    probabilities, labels = np.concatenate(probabilities), np.concatenate(labels)
    threshold = serving_threshold(record)
    if threshold is None:
        summary, per_class, confusion = classification_metrics(probabilities, labels, class_names)
    else:  # per-class AP and F1 at the threshold the run chose on validation
        summary, per_class = multi_label_metrics(probabilities, labels, class_names, threshold)
        confusion = None
    summary.update(
        split=args.split, source=args.data_dir or record["config"]["data"].get("data_dir"), members=len(members)
    )
    # One folder per evaluated file: model.tflite and model_int8.tflite of one export do not overwrite each other.
    suffix = "-" + os.path.basename(first).replace(".", "_") if len(members) == 1 and os.path.isfile(first) else ""
    out_dir = args.output_dir or os.path.join(default_out, f"eval-{args.split}{suffix}")
    try:
        write_evaluation(out_dir, summary, per_class, confusion, class_names)
    except OSError as err:
        raise UsageError(f"cannot write to {out_dir} ({err.strerror}); choose a writable --output-dir") from None
    what = f"ensemble of {len(members)}: " if len(members) > 1 else ""
    print(f"{what}{summary['images']} images: {_headline(summary)}; details in {out_dir}")
    return 0


def _headline(summary):
    if "mAP" in summary:
        mean_ap = "n/a" if summary["mAP"] is None else f"{summary['mAP']:.4f}"
        return (
            f"mAP {mean_ap}, micro F1 {summary['f1']:.4f} and exact match {summary['exact_match']:.4f} "
            f"at threshold {summary['threshold']:.2f}"
        )
    return (
        f"accuracy {summary['accuracy']:.4f}, top-5 {summary['top5_accuracy']:.4f}, log loss {summary['log_loss']:.4f}"
    )


def _members(args):
    """(predict, record) of each model named; an ensemble's members must answer the same question."""
    members = [_run_predictor(p) for p in args.run] + [_saved_model_predictor(p) for p in args.saved_model]
    members += [_saved_model_predictor(p) if os.path.isdir(p) else _file_predictor(p) for p in args.model]
    first = members[0][1]["data"]
    for _, other in members[1:]:
        if other["data"]["class_names"] != first["class_names"] or other["data"]["image_shape"] != first["image_shape"]:
            raise UsageError("the ensemble's members differ in classes or image shape; combine models of one dataset")
        if (serving_threshold(other) is None) != (serving_threshold(members[0][1]) is None):
            raise UsageError("the ensemble mixes multi-label and single-label models; combine models of one kind")
    return members


def _run_predictor(path):
    record = RunDir(path).read_record()  # first: a folder that is not a run is told so
    return run_predictor(path), record


def _saved_model_predictor(path):
    loaded = load_saved_model(path)
    record = RunDir(path).read_record()  # an export's version folder carries its run's record
    serve = loaded.signatures["serving_default"]
    return (lambda x: serve(images=tf.constant(x))["probabilities"].numpy()), record


def _file_predictor(path):
    from keras_cnn.deploy import runtime

    model = runtime.load(path)
    record = RunDir(os.path.dirname(os.path.abspath(path))).read_record()  # the export's config.json
    return model.predict, record


def _default_folder(path):
    """Evaluation files go beside what was evaluated: a run or export folder, or a file's folder."""
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def _load_split(record, args):

    cfg = TrainConfig.from_dict(record["config"])
    dataset = args.dataset or cfg.data.dataset
    if args.split == "all" or (args.data_dir and args.split == "test"):
        if not args.data_dir:
            raise UsageError("--split all needs --data-dir naming the images to evaluate")
        loaded = load_data(
            dataset,
            args.data_dir,
            image_size=cfg.data.image_size,
            on_corrupt=cfg.data.on_corrupt,
            multi_label=cfg.data.multi_label,
        )
        split = loaded.test if args.split == "test" else loaded.train
        names = loaded.class_names
    elif args.split == "test":
        loaded = load_data(
            dataset,
            cfg.data.data_dir,
            image_size=cfg.data.image_size,
            on_corrupt=cfg.data.on_corrupt,
            multi_label=cfg.data.multi_label,
        )
        split, names = loaded.test, loaded.class_names
    else:
        data_cfg = cfg.data if not args.data_dir else _replace(cfg.data, data_dir=args.data_dir, dataset=dataset)
        prepared = prepare_data(data_cfg)
        split = prepared.validation if args.split == "validation" else prepared.train
        names = prepared.class_names
    if split is None or len(split) == 0:
        raise UsageError(f"the data has no {args.split} split; choose another --split")
    expected = record.get("data", {}).get("class_names")
    if expected and list(expected) != list(names):
        raise UsageError(
            f"the data's classes ({len(names)}) differ from the model's ({len(expected)}); evaluate on data with the same classes"
        )
    return split, names


def _replace(data_cfg, **fields):

    return dataclasses.replace(data_cfg, **fields)


if __name__ == "__main__":
    raise SystemExit(main())
