"""One short check of the GPU path: the device, the ``cuda`` tests, the training loop's speed
against a bare PyTorch loop, sweep throughput with 1-8 workers on one GPU, and the measured
cost of ``sweeps/alds_rate.yaml``. Its last output is one Markdown table, recorded verbatim in
docs/benchmarks.md.

Data are CIFAR-shaped synthetic tensors (32x32x3, 10 classes): CIFAR-10 cannot be downloaded
everywhere, and speed does not depend on the pixels.

- **step time**: Conv-6 at batch 60 (the seed's setting) and ResNet-20 at batch 128, with AMP
  and channels-last each on and off: ms per optimizer step of the project's loop
  (``orchestrator.trial.training.train``, Adam) and of a bare loop (the same model, optimizer, AMP
  and memory format on pre-normalised tensors on the device: index, forward, backward, step).
  ``ratio`` = bare time / project time (goal >= 0.95), the median of interleaved rounds.
- **sweep throughput**: ``orchestrate sweep`` of Conv-6 trials (ALDS, then IMP cycles) with 1,
  2, 4 and 8 workers on the one device; IMP steps per second summed over the workers (every
  optimizer step of every trial, over the span from the first trial's start to the last one's
  end, so process start-up is left out) and the peak memory of one worker (GPU: nvidia-smi's
  per-process memory; CPU: resident set size).
- **cost**: ``benchmarks/estimate_sweep_cost.py sweeps/alds_rate.yaml --device DEVICE``.

    bash benchmarks/gpu_check.sh                        # on a GPU host: under 5 minutes
    bash benchmarks/gpu_check.sh --device cpu --quick   # the same code paths, seconds to minutes
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from estimate_sweep_cost import workload

import models
from orchestrator.config import DatasetConfig, SyntheticConfig, TrainConfig
from orchestrator.data import load
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import orchestrate
from orchestrator.testing.results import load_study
from orchestrator.testing.sweeps import sweep_document, write_sweep
from orchestrator.trial.training import train

ROOT = Path(__file__).resolve().parents[1]
ADAM_LR = 1e-3


def device_line(device: str) -> str:
    """The device's name and memory, and the software that drives it."""
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(torch.device(device))
        return (
            f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}"
        )
    threads = torch.get_num_threads()
    return f"CPU ({os.cpu_count()} cores, {threads} torch threads), torch {torch.__version__}"


def cuda_tests() -> str:
    """Run the ``cuda``-marked tests; their pytest summary line. Without a CUDA device there
    are none (tests/test_cuda.py makes CUDA cases only where one is visible)."""
    if not torch.cuda.is_available():
        return "skipped: not applicable, no CUDA device visible"
    done = subprocess.run(
        # One test process: the device is shared and the tests are few.
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "cuda",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else done.stderr.strip()[-300:]
    if done.returncode != 0:
        print(done.stdout[-3000:], file=sys.stderr)
        raise SystemExit(f"cuda tests failed: {summary}")
    return summary


# --------------------------------------------------------------------------- step time


def _data(device: str, images: int):
    synthetic = SyntheticConfig(
        image_size=32, channels=3, num_classes=10, train_size=images, test_size=16
    )
    return load(DatasetConfig(name="synthetic", synthetic=synthetic), device=device, seed=0)


def _model(name: str, device: str) -> torch.nn.Module:
    return models.build(name, num_classes=10, in_channels=3, seed=0, input_size=32).to(device)


def _bare(model, images, labels, batch: int, steps: int, amp: bool, channels_last: bool) -> None:
    """The minimal loop with the same numerics as the project's: AMP in bfloat16 (float16 with
    a scaler where bfloat16 is missing), channels-last inputs and weights."""
    cuda = images.is_cuda
    if cuda and channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=ADAM_LR)
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if cuda and amp and dtype == torch.float16 else None
    generator = torch.Generator(device=images.device).manual_seed(0)
    model.train()
    step = 0
    while step < steps:
        order = torch.randperm(images.shape[0], generator=generator, device=images.device)
        for index in order.split(batch):
            x, y = images[index], labels[index]
            if cuda and channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype, enabled=cuda and amp):
                loss = F.cross_entropy(model(x), y)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            step += 1
            if step == steps:
                return


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_times(
    name: str, batch: int, device: str, amp: bool, channels_last: bool, steps: int, rounds: int
) -> tuple[float, float, float]:
    """(project ms/step, bare ms/step, bare time / project time), medians of interleaved rounds."""
    data = _data(device, batch * steps)
    images, labels = data.normalize(data.train.images), data.train.labels
    config = TrainConfig(
        optimizer="adam", lr=ADAM_LR, batch_size=batch, amp=amp, channels_last=channels_last
    )
    calls = {
        "project": lambda: train(
            _model(name, device), data, config, device=device, seed=0, iterations=steps
        ),
        "bare": lambda: _bare(
            _model(name, device), images, labels, batch, steps, amp, channels_last
        ),
    }
    for call in calls.values():  # warm-up: kernels, allocator, autotuning
        call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for round_ in range(rounds):
        for key in list(calls)[round_ % 2 :] + list(calls)[: round_ % 2]:
            _sync(device)
            start = time.perf_counter()
            calls[key]()
            _sync(device)
            times[key].append((time.perf_counter() - start) / steps)
    ratio = statistics.median(b / p for b, p in zip(times["bare"], times["project"], strict=True))
    return 1e3 * statistics.median(times["project"]), 1e3 * statistics.median(times["bare"]), ratio


