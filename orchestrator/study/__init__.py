"""The Optuna study of a sweep: its storage, queue, growth, reused results and counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.study.counts import (
        count_states as count_states,
        expected as expected,
        finished as finished,
    )
    from orchestrator.study.growth import Growth as Growth, assess as assess, in_sweep as in_sweep
    from orchestrator.study.queue import (
        Heartbeat as Heartbeat,
        claim_trial as claim_trial,
        fail_and_requeue as fail_and_requeue,
        fail_stale as fail_stale,
        fill_queue as fill_queue,
        requeue as requeue,
        retry as retry,
        suggest as suggest,
    )
    from orchestrator.study.retrying_storage import (
        RetryingStorage as RetryingStorage,
        StorageUnavailable as StorageUnavailable,
    )
    from orchestrator.study.reuse import (
        Found as Found,
        find as find,
        finished_keys as finished_keys,
    )
    from orchestrator.study.snapshot import trials as trials
    from orchestrator.study.study import (
        create_or_resume as create_or_resume,
        creation_lock as creation_lock,
        holds as holds,
        load_study as load_study,
        open_storage as open_storage,
        stored_config as stored_config,
    )

# Each name and its module, imported on first use (orchestrator.lazy_face); the imports above
# name them for type checkers.
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
__all__ = list(_EXPORTS)


if not TYPE_CHECKING:  # type checkers read the imports above, and no name besides them
    __getattr__ = lazy_face(__name__, _EXPORTS)
