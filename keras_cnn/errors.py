"""Errors a user can cause, and the one place that turns them into a clear line and exit 2."""
import errno
import functools
import sys

# Out of room: the user frees space or writes elsewhere.
SPACE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# A path that cannot be used as given (read-only, forbidden, a file where a folder should be).
PATH_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


class UsageError(Exception):
    """Something the user can fix: a bad flag, a missing path, malformed data.

    The message is one line saying what is wrong and how to fix it; CLIs print it
    without a traceback and exit with status 2.
    """


def cli_entry(main):
    """Wrap a CLI's main(argv) so a UsageError ends in one line on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            where = f" {err.filename}" if err.filename else ""
            if err.errno in SPACE_ERRORS:
                print(f"error: cannot write{where} ({err.strerror}); free some space or choose another output directory",
                      file=sys.stderr)
            elif err.errno in PATH_ERRORS:
                print(f"error: cannot use{where} ({err.strerror}); check the path or choose another one", file=sys.stderr)
            else:
                raise
            return 2

    return wrapper


def choose(kind, value, allowed):
    """Return value if it is one of allowed, else a UsageError listing what is allowed."""
    if value not in allowed:
        raise UsageError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(allowed))}")
    return value
