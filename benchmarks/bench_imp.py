"""Cost of IMP: a masked training step against an unmasked one, and one global pruning step.

    .venv/bin/python benchmarks/bench_imp.py [--models resnet20 conv6] [--device cpu]

Masked and unmasked steps alternate on the same model and batch so that load from other
processes hits both alike; the median of the pairwise ratios is the overhead of re-applying
the masks after every optimizer step (goal: at most 1.05). ``apply`` alone is timed too: on a
busy host it is the steadier measure of that overhead.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import models
from compression import imp

# The lottery-ticket papers' batch sizes: Conv-6 with Adam at 60, ResNet-20 with SGD at 128.
SETUPS = {
    "conv6": (60, lambda params: torch.optim.Adam(params, lr=3e-4)),
    "resnet20": (
        128,
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4),
    ),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, device: torch.device, repeats: int, batch_size: int | None) -> None:
    default_batch, make_optimizer = SETUPS[name]
    batch = batch_size or default_batch
    model = models.build(name, num_classes=10).to(device)
    optimizer = make_optimizer(model.parameters())
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=generator).to(device)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)

    def step(masks: imp.Masks | None) -> float:
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if masks is not None:
            imp.apply(model, masks)
        _sync(device)
        return time.perf_counter() - start

    def timed(call) -> float:
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        return time.perf_counter() - start

    prune_dense = [timed(lambda: imp.prune(model, 0.2)) for _ in range(5)]
    masks = imp.prune(model, 0.2)
    for _ in range(4):  # a later cycle: 59% of the weights alive
        masks = imp.prune(model, 0.2, masks=masks)
    prune_later = [timed(lambda m=masks: imp.prune(model, 0.2, masks=m)) for _ in range(5)]
    apply_only = [timed(lambda: imp.apply(model, masks)) for _ in range(20)]

    for _ in range(2):  # warm-up: allocator, Adam state
        step(None)
        step(masks)
    plain, masked = [], []
    for index in range(repeats):
        # Alternate which goes first so neither always runs on a cache warmed by the other.
        if index % 2:
            plain.append(step(None))
            masked.append(step(masks))
        else:
            masked.append(step(masks))
            plain.append(step(None))
    weights = sum(w.numel() for w in imp.prunable(model).values())
    median = statistics.median
    print(
        f"{name:9s} {weights:>9,d} weights  batch {batch:3d}  "
        f"step {median(plain) * 1e3:8.1f} ms  masked {median(masked) * 1e3:8.1f} ms  "
        f"ratio {median(m / p for m, p in zip(masked, plain, strict=True)):.3f}  "
        f"apply {median(apply_only) * 1e3:6.2f} ms ({median(apply_only) / median(plain):.2%})  "
        f"prune (dense) {median(prune_dense) * 1e3:7.1f} ms  "
        f"prune (59% alive) {median(prune_later) * 1e3:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "conv6"], choices=SETUPS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20, help="masked/unmasked step pairs")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the papers'")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (1 on an oversubscribed host)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    for name in args.models:
        bench(name, device, args.repeats, args.batch_size)


if __name__ == "__main__":
    main()
