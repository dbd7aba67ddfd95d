"""Files a reader never sees half of: atomic whole-file writes and locked one-line appends.

Whole files (config.json, history.csv, plots, checkpoints) are written to a temp file beside
the target and renamed over it; shared tables (runs.csv, trials.csv) are appended or
rewritten under an exclusive flock. New files get the permissions the umask allows
(0644 under 022), so a serving process running as another user can read an export.
"""

import csv
import fcntl
import io
import json
import os
import signal
import tempfile


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()
FILE_MODE = 0o666 & ~UMASK
DIR_MODE = 0o777 & ~UMASK

_fault_counts = {}


def fault_point(site):
    """Fault injection for the reliability tests: KERAS_CNN_FAULT=<site>:<n> SIGKILLs this
    process the n-th time it reaches `site` (e.g. between writing a temp file and renaming it).
    Free when the variable is unset."""
    spec = os.environ.get("KERAS_CNN_FAULT")
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name == site:
        _fault_counts[site] = _fault_counts.get(site, 0) + 1
        if _fault_counts[site] == int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path, data, mode="w"):
    """Write a whole file so that readers see the old version or the new one, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; readers of the final file need the umask's bits
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fault_point("before_rename")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def make_private_dir(parent, prefix):
    """A fresh staging directory (tempfile.mkdtemp) with the umask's permissions, not 0700."""
    path = tempfile.mkdtemp(dir=parent, prefix=prefix)
    os.chmod(path, DIR_MODE)
    return path


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def csv_text(rows, columns, header=True):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_csv(path):
    """Rows of a CSV file as dicts of strings; [] when the file does not exist."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path, row, columns, *, unique=None, replace=False):
    """Append one CSV row under an exclusive lock, writing the header if the file is new.

    unique: a column whose value may appear once. A row already there is kept (a run killed
    after appending and rerun must not report itself twice) unless replace=True, which
    rewrites the table atomically with this row in its place (an extended run). The append
    itself is one os.write of a whole line on an O_APPEND descriptor: readers never see half a row.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        empty = os.fstat(fd).st_size == 0
        if unique and not empty:
            rows = read_csv(path)
            if any(r.get(unique) == str(row[unique]) for r in rows):
                if replace:
                    kept = [row if r.get(unique) == str(row[unique]) else r for r in rows]
                    atomic_write(path, csv_text(kept, columns))
                return
        fault_point("before_append")
        os.write(fd, csv_text([row], columns, header=empty).encode())
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def rewrite_locked(path, update, columns):
    """Rewrite a shared CSV table under an exclusive lock: rows = update(rows), atomically."""
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            rows = update(read_csv(path))
            known = list(columns) + [c for r in rows for c in r if c not in columns]
            atomic_write(path, csv_text(rows, list(dict.fromkeys(known))))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
