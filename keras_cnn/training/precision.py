"""Which precision to train in, and the Keras dtype policy as a context manager.

`auto` picks the fastest safe precision for the hardware at hand: bfloat16 on CPUs with AMX
or AVX512-BF16 (oneDNN runs it natively there; measured accuracy matched float32,
docs/results.md), else float32; on GPUs bfloat16 from compute capability 8.0, float16 with
loss scaling on 7.x, else float32.
"""

import contextlib

import keras

from keras_cnn import hardware
from keras_cnn.config import PRECISIONS
from keras_cnn.errors import UsageError, choose


def auto_precision():
    gpus = hardware.gpu_capabilities()
    if gpus:
        lowest = min(gpus)
        return "mixed_bfloat16" if lowest >= (8, 0) else "mixed_float16" if lowest >= (7, 0) else "float32"
    return "mixed_bfloat16" if hardware.cpu_supports_bf16() else "float32"


def resolve_precision(name):
    """The Keras dtype policy name for a precision setting, checked against the hardware."""
    choose("precision", name, PRECISIONS)
    if name == "auto":
        return auto_precision()
    gpus = hardware.gpu_capabilities()
    if name == "mixed_bfloat16" and not (gpus or hardware.cpu_supports_bf16()):
        raise UsageError("mixed_bfloat16 needs a GPU or a CPU with AMX or AVX512-BF16; use --precision float32")
    if name == "mixed_float16" and not gpus:
        raise UsageError("mixed_float16 is for GPUs; on this CPU use float32 (or mixed_bfloat16 where supported)")
    return name


@contextlib.contextmanager
def precision_policy(policy):
    """Build models under Keras dtype policy `policy` (e.g. "mixed_bfloat16", "float64"), then restore
    the previous global policy, whatever happens inside."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(previous)
