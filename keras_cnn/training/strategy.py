"""tf.distribute strategy from a name: auto | default | mirrored | multi_worker."""

import functools
import json
import os

import tensorflow as tf

from keras_cnn.config import STRATEGIES
from keras_cnn.errors import UsageError, choose


def get_strategy(name="auto"):
    """`auto`: MirroredStrategy over all GPUs when there are several, else the default strategy.

    `mirrored` mirrors over every visible GPU, or over the logical CPU devices when there is no
    GPU (tests split the CPU in two); `multi_worker` reads the cluster from TF_CONFIG.
    """
    choose("strategy", name, STRATEGIES)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UsageError("strategy multi_worker needs TF_CONFIG describing the cluster; set it on every worker")
        return _multi_worker()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto" and len(gpus) > 1 or name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return _mirrored(tuple(devices))
    return tf.distribute.get_strategy()


# One strategy object per device set and process: a second MirroredStrategy over the same
# devices reuses collective instance keys, and its all-reduces then meet the first one's
# (seen here: "Shape mismatch in the collective instance" when two runs share a process).
@functools.cache
def _mirrored(devices):
    return tf.distribute.MirroredStrategy(list(devices))


@functools.cache
def _multi_worker():
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief():
    """The worker that writes files: task 0 of `worker`, or the `chief` task, or a lone process."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    return task.get("type") == "chief" or (
        task.get("type") == "worker" and task.get("index") == 0 and "chief" not in config.get("cluster", {})
    )
