"""Multi-label metrics: per-class average precision, their mean (mAP), F1 at a threshold.

A multi-label model answers "which of these classes are in the image" with one sigmoid per class.
Ranking quality per class is average precision (the area under its precision-recall curve, as
scikit-learn's `average_precision_score` computes it: precision at each positive, averaged); a
deployed model also needs a yes/no per class, so one threshold is chosen on the validation split
(the one maximizing micro-averaged F1 over a grid), saved with the run, and used by evaluate.py,
predict.py and the SavedModel's `above_threshold` output.
"""

import logging

import numpy as np

from keras_cnn.training.callbacks import RunCallback

log = logging.getLogger("keras_cnn")
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """AP of one class: mean over its positives of the precision at their rank (ties broken by order).
    None when the class has no positive here (AP is undefined, and mAP skips it)."""
    positives = np.asarray(positives).astype(bool)
    if not positives.any():
        return None
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = positives[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def f1_scores(probabilities: np.ndarray, labels: np.ndarray, threshold: float):
    """(micro F1, per-class precision, recall, F1) of 'probability >= threshold' against multi-hot labels."""
    predicted = np.asarray(probabilities) >= threshold
    truth = np.asarray(labels).astype(bool)
    tp = (predicted & truth).sum(0).astype(np.float64)
    fp, fn = (predicted & ~truth).sum(0), (~predicted & truth).sum(0)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    return float(micro), precision, recall, f1


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The grid threshold with the best micro F1 (the lowest of equals)."""
    scores = [f1_scores(probabilities, labels, t)[0] for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(scores))])


def multi_label_metrics(probabilities, labels, class_names, threshold):
    """(summary, per-class rows): mAP, micro F1, exact-match accuracy at `threshold`; per class AP,
    support, precision, recall, F1."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels)
    aps = [average_precision(probabilities[:, i], labels[:, i]) for i in range(labels.shape[1])]
    micro, precision, recall, f1 = f1_scores(probabilities, labels, threshold)
    defined = [a for a in aps if a is not None]
    summary = {
        "images": int(len(labels)),
        "mAP": float(np.mean(defined)) if defined else None,
        "f1": micro,
        "threshold": float(threshold),
        "exact_match": float(((probabilities >= threshold) == labels.astype(bool)).all(1).mean()),
    }
    per_class = [
        {
            "class": name,
            "support": int(labels[:, i].sum()),
            "ap": aps[i],
            "precision": precision[i],
            "recall": recall[i],
            "f1": f1[i],
        }
        for i, name in enumerate(class_names)
    ]
    return summary, per_class


def squash(multi_label):
    """logits -> probabilities: one sigmoid per class for a multi-label run, else the softmax."""
    import tensorflow as tf

    return tf.sigmoid if multi_label else tf.nn.softmax


def probabilities_of(model, split, data_cfg, normalizer, batch=256):
    """(sigmoid probabilities, labels) of a model over a split, through the evaluation transform."""
    import tensorflow as tf

    from keras_cnn.data.pipeline import eval_inputs

    scores, labels = [], []
    for images, batch_labels in split.batches(batch):
        logits = model(eval_inputs(images, data_cfg, normalizer), training=False)
        scores.append(squash(True)(tf.cast(logits, tf.float32)).numpy())
        labels.append(batch_labels)
    return np.concatenate(scores), np.concatenate(labels)


class ThresholdOnFinish(RunCallback):
    """A multi-label run's threshold, chosen on validation with the final weights (after EMA and
    EarlyStopping's restore, before the export reads it) and saved in config.json with the run's mAP."""

    def on_train_end(self, logs=None):
        run = self.run
        if not (run.chief and run.cfg.data.multi_label) or (logs or {}).get("status") == "diverged":
            return
        if run.data.validation is None or not len(run.data.validation):
            log.warning("no validation split: the multi-label threshold stays 0.5 (set --val-size)")
            return
        scores, labels = probabilities_of(run.built.model, run.data.validation, run.cfg.data, run.data.normalizer)
        threshold = choose_threshold(scores, labels)
        summary, per_class = multi_label_metrics(scores, labels, run.data.class_names, threshold)
        record = run.run_dir.read_record()
        record["multi_label"] = {
            "threshold": threshold,
            "chosen_on": "validation (best micro F1)",
            "val_mAP": summary["mAP"],
            "val_f1": summary["f1"],
            "val_exact_match": summary["exact_match"],
            "val_ap": {row["class"]: row["ap"] for row in per_class},
        }
        run.run_dir.write_record(record)
        mean_ap = "n/a" if summary["mAP"] is None else f"{summary['mAP']:.4f}"
        log.info(
            "multi-label: validation mAP %s, micro F1 %.4f at threshold %.2f (chosen on validation, saved in config.json)",
            mean_ap,
            summary["f1"],
            threshold,
        )
