"""Optimizer, learning-rate schedule, losses and weight EMA, built from a TrainConfig."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.config import ScheduleConfig
from keras_cnn.optimizers import OPTIMIZERS, learning_rate_at


@keras.saving.register_keras_serializable(package="keras_cnn")
class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, base_lr, cfg, steps_per_epoch, total_steps):
        self.base_lr, self.cfg = base_lr, cfg
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps

    def __call__(self, step):
        return learning_rate_at(step, self.base_lr, self.cfg, self.steps_per_epoch, self.total_steps)

    def get_config(self):
        # The schedule section as a plain dict, so Keras's from_config rebuilds the same schedule.
        return {
            "base_lr": self.base_lr,
            "cfg": dataclasses.asdict(self.cfg),
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
        }

    @classmethod
    def from_config(cls, config):
        section = config["cfg"]
        if isinstance(section, dict):
            section = ScheduleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
        return cls(config["base_lr"], section, config["steps_per_epoch"], config["total_steps"])


def build_optimizer(opt, sched, *, num_replicas, steps_per_epoch, total_steps, precision, learning_rate=None):
    """Keras optimizer for the config, from the OPTIMIZERS table (keras_cnn.optimizers).

    learning_rate: a schedule to use instead of the configured one (the LR range test's ramp).
    """
    base_lr = opt.learning_rate * (num_replicas if opt.scale_lr_with_replicas else 1)
    lr = learning_rate or Schedule(base_lr, sched, steps_per_epoch, total_steps)
    optimizer = OPTIMIZERS[opt.name].build(opt, {"learning_rate": lr, "clipnorm": opt.clipnorm})
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer, lr


def per_example_loss(opt, num_classes, multi_label=False):
    """Per-example loss of (int labels, float32 logits), the shape compute_average_loss needs.
    multi_label: labels are multi-hot rows and every class is its own sigmoid (binary cross-entropy,
    averaged over the classes as Keras's binary_crossentropy is)."""
    if multi_label:

        def multi_label_loss(labels, logits):
            targets = tf.cast(labels, tf.float32)
            if opt.label_smoothing:  # Keras's binary convention: towards 0.5
                targets = targets * (1.0 - opt.label_smoothing) + opt.label_smoothing / 2
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(targets, logits), axis=-1)

        return multi_label_loss

    def loss(labels, logits):
        targets = tf.one_hot(labels, num_classes)
        if opt.label_smoothing:
            targets = targets * (1.0 - opt.label_smoothing) + opt.label_smoothing / num_classes
        if opt.loss == "categorical_crossentropy":
            return tf.nn.softmax_cross_entropy_with_logits(targets, logits)
        if opt.loss == "binary_crossentropy":
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(targets, logits), axis=-1)
        return tf.reduce_sum(tf.square(tf.nn.softmax(logits) - targets), axis=-1)

    return loss


class WeightEMA:
    """Exponential moving average of every float model variable, BatchNorm statistics included.

    decay_t = min(decay, (1 + t) / (10 + t)) as in the TF CIFAR-10 tutorial, so early
    averages are not dominated by the random initialization. Keras's own `use_ema`
    skips both the warm-up and the BatchNorm statistics.
    """

    def __init__(self, model, decay):
        self.decay = decay
        self.sources = [v for v in model.weights if v.dtype == "float32"]
        self.shadows = [
            tf.Variable(
                v.value,
                trainable=False,
                name=f"ema/{i}",
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            for i, v in enumerate(self.sources)
        ]

    def update(self, step):
        step = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + step) / (10.0 + step))
        for shadow, source in zip(self.shadows, self.sources):
            shadow.assign(decay * shadow + (1.0 - decay) * source.value)

    def swap(self):
        """Exchange live and averaged values (call twice to undo)."""
        for shadow, source in zip(self.shadows, self.sources):
            live = np.array(source.numpy())
            source.assign(shadow.numpy())
            shadow.assign(live)
