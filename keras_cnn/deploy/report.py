"""export_report.json: each format scored on the run's validation split against the SavedModel,
with its size and its speed on this machine (batch-1 latency, batch-64 throughput)."""

import os
import platform
import time

import numpy as np

from keras_cnn.deploy import runtime
from keras_cnn.hardware import cpu_model

LATENCY_CALLS, THROUGHPUT_CALLS, THROUGHPUT_BATCH = 30, 5, 64


def file_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def score(predictors, split, sample_image):
    """predictors: {format name: (Format, predict, path, details)}, the SavedModel first.

    split: the validation split (None when its data is gone: accuracy is then left out and agreement
    is measured on sample_image's batch only)."""
    outputs = {name: [] for name in predictors}
    labels = []
    batches = split.batches(256) if split is not None else [(sample_image, None)]
    for images, batch_labels in batches:
        for name, (_, predict, _, _) in predictors.items():
            outputs[name].append(predict(images))
        if batch_labels is not None:
            labels.append(batch_labels)
    labels = np.concatenate(labels) if labels else None
    reference = np.concatenate(outputs["savedmodel"])
    rows = {}
    for name, (fmt, predict, path, details) in predictors.items():
        probabilities = np.concatenate(outputs[name])
        rows[name] = {
            "file": fmt.filename,
            "size_bytes": file_size(path),
            "validation_accuracy": None if labels is None else float((probabilities.argmax(1) == labels).mean()),
            "top1_agreement": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
            "max_abs_probability_difference": float(np.abs(probabilities - reference).max()),
            **timing(predict, sample_image),
            **details,
        }
    return {
        "machine": {"cpu": cpu_model(), "threads": runtime.threads(), "python": platform.python_version()},
        "validation_images": None if labels is None else int(len(labels)),
        "formats": rows,
    }


def timing(predict, image):
    one = image[:1]
    batch = np.repeat(one, THROUGHPUT_BATCH, axis=0)
    for _ in range(3):
        predict(one)
    latencies = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        predict(one)
        latencies.append(time.perf_counter() - start)
    predict(batch)
    rates = []
    for _ in range(THROUGHPUT_CALLS):
        start = time.perf_counter()
        predict(batch)
        rates.append(THROUGHPUT_BATCH / (time.perf_counter() - start))
    return {
        "latency_ms_batch1": round(float(np.median(latencies)) * 1e3, 3),
        f"images_per_s_batch{THROUGHPUT_BATCH}": round(float(np.median(rates)), 1),
    }


def table(report) -> str:
    """The report as a Markdown table (benchmark.py --mode serve, docs/performance.md)."""
    head = (
        "| format | size | validation accuracy | top-1 agreement | max abs diff | batch-1 latency | batch-64 images/s |"
    )
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    from keras_cnn.deploy.formats import FORMATS

    order = [n for n in FORMATS if n in report["formats"]]  # the JSON's keys are sorted
    for name in order:
        row = report["formats"][name]
        accuracy = "n/a" if row["validation_accuracy"] is None else f"{row['validation_accuracy']:.4f}"
        lines.append(
            f"| {name} | {row['size_bytes'] / 1e6:.2f} MB | {accuracy} | {row['top1_agreement']:.4f} "
            f"| {row['max_abs_probability_difference']:.2e} | {row['latency_ms_batch1']:.2f} ms "
            f"| {row[f'images_per_s_batch{THROUGHPUT_BATCH}']:,.0f} |"
        )
    return "\n".join(lines)
