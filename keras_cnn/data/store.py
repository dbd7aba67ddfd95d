"""Where a split's decoded images live: memory, a memory-mapped file in the cache folder, or nowhere
(streamed from the files every epoch). `data.cache` chooses:

- memory: decode once into RAM (through the decode cache, so the next run on the same files loads
  them in a second instead of decoding them again);
- disk: decode once into the cache folder and read batches from the memory-mapped file;
- none: decode from the files every epoch (streaming: memory stays flat however large the set);
- auto (default): memory when the decoded set fits `data.memory_budget` (default a quarter of the
  RAM available), else none.

The decode cache lives in $KERAS_CNN_CACHE_DIR/decoded (default ~/.cache/keras_cnn), never in the
data folder (which may be read-only), keyed by the files' names, sizes and modification times, the
size and channels decoded to, and the decoder's version: a changed file makes a new entry. It is
capped at $KERAS_CNN_CACHE_MAX, least recently used entries going first (keras_cnn.cache).
"""

import hashlib
import json
import logging
import os

import numpy as np

from keras_cnn import cache
from keras_cnn.cache import cache_dir
from keras_cnn.config import parse_size
from keras_cnn.console import ProgressLine
from keras_cnn.data.decode import decode_files
from keras_cnn.data.splits import ArraySplit, FileSplit, MappedSplit
from keras_cnn.errors import UsageError
from keras_cnn.io import atomic_write
from keras_cnn.rules import format_size as _size

log = logging.getLogger("keras_cnn")
DECODER_VERSION = "tf-decode/1"


def available_memory():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(cfg):
    return parse_size(cfg.memory_budget) if cfg.memory_budget else available_memory() // 4


def decoded_bytes(split):
    return len(split) * int(np.prod(split.image_shape))


def place(split, cfg, *, verbose=0, label="images"):
    """The split where cfg.cache says its decoded images should live (FileSplits only; others as they are)."""
    if not isinstance(split, FileSplit):
        return split
    mode = cfg.cache
    if mode == "auto":
        mode = "memory" if decoded_bytes(split) <= memory_budget(cfg) else "none"
        if mode == "none" and verbose:
            log.info(
                "streaming %s from the files: decoded they would take %s, over data.memory_budget %s",
                label,
                _size(decoded_bytes(split)),
                _size(memory_budget(cfg)),
            )
    if mode == "none":
        return split
    images, ok = cached_decode(split, verbose=verbose, label=label, mapped=mode == "disk")
    if not ok.all():
        bad = split.paths[~ok]
        if cfg.on_corrupt == "error":
            raise UsageError(
                f"cannot decode {bad[0]} ({len(bad)} unreadable in all); remove it or pass --on-corrupt skip"
            )
        log.warning("skipped %d undecodable image(s), e.g. %s", len(bad), bad[0])
    labels = split.labels[ok]
    if not len(labels):
        raise UsageError(f"no decodable images among {len(split)} files, e.g. {split.paths[0]}")
    if mode == "disk":
        return MappedSplit(images, np.arange(len(labels)), labels)
    return ArraySplit(np.asarray(images), labels)


def cache_key(split):
    h = hashlib.sha256(f"{DECODER_VERSION}|{split.size}|{split.channels}".encode())
    for path in split.paths:
        stat = os.stat(path)
        h.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def cached_decode(split, *, verbose=0, label="images", mapped=False):
    """(decoded images of the readable files, ok mask), from the decode cache or decoded and stored there."""
    folder = cache_dir("decoded")
    key = cache_key(split)
    images_path, meta_path = os.path.join(folder, f"{key}.npy"), os.path.join(folder, f"{key}.json")
    if os.path.isfile(meta_path) and os.path.isfile(images_path):
        try:
            with open(meta_path) as f:
                ok = np.asarray(json.load(f)["ok"], bool)
            images = np.load(images_path, mmap_mode="r" if mapped else None, allow_pickle=False)
            if len(images) == ok.sum() and tuple(images.shape[1:]) == split.image_shape:
                cache.touch(folder, key)
                return images, ok
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged entry is rebuilt, never used
        log.warning("warning: the decode cache entry %s is damaged; decoding again", key)
    limit = cache.cache_limit()  # before the decode: a bad $KERAS_CNN_CACHE_MAX fails at once
    progress = ProgressLine(f"decoding {len(split):,} {label}", len(split), enabled=verbose > 0)
    images, ok = decode_files(split.paths, split.channels, split.size, progress=progress.update)
    progress.close()
    if not mapped and images.nbytes > limit:
        # a memory split needs no file: storing one over the cap would only evict everything else
        log.info(
            "not caching %s decoded (over %s=%s); the next run decodes again",
            _size(images.nbytes),
            cache.LIMIT_ENV,
            _size(limit),
        )
        return images, ok
    if not _store(images, ok, images_path, meta_path):
        return images, ok  # decoded in memory already: this run goes on from there
    cache.evict(folder, limit, keep=key)
    if images.nbytes > limit:
        log.warning(
            "warning: the decoded images (%s) exceed %s=%s; they stay while this run uses them",
            _size(images.nbytes),
            cache.LIMIT_ENV,
            _size(limit),
        )
    return (np.load(images_path, mmap_mode="r") if mapped else images), ok


def _store(images, ok, images_path, meta_path):
    """Write the entry atomically; a full or read-only cache folder only costs the next run a decode."""
    tmp = f"{images_path}.tmp-{os.getpid()}.npy"
    try:
        np.save(tmp, images)
        os.replace(tmp, images_path)
        atomic_write(meta_path, json.dumps({"ok": ok.tolist(), "decoder": DECODER_VERSION}))
        return True
    except OSError as err:
        log.warning("warning: cannot write the decode cache (%s); the next run decodes again", err.strerror)
        if os.path.exists(tmp):
            os.unlink(tmp)
        return False
