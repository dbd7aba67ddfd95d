"""Errors a user can cause, and the one place that turns them into a clear line and exit 2."""
import errno
import functools
import sys

# Failures to write that the user fixes by freeing space or choosing another place.
WRITE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


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
            if err.errno not in WRITE_ERRORS:
                raise
            where = f" {err.filename}" if err.filename else ""
            print(f"error: cannot write{where} ({err.strerror}); free some space or choose another output directory",
                  file=sys.stderr)
            return 2

    return wrapper


def choose(kind, value, allowed):
    """Return value if it is one of allowed, else a UsageError listing what is allowed."""
    if value not in allowed:
        raise UsageError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(allowed))}")
    return value
