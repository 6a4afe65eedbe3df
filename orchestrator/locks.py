"""An inter-process lock on a file, for work that processes on one host must not do twice.

The lock is polled rather than awaited in ``flock``: a process asked to stop while another
holds the lock (a worker waiting on another's dense training) leaves within a slice of
:data:`stopping.SLICE_SECONDS` (:class:`stopping.Interrupted`).
"""

from __future__ import annotations

import errno
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator import stopping

__all__ = ["exclusive"]


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if absent) for the block.

    Raises:
        stopping.Interrupted: a stop was requested while another process held the lock.
    """
    with open(lock_file, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if not stopping.sleep(stopping.SLICE_SECONDS):
                raise stopping.Interrupted(f"stopped while waiting for the lock {lock_file}")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