# --------------------------------------------------------------------------- sweep throughput


def throughput_sweep(folder: Path, name: str, trials: int, quick: bool) -> dict:
    """Conv-6 trials on CIFAR-shaped data: ALDS at a sampled rate, fine-tuning, IMP cycles
    (Conv-2 on fewer images for ``quick``); the device is the command line's."""
    return sweep_document(
        folder,
        name,
        model="conv2" if quick else "conv6",
        dataset={
            "name": "synthetic",
            "synthetic": {
                "image_size": 32,
                "channels": 3,
                "num_classes": 10,
                "train_size": 240 if quick else 6000,
                "test_size": 60 if quick else 1000,
            },
            "validation": 60 if quick else 500,
        },
        train={"lr": ADAM_LR, "batch_size": 60},
        alds={"finetune_epochs": 0.5},
        imp={"cycles": 2 if quick else 3, "prune_fraction": 0.3},
        search={
            "sampler": "random",
            "n_trials": trials,
            "enqueue_baseline": False,
            "space": {"alds.rate": {"low": 0.1, "high": 0.8}},
        },
    )


class _PeakMemory:
    """Samples the memory of the sweep's worker processes every half second; keeps each one's
    peak (GPU: nvidia-smi's used memory per process; CPU: resident set size)."""

    def __init__(self, study: str, gpu: bool) -> None:
        self.study, self.gpu = study, gpu
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _workers(self) -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in command and self.study.encode() in command:
                found.add(int(entry.name))
        return found

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            workers = self._workers()
            for pid, megabytes in self._usage(workers).items():
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), megabytes)

    def _usage(self, workers: set[int]) -> dict[int, float]:
        usage = {}
        if self.gpu:
            answer = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            ).stdout
            for line in answer.splitlines():
                pid, used = (part.strip() for part in line.split(","))
                if int(pid) in workers:
                    usage[int(pid)] = float(used.split()[0])
            return usage
        for pid in workers:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    usage[pid] = int(line.split()[1]) / 1024
        return usage

    @property
    def per_worker(self) -> float | None:
        return max(self.peaks.values()) if self.peaks else None


def sweep_throughput(
    workers: int, device: str, folder: Path, quick: bool
) -> tuple[float, float | None]:
    """IMP steps per second summed over ``workers`` workers on one device, and the peak memory
    of one worker in MiB."""
    name = f"throughput{workers}"
    trials = workers if quick else 2 * workers
    document = throughput_sweep(folder, name, trials, quick)
    path = write_sweep(folder, document)
    devices = "0" if device.startswith("cuda") else "cpu"
    with _PeakMemory(name, gpu=device.startswith("cuda")) as memory:
        done = orchestrate(
            "sweep",
            str(path),
            "--devices",
            devices,
            "--workers-per-device",
            str(workers),
            cwd=folder,
            env={"ORCHESTRATE_WORKER_THREADS": "1"},
            heartbeat=None,
            timeout=None,
        )
    if done.returncode != 0:
        raise SystemExit(f"sweep with {workers} workers failed:\n{done.stderr[-3000:]}")
    finished = load_study(document).trials
    start = min(t.datetime_start for t in finished)
    end = max(t.datetime_complete for t in finished)
    steps_per_trial = workload(parse_config(document)).trial_steps_high
    return len(finished) * steps_per_trial / (end - start).total_seconds(), memory.per_worker


