"""Throughput and memory of the training loop against two reference pipelines.

Pipelines, all training the same network from the same weights with Adam on CIFAR-shaped
synthetic data (32x32x3, uint8 source):

- ``bare``: the minimal PyTorch loop: pre-normalised float32 tensors in memory, a random
  permutation per epoch, index, forward, backward, step. The ceiling for any loop.
- ``train``: :func:`orchestrator.trial.training.train` on :func:`orchestrator.data.load`'s uint8
  tensors (normalised per batch), no augmentation: the same work as ``bare``.
- ``train+aug``: the same with random crop (padding 4) + horizontal flip on whole batches.
- ``dataloader+aug``: a torchvision-style pipeline: uint8 HWC arrays → PIL image per sample →
  ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` → ``DataLoader``.

Timing interleaves the pipelines over ``--repeats`` rounds of ``--steps`` optimizer steps (in a
rotating order); images/s is the median round, and each ratio the median over rounds of the
ratio within a round, so load from other processes, which drifts slowly, mostly cancels.
``data-only/s`` iterates one epoch of each pipeline's batches with no model. Peak memory
is measured per pipeline in a fresh process over ``--memory-steps`` steps, above a baseline
that has run one warm-up step and holds the uint8 source: peak RSS (CPU, Linux) or
``max_memory_allocated`` (CUDA).
``data MB`` is the training set as each pipeline stores it.

    python benchmarks/bench_training.py            # resnet20, ~1.5 min on a loaded 2-core CPU
    python benchmarks/bench_training.py --model conv2 --images 600 --steps 3 --repeats 2
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

import models
from orchestrator.config import DatasetConfig, SyntheticConfig, TrainConfig
from orchestrator.data import load
from orchestrator.trial.training import train

PIPELINES = ("bare", "train", "train+aug", "dataloader+aug")


def _datasets(args: argparse.Namespace, augment: bool):
    synthetic = SyntheticConfig(
        image_size=32, channels=3, num_classes=10, train_size=args.images, test_size=16
    )
    config = DatasetConfig(name="synthetic", synthetic=synthetic, augment=augment)
    return load(config, device=args.device, seed=0)


def _config(args: argparse.Namespace) -> TrainConfig:
    # AMP and channels-last off: every pipeline does the same float32 arithmetic.
    return TrainConfig(
        optimizer="adam",
        lr=3e-4,
        batch_size=args.batch_size,
        amp=False,
        channels_last=False,
    )


def _model(args: argparse.Namespace) -> torch.nn.Module:
    return models.build(args.model, num_classes=10, in_channels=3, seed=0).to(args.device)


def _bare_batches(images, labels, batch_size: int, generator: torch.Generator):
    """One epoch of the bare loop's batches: a permutation, then slices of it."""
    order = torch.randperm(images.shape[0], generator=generator, device=images.device)
    for index in order.split(batch_size):
        yield images[index], labels[index]


