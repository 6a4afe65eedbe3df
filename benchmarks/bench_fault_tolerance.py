"""What riding out faults costs when there is none: the study storage behind the retrying
wrapper against Optuna's cached storage alone, and a checkpoint read with its SHA-256 check
against a plain ``torch.load``.

Both sides of each pair run interleaved in the same rounds (these hosts are shared and noisy);
the medians and the median within-round ratio are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import torch

import models
from orchestrator import stored_names
from orchestrator.study import queue, study
from orchestrator.trial.cache import load, save_atomically

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_workload(storage: optuna.storages.BaseStorage, name: str) -> Callable[[], None]:
    """What a worker does per step and per trial: claim, report, read the trials, tell."""
    created = optuna.create_study(study_name=name, storage=storage)

    def work() -> None:
        created.enqueue_trial({"x": 0.5})
        trial = created.ask()
        for step in range(5):
            trial.report(0.1 * step, step)
            trial.set_user_attr(stored_names.TRIAL_STEP, step)
        created.get_trials(deepcopy=False)
        created.tell(trial, 1.0)

    return work


def seconds(work: Callable[[], None], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - start) / repeat


def report(name: str, measured: list[float], reference: list[float]) -> None:
    ratio = statistics.median(m / r for m, r in zip(measured, reference, strict=True))
    print(f"{name:48s} median {statistics.median(measured) * 1e3:8.2f} ms   ratio {ratio:5.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        url = f"sqlite:///{root / 'study.db'}"
        wrapped = study.open_storage(url)
        plain = queue.cached(wrapped.inner._backend)
        work = {
            "retrying": storage_workload(wrapped, "retrying"),
            "plain": storage_workload(plain, "plain"),
        }
        state = models.build("conv6").state_dict()
        checked = root / "checked.pt"
        save_atomically({"state": state}, checked)
        unchecked = root / "unchecked.pt"
        torch.save({"state": state}, unchecked)
        reads = {
            "checked": lambda: load(checked),
            "plain": lambda: torch.load(unchecked, map_location="cpu", weights_only=True),
        }
        megabytes = checked.stat().st_size / 2**20
        times: dict[str, list[float]] = {f"storage {k}": [] for k in work}
        times.update({f"load {k}": [] for k in reads})
        for round_ in range(rounds):
            # Alternate which side goes first, so neither always meets a warm cache.
            order = 1 if round_ % 2 else -1
            for key, job in list(work.items())[::order]:
                times[f"storage {key}"].append(seconds(job, 5))
            for key, job in list(reads.items())[::order]:
                times[f"load {key}"].append(seconds(job, 5))
    plain_storage, plain_load = times["storage plain"], times["load plain"]
    report("a trial's storage calls, retrying wrapper", times["storage retrying"], plain_storage)
    report("a trial's storage calls, Optuna's cache only", plain_storage, plain_storage)
    checkpoint = f"Conv-6 ({megabytes:.0f} MB)"
    report(f"{checkpoint} load with SHA-256 check", times["load checked"], plain_load)
    report(f"{checkpoint} plain torch.load", plain_load, plain_load)


if __name__ == "__main__":
    main()
