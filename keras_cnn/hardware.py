"""What this machine can do fast: CPU vector extensions and GPU compute capabilities."""

import functools
import platform


@functools.cache
def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_model():
    """lscpu's model name (/proc/cpuinfo), for every speed figure and run record."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_supports_bf16():
    """AMX or AVX512-BF16: oneDNN then runs bfloat16 convolutions natively (else it emulates them)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_has_amx():
    return "amx_bf16" in cpu_flags()


@functools.cache
def gpu_capabilities():
    """Compute capability (major, minor) of each visible GPU; [] on a CPU-only machine."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities
