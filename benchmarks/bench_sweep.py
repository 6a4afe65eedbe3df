"""Orchestration overhead per trial, and the time the shared dense checkpoint saves.

Three measurements of the same trials, in one invocation:
  direct   the procedure called in this process (warm dense checkpoint): the trials' compute;
  sweep    ``orchestrate sweep`` with one worker on the same configurations (warm checkpoint):
           compute + study, worker start-up, MLflow logging and artifacts;
  cold     the procedure with the dense network retrained for every trial (no shared cache).

Every measurement runs on one thread and is repeated; the fastest repeat counts, since on a
shared machine noise only ever adds time.

    python benchmarks/bench_sweep.py [--trials 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from orchestrator.cache import CheckpointCache
from orchestrator.config import parse_config
from orchestrator.procedure import run_trial


def document(folder: Path, name: str, rates: list[float]) -> dict:
    return {
        "name": name,
        "seeds": [0],
        "model": "conv2",
        "dataset": {
            "name": "synthetic",
            "synthetic": {"image_size": 16, "train_size": 1024, "test_size": 256},
        },
        "train": {"optimizer": "adam", "lr": 0.001, "batch_size": 64, "epochs": 2},
        "alds": {"mode": "project"},
        "imp": {"cycles": 2, "prune_fraction": 0.5, "epochs_per_cycle": 1},
        "search": {"sampler": "grid", "space": {"alds.rate": {"choices": rates}}},
        "execution": {
            "devices": "cpu",
            "workspace": str(folder / name),
            "cache_dir": str(folder / "checkpoints"),
        },
    }


def direct(folder: Path, rates: list[float], cache_dir: Path | None) -> float:
    """Seconds to run every trial in this process; a fresh cache per trial when cache_dir
    is None (the dense network is then retrained each time)."""
    config = parse_config(document(folder, "direct", rates))
    start = time.perf_counter()
    for index, rate in enumerate(rates):
        cache = CheckpointCache(cache_dir or folder / f"cold-{index}")
        run_trial(config.with_params({"alds.rate": rate}), 0, device="cpu", cache=cache)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rates = [round(0.6 * i / max(args.trials - 1, 1), 3) for i in range(args.trials)]
    threads = 1
    torch.set_num_threads(threads)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["ORCHESTRATE_WORKER_THREADS"] = str(threads)
    compute = cold = swept = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm = folder / "checkpoints"
        direct(folder, rates[:1], warm)  # trains and caches the dense network
        for repeat in range(args.repeats):
            compute = min(compute, direct(folder, rates, warm))
            cold = min(cold, direct(folder / f"r{repeat}", rates, None))
            path = folder / f"sweep{repeat}.yaml"
            path.write_text(yaml.safe_dump(document(folder, f"bench{repeat}", rates)))
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "orchestrator.cli", "sweep", str(path)],
                cwd=folder,
                env=env,
                check=True,
                capture_output=True,
            )
            swept = min(swept, time.perf_counter() - start)
    n = len(rates)
    overhead = (swept - compute) / n
    print(f"trials: {n}, threads: {threads}")
    print(f"direct (warm checkpoint): {compute / n:6.2f} s/trial")
    print(f"orchestrate sweep       : {swept / n:6.2f} s/trial")
    print(
        f"overhead per trial      : {overhead:6.2f} s ({overhead / (compute / n):.2f} of a trial)"
    )
    print(f"direct, dense retrained : {cold / n:6.2f} s/trial")
    print(
        f"shared checkpoint saves : {(cold - compute) / n:6.2f} s/trial "
        f"({cold / compute:.2f}x faster)"
    )


if __name__ == "__main__":
    main()
