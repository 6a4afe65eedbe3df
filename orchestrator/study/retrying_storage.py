"""A study storage that rides out a database outage: every call is retried until it succeeds
or the outage has lasted longer than a limit.

A PostgreSQL restart (a failover, an upgrade, a crash) takes seconds to minutes. Optuna's
``RDBStorage`` raises on the first failed connection; wrapped here, each call waits and
retries with a growing pause, says on the console how long the storage has been unreachable,
and raises :class:`StorageUnavailable` only once the outage is older than the limit. Errors
that are not about the connection (an integrity error, a finished trial) pass at once.

A thread can lower its own patience (:meth:`RetryingStorage.patience`): a worker reports a
trial's steps with none, keeps training while the storage is away, and sends them later.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy.exc
from optuna.storages import BaseStorage

from orchestrator import stopping
from orchestrator.study import optuna_internals

__all__ = ["DEFAULT_LIMIT_SECONDS", "RetryingStorage", "StorageUnavailable", "is_outage"]

DEFAULT_LIMIT_SECONDS = 600.0
FIRST_PAUSE_SECONDS = 0.5
LONGEST_PAUSE_SECONDS = 10.0
NOTICE_SECONDS = 10.0  # how often the console hears that the outage goes on
logger = logging.getLogger(__name__)

# Errors of the connection, not of the statement: the server is away, restarting, refusing
# connections, or (SQLite) the file is locked past its timeout.
_OUTAGE_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
)


T = TypeVar("T")
SLOW_CALL_SECONDS = 10.0  # a storage call that took longer counts as an outage


class StorageUnavailable(RuntimeError):
    """The study storage stayed unreachable longer than the limit."""


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the database could not be reached."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, _OUTAGE_ERRORS):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# Every method of a storage that talks to the database; each is retried.
_CALLS = (
    *sorted(BaseStorage.__abstractmethods__),
    "check_trial_is_updatable",
    "get_best_trial",
    "get_n_trials",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id",
    "get_trial_param",
    "get_trial_params",
    "get_trial_system_attrs",
    "get_trial_user_attrs",
    "record_heartbeat",
    optuna_internals.STALE_TRIAL_IDS,
)


def _retried(name: str) -> Callable[..., Any]:
    def call(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    call.__name__ = name
    call.__doc__ = f"``{name}`` of the wrapped storage, retried through an outage."
    return call


# Optuna's heartbeat interface, which a wrapper of an ``RDBStorage`` implements too.
if TYPE_CHECKING:
    from orchestrator.study.optuna_internals import HeartbeatBase as _Heartbeat
else:
    _Heartbeat = optuna_internals.heartbeat_base()


class RetryingStorage(BaseStorage, _Heartbeat):
    """Wraps a storage (an ``RDBStorage``, usually behind Optuna's cache) so that its calls
    ride out an outage of up to ``limit_seconds``.

    Other attributes (``engine``, the heartbeat callbacks) are the wrapped storage's.
    """

    def __init__(
        self,
        inner: BaseStorage,
        *,
        limit_seconds: float = DEFAULT_LIMIT_SECONDS,
        describe: str = "study storage",
    ) -> None:
        self.inner = inner
        self.limit_seconds = limit_seconds
        self.describe = describe
        self._local = threading.local()
        self._lock = threading.Lock()
        self.down_since: float | None = None  # when the current outage began (monotonic)
        self.back_at: float | None = None  # when the last outage ended (monotonic)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class lacks: the wrapped storage's.
        if name in ("inner", "_local", "_lock"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __getstate__(self) -> dict[str, Any]:
        # A study is pickled to hand it to other processes (multiprocessing, joblib, Dask):
        # the per-thread patience and the lock belong to this process.
        state = dict(self.__dict__)
        del state["_local"], state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def patience(self, seconds: float) -> Iterator[None]:
        """Within this block, this thread's calls give up after ``seconds`` of outage."""
        before = getattr(self._local, "limit", None)
        self._local.limit = seconds
        try:
            yield
        finally:
            self._local.limit = before

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``name`` on the wrapped storage until it answers or the outage is too old."""
        method = getattr(self.inner, name)
        return self.ride_out(lambda: method(*args, **kwargs))

    def ride_out(self, work: Callable[[], T]) -> T:
        """Run ``work`` (which reaches the database: a storage call, a lock on its server)
        again after each outage error, as a storage call is, until it succeeds or the outage
        is too old (:class:`StorageUnavailable`). ``work`` must be safe to run again."""
        limit = getattr(self._local, "limit", None)
        limit = self.limit_seconds if limit is None else limit
        pause = FIRST_PAUSE_SECONDS
        noticed = 0.0
        while True:
            started = time.monotonic()
            try:
                result = work()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                since = self._went_down()
                waited = time.monotonic() - since
                if waited >= limit:
                    raise StorageUnavailable(
                        f"{self.describe} unreachable for {waited:.0f} s (limit {limit:.0f} s): "
                        f"{_first_line(exc)}"
                    ) from exc
                if limit > 0 and time.monotonic() - noticed >= NOTICE_SECONDS:
                    noticed = time.monotonic()
                    logger.warning(
                        "%s unreachable since %.0f s, retrying (gives up after %.0f s): %s",
                        self.describe,
                        waited,
                        limit,
                        _first_line(exc),
                    )
                if not stopping.sleep(min(pause, max(limit - waited, 0.0))):
                    raise StorageUnavailable(
                        f"{self.describe} unreachable for {waited:.0f} s; the process was "
                        f"asked to stop meanwhile: {_first_line(exc)}"
                    ) from exc
                pause = min(pause * 2, LONGEST_PAUSE_SECONDS)
                continue
            self._came_back()
            if time.monotonic() - started > SLOW_CALL_SECONDS:
                # A call that hung (a journal file on a stalled network filesystem) is an
                # outage too: the other workers could not beat meanwhile either.
                self.back_at = time.monotonic()
            return result

    def _went_down(self) -> float:
        with self._lock:
            if self.down_since is None:
                self.down_since = time.monotonic()
            return self.down_since

    def _came_back(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is not None:
                logger.warning(
                    "%s reachable again after %.0f s",
                    self.describe,
                    time.monotonic() - self.down_since,
                )
                self.down_since = None
                self.back_at = time.monotonic()

    def recently_down(self, seconds: float) -> bool:
        """Whether the storage is down now or came back less than ``seconds`` ago."""
        if self.down_since is not None:
            return True
        return self.back_at is not None and time.monotonic() - self.back_at < seconds

    def get_heartbeat_interval(self) -> int | None:
        getter = getattr(self.inner, "get_heartbeat_interval", None)
        return getter() if getter else None

    def get_failed_trial_callback(self) -> Any:
        getter = getattr(self.inner, "get_failed_trial_callback", None)
        return getter() if getter else None

    def get_heartbeat_stale_trial_callback(self) -> Any:
        getter = getattr(self.inner, "get_heartbeat_stale_trial_callback", None)
        return getter() if getter else None

    def remove_session(self) -> None:
        with contextlib.suppress(Exception):
            self.inner.remove_session()


for _name in _CALLS:
    setattr(RetryingStorage, _name, _retried(_name))
# mypy sees the abstract methods the loop above installs as still abstract.
abc.update_abstractmethods(RetryingStorage)  # type: ignore[type-abstract]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
