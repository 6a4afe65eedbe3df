"""Device-hours of a whole sweep, from the per-step cost measured on this machine's device.

Counts every optimizer step the sweep's trials take (dense training once per seed; per trial
the ALDS fine-tuning and the IMP cycles, each as long as its config says) and every image
evaluated (test and validation splits after each step), then times the sweep's network with
the real training engine (``orchestrator.trial.training.train``, the sweep's optimizer, batch size,
AMP and channels-last settings) on synthetic data of the dataset's shape, and multiplies.

Cycles per trial: ``imp.cycles``, or with ``imp.until_remaining`` the cycles that prune the
dense network to that fraction at the prune fraction. A searched prune fraction gives a range:
its low end needs the most cycles (the upper bound), its high end the fewest. ALDS in
factorize mode makes networks smaller and steps cheaper, and a pruner stops trials early: both
only lower the real cost, so the bound holds.

    python benchmarks/estimate_sweep_cost.py sweeps/alds_rate.yaml              # this CPU
    python benchmarks/estimate_sweep_cost.py sweeps/alds_rate.yaml --device cuda # on a GPU host
    python benchmarks/estimate_sweep_cost.py sweeps/fashion_mnist_alds_imp.yaml --model conv6
    python benchmarks/estimate_sweep_cost.py sweeps/fashion_mnist_conv_full.yaml  # its GPU run
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass

import torch

from orchestrator import plan
from orchestrator.config import SweepConfig
from orchestrator.data import load
from orchestrator.sweep_file import load_config, parse_config
from orchestrator.trial import network
from orchestrator.trial.training import evaluate, train

# Images per split of the real datasets, (train, test); their shapes are the dataset table's
# (``network.shape``).
IMAGES = {
    "cifar10": (50_000, 10_000),
    "fashion-mnist": (60_000, 10_000),
    "mnist": (60_000, 10_000),
}


@dataclass(frozen=True)
class Workload:
    """What one sweep asks of its devices, in optimizer steps and evaluated images."""

    dense_steps: int
    trial_steps_low: int
    trial_steps_high: int
    eval_images_low: int
    eval_images_high: int
    trials: int


def dataset_images(config: SweepConfig) -> tuple[int, int]:
    """(train images, test images) of the sweep's dataset, before subsets and hold-out."""
    if config.dataset.name == "synthetic":
        return config.dataset.synthetic.train_size, config.dataset.synthetic.test_size
    return IMAGES[config.dataset.name]


def cycles_needed(config: SweepConfig, fraction: float) -> int:
    """IMP cycles of one trial at ``fraction`` pruned per cycle."""
    if config.imp.until_remaining is None:
        return config.imp.cycles
    needed = math.ceil(math.log(config.imp.until_remaining) / math.log(1.0 - fraction))
    return min(config.imp.cycles, needed)


def workload(config: SweepConfig) -> Workload:
    """Steps and evaluated images of the whole sweep, at both ends of a searched fraction."""
    train_images, test_images = dataset_images(config)
    train_images = config.dataset.train_subset or train_images - config.dataset.validation
    test_images = min(test_images, config.dataset.test_subset or test_images)
    per_epoch = math.ceil(train_images / config.train.batch_size)

    def length(epochs: float | None) -> int:
        if epochs is None:
            epochs = config.train.epochs
        if epochs is None:
            return int(config.train.iterations)
        return max(1, round(epochs * per_epoch))

    space = config.search.space.get("imp.prune_fraction")
    fractions = [config.imp.prune_fraction]
    if space is not None:
        fractions = [float(v) for v in space.values()]
    # Per-role rates: the network reaches the target between the pace of its slowest and of
    # its fastest large role (the output layer's weights are too few to matter).
    rates = {role: rate for role, rate in (config.imp.rates or {}).items() if role != "output"}
    fractions += list(rates.values())
    cycles = sorted(cycles_needed(config, f) for f in fractions)
    finetune = round(config.alds.finetune_epochs * per_epoch)
    per_cycle = length(config.imp.epochs_per_cycle)
    evaluated = test_images + config.dataset.validation
    return Workload(
        dense_steps=length(None) * len(config.seeds),
        trial_steps_low=finetune + cycles[0] * per_cycle,
        trial_steps_high=finetune + cycles[-1] * per_cycle,
        eval_images_low=(cycles[0] + 2) * evaluated,
        eval_images_high=(cycles[-1] + 2) * evaluated,
        trials=plan.total_trials(config),
    )