def warm_dense_checkpoint(device: str, folder: Path, quick: bool) -> None:
    """Train the dense network every throughput sweep starts from, once, outside the timing."""
    sweep_throughput(1, device, folder, quick)


# --------------------------------------------------------------------------- cost


def sweep_cost(device: str, quick: bool) -> str:
    """The device-hours line of ``estimate_sweep_cost.py sweeps/alds_rate.yaml``."""
    command = [sys.executable, str(ROOT / "benchmarks" / "estimate_sweep_cost.py")]
    command += [str(ROOT / "sweeps" / "alds_rate.yaml"), "--device", device]
    if quick:  # the estimator's code path on a small network
        command += ["--steps", "2", "--repeats", "1", "--model", "conv2"]
    else:
        command += ["--steps", "30", "--repeats", "3"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    measured = next(line for line in lines if line.startswith("measured"))
    low = next(line for line in lines if "fewest cycles" in line)
    high = next(line for line in lines if "most cycles" in line)

    def hours(line: str) -> str:
        return line.split(";")[1].strip().split()[0]

    return f"{measured.removeprefix('measured: ')}; {hours(low)}–{hours(high)} device-hours"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--quick", action="store_true", help="fewer steps, 1-2 workers: a dry run of every path"
    )
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run with --device cpu --quick for a dry run")
    if not args.device.startswith("cuda"):
        torch.set_num_threads(1)
    started = time.perf_counter()
    rows: list[tuple[str, str, str]] = [("device", "", device_line(args.device))]
    print(rows[0][2], flush=True)
    rows.append(("cuda tests", "pytest -m cuda", cuda_tests()))
    print(rows[-1][2], flush=True)

    steps, rounds = (2, 1) if args.quick else (40, 5)
    # --quick: the same loops on batches of 8, so the dry run takes seconds on a CPU.
    for name, batch in ((n, 8 if args.quick else b) for n, b in (("conv6", 60), ("resnet20", 128))):
        for amp in (False, True):
            for channels_last in (False, True):
                project, bare, ratio = step_times(
                    name, batch, args.device, amp, channels_last, steps, rounds
                )
                setting = (
                    f"{name} batch {batch}, AMP {'on' if amp else 'off'}, "
                    f"channels-last {'on' if channels_last else 'off'}"
                )
                rows.append(
                    (
                        "step time",
                        setting,
                        f"project {project:.2f} ms, bare {bare:.2f} ms, ratio {ratio:.2f}",
                    )
                )
                print(setting, rows[-1][2], flush=True)

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        if not args.quick:
            warm_dense_checkpoint(args.device, Path(folder), args.quick)
        baseline = None
        for workers in (1, 2) if args.quick else (1, 2, 4, 8):
            rate, memory = sweep_throughput(workers, args.device, Path(folder), args.quick)
            baseline = baseline or rate
            memory_text = "-" if memory is None else f"{memory:,.0f} MiB per worker"
            rows.append(
                (
                    "sweep throughput",
                    f"{'Conv-2' if args.quick else 'Conv-6'}, {workers} worker(s) on one device",
                    f"{rate:,.4g} IMP steps/s ({rate / baseline:.2f}x one worker), {memory_text}",
                )
            )
            print(rows[-1][1], rows[-1][2], flush=True)

    rows.append(("cost", "sweeps/alds_rate.yaml", sweep_cost(args.device, args.quick)))
    print(rows[-1][2], flush=True)
    rows.append(("check", "", f"{time.perf_counter() - started:.0f} s in all"))
    print()
    print(f"gpu_check {time.strftime('%Y-%m-%d')} --device {args.device}{' --quick' * args.quick}")
    print("| measurement | setting | result |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
