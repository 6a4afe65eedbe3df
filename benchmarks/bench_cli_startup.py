"""How long ``orchestrate --help`` and ``orchestrate validate`` take, against what they would
cost if they imported torch and mlflow as the commands that train do.

Each command runs as a user runs it (a fresh process of the installed console script),
interleaved with the reference imports in the same rounds so that load on a shared host hits
them alike; the medians and the median of the within-round ratios are printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("orchestrate")

COMMANDS = {
    "python (bare)": [sys.executable, "-c", "pass"],
    "orchestrate --help": [str(SCRIPT), "--help"],
    "orchestrate validate": [str(SCRIPT), "validate", str(ROOT / "sweeps" / "quickstart.yaml")],
    "import torch, mlflow": [sys.executable, "-c", "import torch, mlflow"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    reference = times["import torch, mlflow"]
    for name, measured in times.items():
        ratio = statistics.median(t / r for t, r in zip(measured, reference, strict=True))
        print(
            f"{name:22s} median {statistics.median(measured):6.3f} s   "
            f"/ import torch, mlflow {ratio:5.2f}"
        )


if __name__ == "__main__":
    main()
