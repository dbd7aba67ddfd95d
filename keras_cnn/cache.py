"""The one folder keras_cnn writes outside the folders a user names: $KERAS_CNN_CACHE_DIR, default
~/.cache/keras_cnn. It holds

    decoded/    decoded image folders (data.cache memory/disk), the large part, capped: see below
    headers/    image sizes read from file headers, per file list (a few KB per 1,000 files)
    verified/   stamps of TFRecord folders whose checksums were verified (empty files)
    crashes/    tracebacks of commands that failed with no run folder to write them to

decoded/ is capped at $KERAS_CNN_CACHE_MAX (default 5GB): after an entry is written, the least
recently used entries go until the folder fits, never the entry in use (a disk-mode split larger
than the cap stays while it trains, and goes first next time). `keras-cnn-cache info|clean` shows
and empties the folder.
"""

import os
import time

from keras_cnn.rules import parse_size

CACHE_ENV = "KERAS_CNN_CACHE_DIR"
LIMIT_ENV = "KERAS_CNN_CACHE_MAX"
DEFAULT_LIMIT = "5GB"
KINDS = ("decoded", "headers", "verified", "crashes")


def cache_root():
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "keras_cnn")


def cache_dir(*parts, create=True):
    path = os.path.join(cache_root(), *parts)
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def cache_limit():
    """decoded/'s cap in bytes, from $KERAS_CNN_CACHE_MAX (a size such as 5GB, 500MB, or 0: no decode cache)."""
    text = os.environ.get(LIMIT_ENV) or DEFAULT_LIMIT
    if text.strip() == "0":
        return 0
    return parse_size(text, LIMIT_ENV)


# ----------------------------------------------------------------------------- decoded entries
# An entry is <key>.npy (the images) and <key>.json (which files decoded); its mtime is its last use.


def entries(folder):
    """[(last used, bytes, key)] of the decoded entries in `folder`, oldest first."""
    found = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    for name in names:
        key, ext = os.path.splitext(name)
        if ext not in (".npy", ".json") or ".tmp-" in name:
            continue
        try:
            stat = os.stat(os.path.join(folder, name))
        except FileNotFoundError:  # another process evicted it meanwhile
            continue
        used, size = found.get(key, (0.0, 0))
        found[key] = (max(used, stat.st_mtime), size + stat.st_size)
    return sorted((used, size, key) for key, (used, size) in found.items())


def touch(folder, key):
    """Mark an entry used now, so eviction takes the least recently used first."""
    now = time.time()
    for ext in (".npy", ".json"):
        try:
            os.utime(os.path.join(folder, key + ext), (now, now))
        except OSError:
            pass


def remove(folder, key):
    freed = 0
    for ext in (".json", ".npy"):  # the metadata first: a half-removed entry is never read as whole
        path = os.path.join(folder, key + ext)
        try:
            freed += os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            pass
    return freed


def evict(folder, limit, keep=None):
    """Remove least recently used entries (never `keep`) until `folder` holds at most `limit` bytes;
    returns the keys removed. A reader that has an entry memory-mapped keeps its pages (POSIX unlink)."""
    listed = entries(folder)
    total = sum(size for _, size, _ in listed)
    removed = []
    for _, size, key in listed:
        if total <= limit:
            break
        if key == keep:
            continue
        remove(folder, key)
        total -= size
        removed.append(key)
    return removed


def folder_bytes(path):
    total = count = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
                count += 1
            except FileNotFoundError:
                pass
    return total, count