def _bare(args: argparse.Namespace, steps: int, model: torch.nn.Module, images, labels) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    generator = torch.Generator(device=images.device).manual_seed(0)
    model.train()
    step = 0
    while step < steps:
        for x, y in _bare_batches(images, labels, args.batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                return


class _ArrayDataset(torch.utils.data.Dataset):
    """What torchvision's CIFAR10 dataset does: uint8 HWC arrays, a PIL image per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def _dataloader(args: argparse.Namespace, data) -> torch.utils.data.DataLoader:
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(data.mean.tolist(), data.std.tolist()),
        ]
    )
    images = data.train.images.permute(0, 2, 3, 1).cpu().numpy()
    dataset = _ArrayDataset(images, data.train.labels.cpu().numpy(), transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=args.device.startswith("cuda"),
        generator=torch.Generator().manual_seed(0),
        persistent_workers=args.workers > 0,
    )


def _loader_loop(args: argparse.Namespace, steps: int, model: torch.nn.Module, loader) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    model.train()
    step = 0
    while step < steps:
        for x, y in loader:
            x = x.to(args.device, non_blocking=True)
            y = y.to(args.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                return


def _prepare(name: str, args: argparse.Namespace):
    """``run(steps)`` training a fresh model for ``steps`` batches, ``epoch()`` iterating one
    epoch of the pipeline's batches without a model, and the bytes its training set takes."""
    generator = torch.Generator(device=args.device).manual_seed(0)
    if name == "bare":
        data = _datasets(args, augment=False)
        images = data.normalize(data.train.images)  # float32 copy, as a bare loop keeps it
        labels = data.train.labels
        return (
            lambda steps: _bare(args, steps, _model(args), images, labels),
            lambda: _bare_batches(images, labels, args.batch_size, generator),
            images.nbytes,
        )
    if name in ("train", "train+aug"):
        data = _datasets(args, augment=name == "train+aug")
        config = _config(args)
        return (
            lambda steps: train(
                _model(args), data, config, device=args.device, seed=0, iterations=steps
            ),
            lambda: data.batches(
                data.train,
                args.batch_size,
                shuffle=True,
                generator=generator,
                augment=data.augment,
            ),
            data.train.images.nbytes,
        )
    data = _datasets(args, augment=False)
    loader = _dataloader(args, data)
    return (
        lambda steps: _loader_loop(args, steps, _model(args), loader),
        lambda: iter(loader),
        loader.dataset.images.nbytes,
    )


def _drain(epoch: Callable[[], Iterable]) -> None:
    for _ in epoch():
        pass


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_rounds(
    calls: dict[str, Callable[[], object]], repeats: int, device: str, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Seconds of each call in each of ``repeats`` rounds; every round runs every call once."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_ in range(repeats):
        shift = round_ % len(names)  # rotate the order so no pipeline always runs first
        for name in names[shift:] + names[:shift]:
            _sync(device)
            start = clock()
            calls[name]()
            _sync(device)
            times[name].append(clock() - start)
    return times


def _paired_ratio(times: dict[str, list[float]], name: str, reference: str) -> float:
    """Median over rounds of reference time / ``name`` time: a throughput ratio in which load
    from other processes, which drifts slowly, mostly cancels."""
    return statistics.median(r / t for r, t in zip(times[reference], times[name], strict=True))


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (peak RSS needs Linux)")


def _reset_peak_rss() -> None:
    # Linux: writing 5 resets VmHWM (peak RSS) to the current RSS.
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _warm_up(args: argparse.Namespace) -> None:
    """One step on random data, so the baseline already holds kernels and thread pools."""
    model = _model(args)
    x = torch.randn(args.batch_size, 3, 32, 32, device=args.device)
    y = torch.zeros(args.batch_size, dtype=torch.int64, device=args.device)
    F.cross_entropy(model(x), y).backward()
    del model, x, y


def _memory_worker(name: str, args: argparse.Namespace, queue) -> None:
    torch.set_num_threads(args.threads)
    _warm_up(args)
    # The uint8 source (cached by load) is in the baseline; what a pipeline stores on top of it
    # (a float32 copy, an HWC array) and its training working set are in the peak.
    _datasets(args, augment=name == "train+aug")
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        _reset_peak_rss()
        baseline = _status_bytes("VmRSS")
    run, _, data_bytes = _prepare(name, args)
    run(args.memory_steps)
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = _status_bytes("VmHWM") - baseline
    queue.put((name, peak, data_bytes))


def _measure_memory(args: argparse.Namespace) -> dict[str, tuple[int, int]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    results = {}
    for name in PIPELINES:
        process = context.Process(target=_memory_worker, args=(name, args, queue))
        process.start()
        got, peak, data_bytes = queue.get()
        process.join()
        results[got] = (peak, data_bytes)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="training set size")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per timed round")
    parser.add_argument("--repeats", type=int, default=12, help="interleaved timed rounds")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: least disturbed by load)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-steps", type=int, default=10, help="steps per memory probe")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU time, which time spent descheduled by other jobs does "
        "not inflate (CPU device and --workers 0 only)",
    )
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if args.clock == "cpu" and (args.workers > 0 or args.device != "cpu"):
        parser.error("--clock cpu needs --device cpu and --workers 0 (it counts this process only)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)

    prepared = {name: _prepare(name, args) for name in PIPELINES}
    for run, _, _ in prepared.values():  # warm-up: allocator, kernels, first-call overheads
        run(3)
    per_epoch = math.ceil(args.images / args.batch_size)
    epochs, rest = divmod(args.steps, per_epoch)
    images = epochs * args.images + rest * args.batch_size
    trained = _timed_rounds(
        {name: functools.partial(run, args.steps) for name, (run, _, _) in prepared.items()},
        args.repeats,
        args.device,
        clock,
    )
    loaded = _timed_rounds(
        {name: functools.partial(_drain, epoch) for name, (_, epoch, _) in prepared.items()},
        args.repeats,
        args.device,
        clock,
    )
    throughput = {name: images / statistics.median(t) for name, t in trained.items()}
    data_only = {name: args.images / statistics.median(t) for name, t in loaded.items()}
    vs_bare = {name: _paired_ratio(trained, name, "bare") for name in PIPELINES}
    vs_loader = {name: _paired_ratio(trained, name, "dataloader+aug") for name in PIPELINES}
    memory = {} if args.skip_memory else _measure_memory(args)

    print(
        f"{args.model}, {args.images} CIFAR-shaped images, batch {args.batch_size}, "
        f"medians of {args.repeats} rounds of {args.steps} steps, device {args.device}, "
        f"{args.threads} threads, DataLoader workers {args.workers}, {args.clock} clock"
    )
    peak_label = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS +MB"
    print(
        f"{'pipeline':<16}{'images/s':>10}{'spread':>8}{'vs bare':>9}{'vs loader':>11}"
        f"{'data-only/s':>13}{peak_label:>14}{'data MB':>9}"
    )
    spread = {name: statistics.pstdev(t) / statistics.mean(t) for name, t in trained.items()}
    for name in PIPELINES:
        peak, data_bytes = memory.get(name, (math.nan, math.nan))
        print(
            f"{name:<16}{throughput[name]:>10.0f}{spread[name]:>8.1%}"
            f"{vs_bare[name]:>9.3f}{vs_loader[name]:>11.3f}"
            f"{data_only[name]:>13.0f}{peak / 2**20:>14.1f}{data_bytes / 2**20:>9.1f}"
        )
    print(
        f"train / bare = {vs_bare['train']:.3f} (goal >= 0.95); "
        f"train+aug / dataloader+aug = {vs_loader['train+aug']:.3f} (goal > 1); "
        f"data only: {data_only['train+aug'] / data_only['dataloader+aug']:.1f}x"
    )


if __name__ == "__main__":
    main()
