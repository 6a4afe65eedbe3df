"""Trials per hour with 1 and 2 CPU worker processes (1 thread each) on one study.

The CPU stand-in for one worker per GPU: each worker is an ``orchestrate worker`` process on
the same SQLite study, as on a multi-GPU host. Both runs use the same sweep (a fresh study and
a warm dense checkpoint each), measured one after the other in one invocation.

    python benchmarks/bench_scaling.py [--trials 12] [--image-size 24]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.results import study_storage
from orchestrator.testing.sweeps import sweep_document, write_sweep


def scaling_sweep(folder: Path, name: str, trials: int, image_size: int) -> dict:
    """Conv-2 trials on 10-class colour images, ALDS rates sampled at random."""
    return sweep_document(
        folder,
        name,
        model="conv2",
        dataset={
            "name": "synthetic",
            "synthetic": {
                "image_size": image_size,
                "channels": 3,
                "num_classes": 10,
                "train_size": 1024,
                "test_size": 256,
            },
        },
        train={"lr": 0.001, "batch_size": 64},
        search={
            "sampler": "random",
            "n_trials": trials,
            "space": {"alds.rate": {"low": 0.0, "high": 0.6}},
        },
    )


def run(folder: Path, workers: int, trials: int, image_size: int) -> float:
    """Seconds for ``workers`` worker processes to finish a fresh study of ``trials``."""
    name = f"scaling-{workers}w-{trials}t"
    document = scaling_sweep(folder, name, trials, image_size)
    path = write_sweep(folder, document)
    # One thread per process and the tool's own heartbeat, as on a GPU host.
    enqueue = ("sweep", str(path), "--enqueue-only")
    queued = orchestrate(*enqueue, cwd=folder, threads=1, heartbeat=None, background=True)
    finish(queued, None, check=True)
    worker = ("worker", "--study", name, "--storage", study_storage(document), "--threads", "1")
    start = time.perf_counter()
    processes = [
        # Nobody reads a worker's output while it runs: a full pipe would stall it.
        orchestrate(
            *worker,
            cwd=folder,
            threads=1,
            heartbeat=None,
            stdout=subprocess.DEVNULL,
            background=True,
        )
        for _ in range(workers)
    ]
    for process in processes:
        finish(process, None, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Warm-up: trains the shared dense checkpoint, so both timed runs only run trials.
        run(folder, 1, 1, args.image_size)
        one = run(folder, 1, args.trials, args.image_size)
        two = run(folder, 2, args.trials, args.image_size)
    per_hour = {n: args.trials / seconds * 3600 for n, seconds in ((1, one), (2, two))}
    print(f"cores: {os.cpu_count()}, trials: {args.trials}")
    print(f"1 worker : {one:7.1f} s  {per_hour[1]:8.0f} trials/hour")
    print(f"2 workers: {two:7.1f} s  {per_hour[2]:8.0f} trials/hour")
    print(f"speed-up 2 workers / 1 worker: {per_hour[2] / per_hour[1]:.2f} (goal >= 1.7)")


if __name__ == "__main__":
    main()
