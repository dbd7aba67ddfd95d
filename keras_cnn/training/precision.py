"""Which precision to train in: `auto` picks the fastest safe one for the hardware at hand.

On CPUs with AMX or AVX512-BF16 (Sapphire Rapids and later), oneDNN runs bfloat16
convolutions and matmuls several times faster than float32, and the measured accuracy
matched float32 (docs/performance.md); elsewhere float32. On GPUs: bfloat16 from compute
capability 8.0 (Ampere), float16 with loss scaling on 7.x, else float32.
"""
import functools

import tensorflow as tf

from keras_cnn.errors import UsageError, choose
from keras_cnn.training.provenance import cpu_supports_bf16

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@functools.cache
def _gpu_capabilities():
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def auto_precision():
    gpus = _gpu_capabilities()
    if gpus:
        lowest = min(gpus)
        return "mixed_bfloat16" if lowest >= (8, 0) else "mixed_float16" if lowest >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_supports_bf16() else "float32"


def resolve_precision(name):
    """The Keras dtype policy name for a precision setting, checked against the hardware."""
    choose("precision", name, PRECISIONS)
    if name == "auto":
        return auto_precision()
    gpus = _gpu_capabilities()
    if name == "mixed_bfloat16" and not (gpus or cpu_supports_bf16()):
        raise UsageError("mixed_bfloat16 needs a GPU or a CPU with AMX or AVX512-BF16; use --precision float32")
    if name == "mixed_float16" and not gpus:
        raise UsageError("mixed_float16 is for GPUs; on this CPU use float32 (or mixed_bfloat16 where supported)")
    return name
