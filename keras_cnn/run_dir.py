"""A run's folder and every file in it, owned by one object.

    <output_dir>/<name>/
        config.json          the record: config, resolved settings, data split, provenance
        history.csv          one row per epoch (HISTORY_COLUMNS)
        normalization.json   per-channel statistics (+ whitening.npy for pca_whiten)
        checkpoints/         ckpt-eEEEE-bBBBBB.npz (the last few) and best.npz
        model.keras          the final model
        saved_model/1/       the SavedModel TensorFlow Serving loads
        tensorboard/         train/ and validation/ scalars
        tracking.json        with --track mlflow: the MLflow run per tracking URI (keras_cnn.tracking.state)
    <output_dir>/runs.csv    one row per run (RUNS_COLUMNS)

Training, export, evaluation and the tuner read and write runs only through RunDir, so a
file's name, format and safety rules live in one place.
"""

import contextlib
import errno
import fcntl
import glob
import json
import logging
import os
import re
import shutil
import socket
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

import keras

from keras_cnn import checkpoints
from keras_cnn.config import SCHEMA_VERSION, TrainConfig
from keras_cnn.data import Normalizer
from keras_cnn.errors import RunDamaged, UsageError
from keras_cnn.io import append_row, atomic_write, csv_text, fault_point, read_csv, write_json

log = logging.getLogger("keras_cnn")
# A checkpoint's variables by group name: model, optimizer, ema.
Groups = dict[str, Sequence[Any]]

HISTORY_COLUMNS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_top5_accuracy",
    "ema_val_accuracy",
    "images_per_sec",
    "seconds",
]
RUNS_COLUMNS = [
    "run",
    "run_id",
    "model",
    "dataset",
    "parameters",
    "epochs",
    "best_val_accuracy",
    "final_val_accuracy",
    "seconds",
    "images_per_sec",
    "status",
]
# The run folder this process last created or resumed, where a CLI saves a crash log.
active_run: str | None = None
CHECKPOINT_PATTERN = re.compile(r"ckpt-e(\d+)-b(\d+)\.npz$")
TEMP_PREFIXES = (".tmp-", ".staging-")


def run_name(cfg: TrainConfig) -> str:
    return cfg.run.name or f"{cfg.model.name}-{cfg.data.dataset}"


