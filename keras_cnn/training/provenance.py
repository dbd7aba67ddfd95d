"""What config.json records so a run can be reproduced: versions, commit, CPU, seed."""
import functools
import importlib.metadata
import os
import platform
import subprocess


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


def cpu_supports_bf16():
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def _git_commit():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def reproducibility_record(cfg):
    versions = {}
    for package in ("keras-cnn", "tensorflow", "keras", "numpy", "tensorflow-datasets"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    flags = cpu_flags()
    return {
        "packages": versions,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4"))),
        "seed": cfg.run.seed,
    }
