"""What config.json records so a run can be reproduced: versions, commit, CPU, seed."""

import importlib.metadata
import os
import platform
import subprocess

from keras_cnn.hardware import cpu_flags


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
