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


def activation_statistics(model, images, *, training=True):
    """Per activation layer: mean, std, fraction of zeros, fraction saturated (tanh/sigmoid).

    Training mode by default (batch statistics in BatchNorm), as in the first training step.
    """
    layers = activation_layers(model)
    if not layers:
        return []
    probe = keras.Model(model.inputs[0], [layer.output for layer in layers])
    outputs = probe(images, training=training)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    stats = []
    for layer, out in zip(layers, outputs):
        values = tf.cast(out, tf.float32).numpy()
        kind = activation_kind(layer)
        if kind == "tanh":
            saturated = float(np.mean(np.abs(values) > 0.99))
        elif kind == "sigmoid":
            saturated = float(np.mean((values < 0.01) | (values > 0.99)))
        else:
            saturated = None
        stats.append(
            {
                "layer": layer.name,
                "activation": kind,
                "mean": float(values.mean()),
                "std": float(values.std()),
                "fraction_zero": float(np.mean(values == 0)),
                "fraction_saturated": saturated,
                "values": values,
            }
        )
    return stats


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
