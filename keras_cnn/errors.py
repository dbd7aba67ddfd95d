"""Errors a user or the machine can cause; keras_cnn.cli.common.cli_entry turns them into one line."""

import errno
from collections.abc import Collection
from typing import TypeVar

T = TypeVar("T")

# Out of room: the user frees space or writes elsewhere.
SPACE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# A path that cannot be used as given (read-only, forbidden, a file where a folder should be).
PATH_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


class UsageError(Exception):
    """Something the user can fix: a bad flag, a missing path, malformed data.

    The message is one line saying what is wrong and how to fix it; CLIs print it
    without a traceback and exit with status 2.
    """


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM ended the work at a safe point (after a checkpoint).

    A KeyboardInterrupt, not an Exception, so code that catches Exception (KerasTuner
    around each trial) cannot turn it into one failed trial and carry on.
    """

    def __init__(self, signum: int, where: str, advice: str | None = None) -> None:
        super().__init__(f"interrupted {where}: {advice or 'rerun the same command to resume'}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as shells report them


def choose(kind: str, value: T, allowed: Collection[T]) -> T:
    """Return value if it is one of allowed, else a UsageError listing what is allowed."""
    if value not in allowed:
        raise UsageError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(map(str, allowed)))}")
    return value


class RunDamaged(UsageError):
    """What is at a run's path is not a usable run (damaged files, not a run folder); --overwrite replaces it."""


class ConfigMismatch(UsageError):
    """A run of that name exists with another config; --overwrite replaces it, another --name keeps it."""