class RunDir:
    """The files of one run. Nothing is created until `create` (a bad flag leaves no trace)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    @classmethod
    def for_config(cls, cfg: TrainConfig) -> "RunDir":
        return cls(os.path.join(cfg.run.output_dir, run_name(cfg)))

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    @property
    def config_path(self) -> str:
        return self.file("config.json")

    @property
    def history_path(self) -> str:
        return self.file("history.csv")

    @property
    def model_path(self) -> str:
        return self.file("model.keras")

    @property
    def checkpoints_dir(self) -> str:
        return self.file("checkpoints")

    @property
    def saved_model_dir(self) -> str:
        return self.file("saved_model")

    @property
    def tensorboard_dir(self) -> str:
        return self.file("tensorboard")

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    @property
    def output_dir(self) -> str:
        return os.path.dirname(os.path.normpath(self.path))

    def exists(self) -> bool:
        return os.path.exists(self.config_path)

    # Each part of a run and whether it is a folder: a file in a folder's place (or the reverse) is damage.
    PARTS = {
        "config.json": False,
        "history.csv": False,
        "normalization.json": False,
        "model.keras": False,
        "checkpoints": True,
        "saved_model": True,
        "tensorboard": True,
    }

    def damaged_parts(self) -> list[str]:
        """Parts that exist with the wrong kind (a file where a folder belongs, or the reverse)."""
        wrong = []
        for part, is_dir in self.PARTS.items():
            path = self.file(part)
            if os.path.lexists(path) and (os.path.isdir(path) != is_dir or os.path.islink(path)):
                wrong.append(part)
        return wrong

    # ------------------------------------------------------------------ the record

    def read_record(self) -> dict[str, Any]:
        """config.json as a dict, checked for shape; one line naming the file when it is not a record."""
        path = self.config_path
        if os.path.lexists(path) and not os.path.isfile(path):
            raise RunDamaged(f"{path} is not a file; the run is damaged: rerun with --overwrite to replace it")
        if not os.path.isfile(path):
            raise UsageError(f"{self.path} has no config.json; give a run directory written by train.py")
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise RunDamaged(
                f"cannot read {path} ({err}); it is damaged: rerun with --overwrite to replace the run"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise RunDamaged(f"{path} is not a keras_cnn run record; rerun with --overwrite to replace the run")
        version = record.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RunDamaged(
                f"{path} has schema version {version!r}, newer than this keras_cnn reads "
                f"({SCHEMA_VERSION}); upgrade keras_cnn, or pass --overwrite to replace the run"
            )
        return record

    def read_config(self) -> TrainConfig:
        try:
            return TrainConfig.from_dict(self.read_record()["config"])
        except UsageError as err:
            if "--overwrite" in str(err):
                raise
            raise RunDamaged(
                f"{self.config_path} holds an unusable config ({err}); rerun with --overwrite to replace the run"
            ) from None

    def write_record(self, record: dict[str, Any]) -> None:
        write_json(self.config_path, {**record, "schema_version": SCHEMA_VERSION})

    def run_id(self) -> str | None:
        return str(self.read_record().get("run_id", ""))

    def data_record(self) -> dict[str, Any]:
        """The resolved data section: image shape, class names, split; refused for pre-export records."""
        record = self.read_record()
        if "data" not in record:
            raise UsageError(f"{self.config_path} predates exports (no data section); rerun the training")
        data: dict[str, Any] = record["data"]
        return data

    # ------------------------------------------------------------------ history

    def read_history(self) -> list[dict[str, Any]]:
        return [_typed_history_row(r) for r in read_csv(self.history_path)]

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        # Fine-tuning runs say each epoch's phase (training.finetune); other runs have none.
        columns = HISTORY_COLUMNS + (["phase"] if any("phase" in r for r in rows) else [])
        atomic_write(self.history_path, csv_text(rows, columns))

    # ------------------------------------------------------------- normalization

    def save_normalizer(self, normalizer: Normalizer) -> None:
        normalizer.save(self.path)

    def load_normalizer(self) -> Normalizer:
        try:
            normalizer: Normalizer = Normalizer.load(self.path)
            return normalizer
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RunDamaged(
                f"cannot read {self.file('normalization.json')} ({err}); rerun the training with --overwrite"
            ) from None

    # --------------------------------------------------------------- checkpoints

    def list_checkpoints(self) -> list[str]:
        found = glob.glob(os.path.join(self.checkpoints_dir, "ckpt-*.npz"))
        return sorted(p for p in found if CHECKPOINT_PATTERN.search(p) and os.path.isfile(p))

    def save_checkpoint(self, groups: Groups, state: dict[str, Any], *, keep: int, best: bool = False) -> None:
        os.makedirs(self.checkpoints_dir, exist_ok=True)
        payload = checkpoints.encode(groups, state)
        name = f"ckpt-e{state['epoch']:04d}-b{state['batch']:06d}.npz"
        atomic_write(os.path.join(self.checkpoints_dir, name), payload, mode="wb")
        if best:
            atomic_write(os.path.join(self.checkpoints_dir, "best.npz"), payload, mode="wb")
        for stale in self.list_checkpoints()[:-keep]:
            os.unlink(stale)

    def restore_latest(self, groups: Groups) -> dict[str, Any] | None:
        """Load the newest good checkpoint into `groups`; returns its state, or None when there is none.

        A damaged newest checkpoint gives one warning and the one before it is used; when every
        checkpoint is damaged, one line says so.
        """
        paths = self.list_checkpoints()
        damaged = []
        for path in reversed(paths):
            try:
                state, arrays = checkpoints.read(path)
            except checkpoints.DamagedCheckpoint as err:
                damaged.append(str(err))
                continue
            if damaged:
                log.warning("warning: %s; resuming from %s instead", damaged[0], os.path.basename(path))
            for name, variables in groups.items():
                checkpoints.assign(path, checkpoints.group(arrays, name), variables, name)
            restored: dict[str, Any] = state
            return restored
        if damaged:
            raise RunDamaged(
                f"no readable checkpoint in {self.checkpoints_dir} ({damaged[0]}); "
                "rerun with --overwrite to start the run over"
            )
        return None

    def load_weights(self, model: keras.Model, checkpoint: str | None = None) -> keras.Model:
        """Final weights into `model`: model.keras's, or a checkpoint's (its EMA where the run kept one)."""
        if checkpoint is None:
            model.set_weights(self.load_model().get_weights())
            return model
        if not os.path.isfile(checkpoint):
            raise UsageError(f"checkpoint {checkpoint} does not exist; list {self.checkpoints_dir}")
        try:
            _, arrays = checkpoints.read(checkpoint)
        except checkpoints.DamagedCheckpoint as err:
            raise UsageError(f"{err}; choose another checkpoint") from None
        checkpoints.assign(checkpoint, checkpoints.group(arrays, "model"), list(model.variables), "model")
        averaged = checkpoints.group(arrays, "ema")
        if averaged:  # WeightEMA's order: every float32 weight
            checkpoints.assign(checkpoint, averaged, [v for v in model.weights if v.dtype == "float32"], "ema")
        return model

    # --------------------------------------------------------------------- model

    def save_model(self, model: keras.Model) -> None:
        """model.save writes its zip in place; write beside and rename so a kill never leaves half."""
        tmp = self.file(f".tmp-{os.getpid()}-model.keras")
        try:
            model.save(tmp)
            fault_point("before_rename")
            os.replace(tmp, self.model_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_model(self) -> keras.Model:
        if not os.path.isfile(self.model_path):
            raise UsageError(
                f"{self.path} has no model.keras (unfinished run?); finish it by rerunning its train "
                "command, or pass --checkpoint"
            )
        try:
            return keras.models.load_model(self.model_path)
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as err:
            raise RunDamaged(
                f"cannot load {self.model_path} ({type(err).__name__}); it is damaged: export a "
                "checkpoint with --checkpoint, or retrain with --overwrite"
            ) from None

    # ------------------------------------------------------------------ lifecycle

    def create(self, record: dict[str, Any]) -> None:
        """Make the folder and write config.json once (a resumed run keeps its record)."""
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as err:
            raise UsageError(
                f"cannot create run directory {self.path} ({err.strerror}); choose a writable --output-dir"
            ) from None
        global active_run
        active_run = self.path
        self.remove_stale_temp_files()
        if not os.path.exists(self.config_path):
            self.write_record(record)

    def discard(self) -> None:
        """Remove this run's own folder (or a file in its place) for --overwrite; nothing outside it."""
        if not os.path.lexists(self.path):
            return
        if os.path.isdir(self.path) and not os.path.islink(self.path):
            trash = f"{self.path}.replaced-{os.getpid()}"
            os.replace(self.path, trash)  # atomic: a reader never sees a half-deleted run
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.unlink(self.path)

    def remove_stale_temp_files(self) -> None:
        """Temp files of a writer that was killed before its rename (one process owns a run dir)."""
        for directory in (self.path, self.checkpoints_dir, self.saved_model_dir):
            if not os.path.isdir(directory):
                continue
            for entry in os.listdir(directory):
                if entry.startswith(TEMP_PREFIXES) or (
                    entry.startswith(".")
                    and entry.count(".") >= 2
                    and not entry.startswith("..")
                    and not entry.endswith(".lock")
                ):
                    path = os.path.join(directory, entry)
                    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)

    @contextlib.contextmanager
    def lock(self, enabled: bool = True) -> Iterator[None]:
        """Hold the run's one-writer lock (flock) for the block; a second process is refused with one
        line naming the holder. The kernel drops a dead holder's lock, so it is simply taken over."""
        if not enabled:
            yield
            return
        path = os.path.join(self.output_dir, f".{self.name}.lock")
        created = not os.path.isdir(self.output_dir)
        fd = _acquire(path, self.path)
        try:
            yield
        finally:
            try:
                os.unlink(path)  # while still holding it: a waiter re-checks the inode and retries
            except OSError:
                pass
            os.close(fd)
            if created:  # a run refused before writing anything leaves no empty output folder behind
                with contextlib.suppress(OSError):
                    os.rmdir(self.output_dir)


def _acquire(path: str, run_path: str) -> int:
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {directory} ({err.strerror}); choose a writable --output-dir") from None
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise UsageError(
                    f"run {run_path} is in use by {holder}; wait for it to finish or choose another --name"
                ) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"host {socket.gethostname()} pid {os.getpid()}".encode())
            return fd
        os.close(fd)  # the holder unlinked it as we opened it: take the new file
    raise UsageError(f"could not lock {path}; retry")


def append_run_row(output_dir: str, row: dict[str, Any], *, replace: bool = False) -> None:
    """One row per run id in <output_dir>/runs.csv; replace=True updates it (an extended run)."""
    append_row(os.path.join(output_dir, "runs.csv"), row, RUNS_COLUMNS, unique="run_id", replace=replace)


def _typed_history_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if value in ("", None):
            out[key] = value
        elif key in ("epoch", "step"):
            out[key] = int(float(value))
        elif key == "phase":
            out[key] = value
        else:
            out[key] = float(value)
    return out
