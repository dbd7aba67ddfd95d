"""The checkpoint file: variable groups and the loop position in one .npz, verified when read.

    ckpt-e0003-b000120.npz: model/0..n, optimizer/0..m, ema/0..k arrays, and `state`, a JSON
    record {"epoch", "batch", "totals", "stopped", "sha256"}.

`sha256` covers every array, so a file damaged after it was written (a bad disk, a partial
copy) is told apart from a good one; checkpoints written before checksums existed still load.
Writes are atomic (temp file + rename) through keras_cnn.io.
"""

import hashlib
import io
import json
import zipfile

import numpy as np

from keras_cnn.errors import UsageError


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be read back as written (truncated, corrupted, not an .npz)."""


def _digest(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(value.dtype).encode())
        h.update(str(value.shape).encode())
        h.update(value.tobytes())
    return h.hexdigest()


def encode(groups, state):
    """The bytes of a checkpoint: `groups` maps a name to a list of variables (or arrays)."""
    arrays = {}
    for group, variables in groups.items():
        for i, v in enumerate(variables):
            arrays[f"{group}/{i}"] = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
    state = {**state, "sha256": _digest(arrays)}
    buffer = io.BytesIO()
    np.savez(buffer, state=np.frombuffer(json.dumps(state).encode(), np.uint8), **arrays)
    return buffer.getvalue()


def read(path):
    """(state, arrays) of a checkpoint, verified; DamagedCheckpoint if it is not what was written."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}  # reading each member checks its zip CRC
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DamagedCheckpoint(f"{path} cannot be read ({err})") from None
    if "state" not in arrays:
        raise DamagedCheckpoint(f"{path} has no state record")
    try:
        state = json.loads(arrays.pop("state").tobytes().decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedCheckpoint(f"{path} has an unreadable state record ({err})") from None
    expected = state.get("sha256")
    if expected is not None and _digest(arrays) != expected:
        raise DamagedCheckpoint(f"{path} does not match its checksum")
    return state, arrays


def group(arrays, name):
    """The arrays of one group, in variable order."""
    keys = sorted((k for k in arrays if k.startswith(f"{name}/")), key=lambda k: int(k.split("/")[1]))
    return [arrays[k] for k in keys]


def assign(path, stored, variables, group_name):
    """Assign stored arrays to variables, refusing another model's checkpoint with one line."""
    if len(stored) != len(variables):
        raise UsageError(
            f"checkpoint {path} holds {len(stored)} {group_name} variables, the run has "
            f"{len(variables)}; it belongs to another model"
        )
    for value, variable in zip(stored, variables):
        if tuple(value.shape) != tuple(variable.shape):
            raise UsageError(
                f"checkpoint {path} does not fit this model: {variable.path} is {tuple(variable.shape)} "
                f"here, {tuple(value.shape)} there (a different model or class count?)"
            )
    for value, variable in zip(stored, variables):
        variable.assign(value)
