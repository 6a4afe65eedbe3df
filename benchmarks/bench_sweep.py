"""Orchestration overhead per trial, and the time the shared dense checkpoint saves.

Three measurements of the same trials, in one invocation:
  direct   the procedure called in this process (warm dense checkpoint): the trials' compute;
  sweep    ``orchestrate sweep`` with one worker on the same configurations (warm checkpoint):
           compute + study, worker start-up, MLflow logging and artifacts;
  cold     the procedure with the dense network retrained for every trial (no shared cache).

Every measurement runs on one thread and is repeated; the fastest repeat counts, since on a
shared machine noise only ever adds time.

    python benchmarks/bench_sweep.py [--trials 4] [--repeats 2]

The sweep runs with N and 2N trials: the difference per trial is the cost of a trial inside a
running sweep, the remainder the sweep's one-off start-up.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.sweeps import sweep_document, write_sweep
from orchestrator.trial.cache import CheckpointCache
from orchestrator.trial.procedure import run_trial


def document(folder: Path, name: str, rates: list[float]) -> dict:
    """Conv-2 trials on 10-class 16x16 colour images, a grid over ``rates``."""
    return sweep_document(
        folder,
        name,
        model="conv2",
        dataset={
            "name": "synthetic",
            "synthetic": {"image_size": 16, "train_size": 1024, "test_size": 256},
        },
        train={"lr": 0.001, "batch_size": 64, "epochs": 2},
        search={"space": {"alds.rate": {"choices": rates}}},
    )


def direct(folder: Path, rates: list[float], cache_dir: Path | None) -> float:
    """Seconds to run every trial in this process; a fresh cache per trial when cache_dir
    is None (the dense network is then retrained each time)."""
    config = parse_config(document(folder, "direct", rates))
    start = time.perf_counter()
    for index, rate in enumerate(rates):
        cache = CheckpointCache(cache_dir or folder / f"cold-{index}")
        run_trial(config.with_params({"alds.rate": rate}), 0, device="cpu", cache=cache)
    return time.perf_counter() - start


def sweep(folder: Path, name: str, rates: list[float], threads: int) -> float:
    """Seconds of one ``orchestrate sweep`` over ``rates`` (start-up included)."""
    path = write_sweep(folder, document(folder, name, rates))
    start = time.perf_counter()
    sweep = orchestrate(
        "sweep",
        str(path),
        cwd=folder,
        threads=threads,
        heartbeat=None,
        stdout=subprocess.DEVNULL,
        background=True,
    )
    finish(sweep, None, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    n = args.trials
    small = [round(0.6 * i / (2 * n - 1), 4) for i in range(0, 2 * n, 2)]
    large = [round(0.6 * i / (2 * n - 1), 4) for i in range(2 * n)]
    threads = 1
    torch.set_num_threads(threads)
    best = dict.fromkeys(("compute", "cold", "small", "large"), float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm = folder / "checkpoints"
        direct(folder, small[:1], warm)  # trains and caches the dense network
        for repeat in range(args.repeats):
            best["compute"] = min(best["compute"], direct(folder, small, warm))
            best["cold"] = min(best["cold"], direct(folder / f"r{repeat}", small, None))
            best["small"] = min(best["small"], sweep(folder, f"small{repeat}", small, threads))
            best["large"] = min(best["large"], sweep(folder, f"large{repeat}", large, threads))
    compute = best["compute"] / n
    # Twice the trials: the difference is what each extra trial costs inside a running sweep;
    # the rest of the small sweep is the fixed start-up (stores, worker process, imports).
    per_trial = (best["large"] - best["small"]) / n
    fixed = best["small"] - n * per_trial
    overhead = per_trial - compute
    print(f"trials: {n} and {2 * n}, threads: {threads}, best of {args.repeats}")
    print(f"direct, one process (warm checkpoint): {compute:6.2f} s/trial")
    print(f"orchestrate sweep, per extra trial   : {per_trial:6.2f} s/trial")
    share = overhead / compute
    print(f"orchestration overhead per trial     : {overhead:6.2f} s ({share:.2f} of a trial)")
    print(f"sweep start-up, once per sweep       : {fixed:6.2f} s")
    print(f"direct, dense retrained every trial  : {best['cold'] / n:6.2f} s/trial")
    saved = (best["cold"] - best["compute"]) / n
    speedup = best["cold"] / best["compute"]
    print(f"shared dense checkpoint saves        : {saved:6.2f} s/trial ({speedup:.2f}x)")


if __name__ == "__main__":
    main()
