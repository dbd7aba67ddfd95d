"""Show or empty keras_cnn's cache folder ($KERAS_CNN_CACHE_DIR, default ~/.cache/keras_cnn).

    keras-cnn-cache info                 # where it is, what each part holds, the decode cache's cap
    keras-cnn-cache clean                # empty it
    keras-cnn-cache clean --only decoded # only the decoded images (the large part)

The decode cache (decoded/) is capped at $KERAS_CNN_CACHE_MAX (default 5GB), least recently used
entries going first; the other parts are small. Nothing in it is needed: a run whose entry is gone
decodes its images again.
"""

import os
import shutil

from keras_cnn import cache
from keras_cnn.cli.common import ArgumentParser, cli_entry, description_of
from keras_cnn.rules import format_size as _size


def info():
    root = cache.cache_root()
    limit = cache.cache_limit()
    print(f"cache folder: {root}" + ("" if os.path.isdir(root) else " (not created yet)"))
    total = 0
    for kind in cache.KINDS:
        nbytes, files = cache.folder_bytes(os.path.join(root, kind))
        total += nbytes
        extra = ""
        if kind == "decoded":
            extra = f", {len(cache.entries(os.path.join(root, kind)))} entries, cap {_size(limit)} (${cache.LIMIT_ENV})"
        print(f"  {kind + '/':<10} {_size(nbytes):>9}  {files} files{extra}")
    print(f"  {'total':<10} {_size(total):>9}")
    return 0


def clean(only):
    root = cache.cache_root()
    freed = 0
    for kind in [only] if only else cache.KINDS:
        path = os.path.join(root, kind)
        freed += cache.folder_bytes(path)[0]
        shutil.rmtree(path, ignore_errors=True)
    print(f"removed {_size(freed)} from {os.path.join(root, only) if only else root}")
    return 0


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="keras-cnn-cache", description=description_of(__doc__))
    sub = parser.add_subparsers(dest="command", required=True, metavar="{info,clean}")
    sub.add_parser("info", help="where the cache is and what it holds")
    cleaner = sub.add_parser("clean", help="empty the cache folder (or one part of it)")
    cleaner.add_argument("--only", choices=cache.KINDS, help="remove only this part")
    args = parser.parse_args(argv)
    return info() if args.command == "info" else clean(args.only)
