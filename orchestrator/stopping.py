"""This process's stop request: set by a worker's signal handlers, honoured by every wait.

A Python signal handler runs in the main thread between two bytecodes, and a blocking call
(``flock``, ``time.sleep``) is resumed after it (PEP 475) unless the handler raises. So a
handler only records the request here, and whatever waits (the training loop between
iterations, a file lock another worker holds, a storage outage, the tracking outbox, another
worker's result) waits in slices of :data:`SLICE_SECONDS` through :func:`sleep` and leaves
once a stop is requested: a worker is gone within about a second of the signal. Every
thread of the process sees the request (a heartbeat thread in an outage leaves too).
"""

from __future__ import annotations

import time

__all__ = ["SLICE_SECONDS", "Interrupted", "check", "clear", "request", "requested", "sleep"]

SLICE_SECONDS = 0.25

_reason: str | None = None


class Interrupted(Exception):
    """The process was asked to stop (a signal) while it trained or waited."""


def request(reason: str) -> None:
    """Ask every wait of this process to end (called from a signal handler: no I/O here).

    Args:
        reason: what asked, e.g. ``"SIGINT"``; the first request's reason is kept.
    """
    global _reason
    _reason = _reason or reason


def requested() -> bool:
    """Whether a stop was requested."""
    return _reason is not None


def clear() -> None:
    """Forget the request (a new worker in the same process, tests)."""
    global _reason
    _reason = None


def check() -> None:
    """Raise :class:`Interrupted` when a stop was requested."""
    if _reason is not None:
        raise Interrupted(f"stopped by {_reason}")


def sleep(seconds: float) -> bool:
    """Sleep ``seconds``, less when a stop is requested meanwhile.

    Returns:
        True when it slept the whole time, False when a stop was requested (before or during).
    """
    end = time.monotonic() + seconds
    while _reason is None:
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, SLICE_SECONDS))
    return False
