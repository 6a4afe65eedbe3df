"""The Optuna study of a sweep: its storage, queue, growth, reused results and counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.study.counts import count_states, expected, finished
    from orchestrator.study.growth import Growth, assess, in_sweep
    from orchestrator.study.queue import (
        Heartbeat,
        claim_trial,
        fail_and_requeue,
        fail_stale,
        fill_queue,
        requeue,
        retry,
        suggest,
    )
    from orchestrator.study.retrying_storage import RetryingStorage, StorageUnavailable
    from orchestrator.study.reuse import Found, find, finished_keys
    from orchestrator.study.snapshot import trials
    from orchestrator.study.study import (
        create_or_resume,
        creation_lock,
        holds,
        load_study,
        open_storage,
        stored_config,
    )

# Each name is imported on first use (orchestrator.lazy_face).
_EXPORTS = {
    "create_or_resume": "study",
    "creation_lock": "study",
    "holds": "study",
    "load_study": "study",
    "open_storage": "study",
    "stored_config": "study",
    "Heartbeat": "queue",
    "claim_trial": "queue",
    "fail_and_requeue": "queue",
    "fail_stale": "queue",
    "fill_queue": "queue",
    "requeue": "queue",
    "retry": "queue",
    "suggest": "queue",
    "Growth": "growth",
    "assess": "growth",
    "in_sweep": "growth",
    "Found": "reuse",
    "find": "reuse",
    "finished_keys": "reuse",
    "RetryingStorage": "retrying_storage",
    "StorageUnavailable": "retrying_storage",
    "trials": "snapshot",
    "count_states": "counts",
    "expected": "counts",
    "finished": "counts",
}
__all__ = [
    "Found",
    "Growth",
    "Heartbeat",
    "RetryingStorage",
    "StorageUnavailable",
    "assess",
    "claim_trial",
    "count_states",
    "create_or_resume",
    "creation_lock",
    "expected",
    "fail_and_requeue",
    "fail_stale",
    "fill_queue",
    "find",
    "finished",
    "finished_keys",
    "holds",
    "in_sweep",
    "load_study",
    "open_storage",
    "requeue",
    "retry",
    "stored_config",
    "suggest",
    "trials",
]


if not TYPE_CHECKING:  # type checkers read the imports above, and no name besides them
    __getattr__ = lazy_face(__name__, _EXPORTS)
