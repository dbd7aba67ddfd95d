"""Classification metrics from predicted probabilities: accuracy, top-5, log loss, per class."""

import os

import numpy as np
import tensorflow as tf

from keras_cnn import plots
from keras_cnn.data.pipeline import eval_inputs
from keras_cnn.io import atomic_write, csv_text, write_json
from keras_cnn.run_dir import RunDir
from keras_cnn.training.multi_label import squash


def classification_metrics(probabilities, labels, class_names):
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    n, k = probabilities.shape
    predicted = probabilities.argmax(1)
    top5 = np.argsort(-probabilities, axis=1)[:, : min(5, k)]
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted_counts, true_counts = confusion.sum(0), confusion.sum(1)
    precision = np.divide(tp, predicted_counts, out=np.zeros(k), where=predicted_counts > 0)
    recall = np.divide(tp, true_counts, out=np.zeros(k), where=true_counts > 0)
    per_class = [
        {
            "class": name,
            "support": int(true_counts[i]),
            "precision": precision[i],
            "recall": recall[i],
            "f1": 2 * precision[i] * recall[i] / (precision[i] + recall[i]) if precision[i] + recall[i] else 0.0,
        }
        for i, name in enumerate(class_names)
    ]
    summary = {
        "images": int(n),
        "accuracy": float((predicted == labels).mean()),
        "top5_accuracy": float((top5 == labels[:, None]).any(1).mean()),
        "log_loss": float(-np.log(np.clip(probabilities[np.arange(n), labels], 1e-15, 1.0)).mean()),
    }
    return summary, per_class, confusion


def write_evaluation(out_dir, summary, per_class, confusion, class_names):
    """evaluation.json, per_class.csv and (single-label: confusion is not None) the confusion matrix."""
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "evaluation.json"), summary)
    columns = ["class", "support", *(["ap"] if confusion is None else []), "precision", "recall", "f1"]
    atomic_write(os.path.join(out_dir, "per_class.csv"), csv_text(per_class, columns))
    if confusion is None:
        return
    rows = [
        {"true\\predicted": name, **{c: int(v) for c, v in zip(class_names, row)}}
        for name, row in zip(class_names, confusion)
    ]
    atomic_write(os.path.join(out_dir, "confusion_matrix.csv"), csv_text(rows, ["true\\predicted", *class_names]))
    plot_confusion(confusion, class_names, os.path.join(out_dir, "confusion_matrix.png"))


def plot_confusion(confusion, class_names, path):
    k = len(class_names)
    fig, ax = plots.plt.subplots(figsize=(max(5, 0.6 * k + 2), max(4, 0.6 * k + 1.5)))
    normalized = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (row-normalized)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    int(confusion[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if normalized[i, j] > 0.5 else "black",
                )
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    plots.save_figure(fig, path)


def run_predictor(run_dir):
    """probabilities(uint8 images) of a run's final model: its evaluation crop, its normalization,
    softmax (a multi-label run's: sigmoid)."""
    run = RunDir(run_dir)
    model, normalizer, data_cfg = run.load_model(), run.load_normalizer(), run.read_config().data
    to_probabilities = squash(data_cfg.multi_label)
    return lambda images: to_probabilities(
        tf.cast(model(eval_inputs(images, data_cfg, normalizer), training=False), tf.float32)
    ).numpy()


def run_probabilities(run_dir, images, batch=256):
    """Softmax probabilities of a run's final model on uint8 images (an array or a split)."""
    predict = run_predictor(run_dir)
    if hasattr(images, "batches"):
        return np.concatenate([predict(x) for x, _ in images.batches(batch)])
    return np.concatenate([predict(images[i : i + batch]) for i in range(0, len(images), batch)])


def ensemble_probabilities(run_dirs, images):
    """CS231n's model ensemble: the members' probabilities, averaged."""
    return np.mean([run_probabilities(r, images) for r in run_dirs], axis=0)
