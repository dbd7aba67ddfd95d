"""Per-layer statistics of a model, and the LayerStats training callback that logs them each epoch.

The babysitting checks (keras_cnn.diagnostics) read the same statistics at initialization.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.data.pipeline import eval_inputs
from keras_cnn.io import atomic_write, csv_text
from keras_cnn.training.callbacks import RunCallback

ACTIVATION_TYPES = (
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
)


def activation_layers(model):
    return [layer for layer in model.layers if isinstance(layer, ACTIVATION_TYPES) or "maxout" in layer.name]


def activation_kind(layer):
    kind = getattr(layer, "activation", None)
    return getattr(kind, "__name__", layer.__class__.__name__.lower())


HISTOGRAM_VALUES = 200_000  # per layer, kept for the histograms: a 224-px layer has millions per image


def activation_statistics(model, images, *, training=True, batch_size=None):
    """Per activation layer: mean, std, fraction of zeros, fraction saturated (tanh/sigmoid).

    Training mode by default (batch statistics in BatchNorm), as in the first training step.
    `batch_size` runs the images through in chunks of that many (every layer's output of one chunk
    is held at once, which at photo sizes is ~100 MB per image); the statistics add up over the
    chunks, and `values` keeps up to HISTOGRAM_VALUES of each layer's outputs for its histogram.
    """
    layers = activation_layers(model)
    if not layers:
        return []
    probe = keras.Model(model.inputs[0], [layer.output for layer in layers])
    batch_size = batch_size or len(images)
    totals = [_Moments() for _ in layers]
    for start in range(0, len(images), batch_size):
        outputs = probe(images[start : start + batch_size], training=training)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for layer, out, moments in zip(layers, outputs, totals):
            moments.add(tf.cast(out, tf.float32).numpy(), activation_kind(layer))
        del outputs
    return [moments.row(layer.name, activation_kind(layer)) for layer, moments in zip(layers, totals)]


class _Moments:
    """Running sums of one layer's outputs over chunks (float64, so millions of values add exactly enough)."""

    def __init__(self):
        self.count = self.total = self.squares = self.zeros = self.saturated = 0.0
        self.kept = []

    def add(self, values, kind):
        self.count += values.size
        self.total += float(values.sum(dtype=np.float64))
        self.squares += float(np.square(values, dtype=np.float64).sum())
        self.zeros += float(np.count_nonzero(values == 0))
        if kind == "tanh":
            self.saturated += float(np.count_nonzero(np.abs(values) > 0.99))
        elif kind == "sigmoid":
            self.saturated += float(np.count_nonzero((values < 0.01) | (values > 0.99)))
        room = HISTOGRAM_VALUES - sum(v.size for v in self.kept)
        if room > 0:
            stride = max(1, values.size // HISTOGRAM_VALUES)  # evenly over the images, not the first rows
            self.kept.append(values.ravel()[::stride][:room].copy())

    def row(self, name, kind):
        mean = self.total / self.count
        return {
            "layer": name,
            "activation": kind,
            "mean": mean,
            "std": float(np.sqrt(max(self.squares / self.count - mean**2, 0.0))),
            "fraction_zero": self.zeros / self.count,
            "fraction_saturated": self.saturated / self.count if kind in ("tanh", "sigmoid") else None,
            "values": np.concatenate(self.kept),
        }


def kernels(model):
    return [v for v in model.trainable_weights if len(v.shape) >= 2]


class LayerStats(RunCallback):
    """Per epoch: sparsity after each activation, dead units, weight/gradient norms, update ratio.

    Written to <run>/layer_stats.csv (one row per layer and epoch) and to TensorBoard
    (<run>/tensorboard/layer_stats). Dead units: channels never positive over a probe batch of
    256 validation images. The update ratio is measured over the epoch's last compiled call:
    kernels are copied to the host only before that call, not after every call.
    """

    COLUMNS = ["epoch", "layer", "fraction_zero", "dead_units", "weight_norm", "gradient_norm", "update_ratio"]

    def on_train_begin(self, logs=None):
        run = self.run
        split = run.data.validation if run.data.validation is not None else run.data.train
        self.images = eval_inputs(split.sample(256), run.cfg.data, run.data.normalizer)
        self.labels = tf.constant(split.labels[:256])
        self.rows = []
        model = run.built.model
        layers = activation_layers(model)
        self.layers = layers
        self.probe = keras.Model(model.inputs[0], [layer.output for layer in layers]) if layers else None
        self.writer = (
            tf.summary.create_file_writer(os.path.join(run.run_dir.tensorboard_dir, "layer_stats"))
            if run.chief
            else None
        )

    def _snapshot(self, steps_to_end):
        self.snapshot = [v.numpy().copy() for v in kernels(self.run.built.model)]
        self.snapshot_steps = steps_to_end

    def on_epoch_begin(self, epoch, logs=None):
        self.snapshot = None
        if self.run.steps_per_epoch <= self.run.cfg.run.steps_per_call:  # the epoch is one call
            self._snapshot(self.run.steps_per_epoch)

    def on_train_batch_end(self, batch, logs=None):
        remaining = self.run.steps_per_epoch - (batch + 1)
        if 0 < remaining <= self.run.cfg.run.steps_per_call:  # the next call may be the epoch's last
            self._snapshot(remaining)

    def _layer_rows(self):
        model, rows = self.run.built.model, {}
        if self.probe is not None:
            outputs = self.probe(self.images, training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            for layer, out in zip(self.layers, outputs):
                values = tf.cast(out, tf.float32).numpy()
                active = (values > 0).reshape(-1, values.shape[-1]).any(axis=0)
                rows[layer.name] = {
                    "fraction_zero": float(np.mean(values == 0)),
                    "dead_units": float(1 - active.mean()),
                }
        with tf.GradientTape() as tape:
            logits = tf.cast(model(self.images, training=False), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(self.labels, logits))
        grads = dict(zip((v.path for v in model.trainable_variables), tape.gradient(loss, model.trainable_variables)))
        for i, v in enumerate(kernels(model)):
            weight, ratio = v.numpy(), None
            if self.snapshot is not None:
                ratio = float(
                    np.linalg.norm(weight - self.snapshot[i])
                    / max(np.linalg.norm(self.snapshot[i]), 1e-12)
                    / max(self.snapshot_steps, 1)
                )
            g = grads.get(v.path)
            rows.setdefault(v.path.rsplit("/", 1)[0], {}).update(
                weight_norm=float(np.linalg.norm(weight)),
                gradient_norm=float(tf.norm(g)) if g is not None else None,
                update_ratio=ratio,
            )
        return rows

    def on_epoch_end(self, epoch, logs=None):
        rows = self._layer_rows()
        if logs is not None:
            logs["dead_units_max"] = max((s.get("dead_units", 0) for s in rows.values()), default=0.0)
        if not self.run.chief:
            return
        with self.writer.as_default(step=epoch):
            for layer, stats in rows.items():
                for key, value in stats.items():
                    if value is not None:
                        tf.summary.scalar(f"{layer}/{key}", value)
        self.writer.flush()
        self.rows += [{"epoch": epoch + 1, "layer": layer, **stats} for layer, stats in rows.items()]
        atomic_write(self.run.run_dir.file("layer_stats.csv"), csv_text(self.rows, self.COLUMNS))