def measure(config: SweepConfig, device: str, steps: int, repeats: int) -> tuple[float, float]:
    """Seconds per optimizer step and per evaluated image of the sweep's network on ``device``."""
    shape = network.shape(config)
    batch = config.train.batch_size
    synthetic = {
        "image_size": shape.image_size,
        "channels": shape.channels,
        "num_classes": shape.num_classes,
        "train_size": max(batch * steps, 64),
        "test_size": 2000,
    }
    data = load(
        parse_config(
            {"name": "cost", "dataset": {"name": "synthetic", "synthetic": synthetic}}
        ).dataset,
        device=device,
    )
    model = network.build(config, shape, seed=0)
    train(model, data, config.train, device=device, seed=0, iterations=2)  # warm-up
    per_step, per_image = [], []
    for repeat in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        train(model, data, config.train, device=device, seed=repeat, iterations=steps)
        _synchronize(device)
        per_step.append((time.perf_counter() - start) / steps)
        start = time.perf_counter()
        evaluate(model, data, data.test, batch_size=config.train.eval_batch_size)
        _synchronize(device)
        per_image.append((time.perf_counter() - start) / len(data.test))
    return statistics.median(per_step), statistics.median(per_image)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _tflops_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    values = (float(low), float(high or low))
    if not 0 < values[0] <= values[1]:
        raise argparse.ArgumentTypeError("give LOW,HIGH with 0 < LOW <= HIGH")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads; 0: torch's default")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, default=8, help="devices of the wall-clock line")
    parser.add_argument("--model", help="time this network instead of the sweep's")
    parser.add_argument("--width", type=float, help="at this width instead of the sweep's")
    parser.add_argument(
        "--gpu-tflops",
        type=_tflops_range,
        default=(10.0, 20.0),
        help="assumed sustained GPU throughput LOW,HIGH for the GPU-hours column (default "
        "10,20: a batch of 60 keeps an A100-class GPU far from its peak); --device cuda on a "
        "GPU host times it instead",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.sweep)
    if args.model:
        config = config.with_params({"model": args.model})
    if args.width:
        config = config.with_params({"model.width": args.width})
    work = workload(config)
    step_s, image_s = measure(config, args.device, args.steps, args.repeats)
    # A forward pass's multiply-accumulates; a training step is about three forward passes
    # (forward, and backward for inputs and weights), 2 FLOPs per MAC.
    macs = network.size(config).macs
    step_flops = 2 * 3 * macs * config.train.batch_size
    print(
        f"{config.name}: {config.model} on {config.dataset.name}, device {args.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"measured: {1000 * step_s:.1f} ms per optimizer step (batch {config.train.batch_size}), "
        f"{1e6 * image_s:.1f} µs per evaluated image; {step_flops / 1e9:.2f} GFLOP per step, "
        f"{step_flops / step_s / 1e9:.1f} GFLOP/s achieved"
    )
    low_tflops, high_tflops = args.gpu_tflops
    for label, steps, images in (
        ("fewest cycles", work.trial_steps_low, work.eval_images_low),
        ("most cycles", work.trial_steps_high, work.eval_images_high),
    ):
        total_steps = work.dense_steps + work.trials * steps
        hours = (total_steps * step_s + work.trials * images * image_s) / 3600
        # Without a GPU to time: the same work at an assumed sustained throughput, an
        # evaluated image costing one forward pass (2 FLOPs per multiply-accumulate).
        flops = total_steps * step_flops + work.trials * images * 2 * macs
        gpu_low, gpu_high = (flops / (tflops * 1e12) / 3600 for tflops in (high_tflops, low_tflops))
        print(
            f"{label:>13}: {work.trials} trials x {steps:,} steps + {work.dense_steps:,} dense "
            f"= {total_steps:,} steps; {hours:,.1f} device-hours; "
            f"{hours / args.devices:,.1f} h on {args.devices} devices; on a GPU sustaining "
            f"{low_tflops:g}-{high_tflops:g} TFLOP/s (assumed, not timed): "
            f"{gpu_low:,.1f}-{gpu_high:,.1f} GPU-hours"
        )


if __name__ == "__main__":
    main()
