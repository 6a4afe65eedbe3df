"""The CUDA path: what runs on a GPU gives what the CPU gives, within stated tolerances.

Every test runs on each device this machine has: the CPU always (the same device-agnostic
code paths, with AMP and channels-last requested and correctly ignored, against the CPU
reference), and CUDA wherever ``torch.cuda.is_available()``. Only the CUDA cases carry the
``cuda`` mark: ``pytest -m cuda`` (``benchmarks/gpu_check.sh`` runs it first on a GPU host)
selects them, and without a GPU there are none, which the check reports as not applicable.

Tolerances: float32 on the GPU differs from the CPU by reduction order (cuDNN, cuBLAS); with
TF32 off (it is on by default for cuDNN convolutions; the fixture turns it off here) one
training step agrees to 1e-4 relative. Under AMP (bfloat16 on Ampere and later, float16 with
a gradient scaler before) a step's weights agree to 2e-2 relative, the precision of bfloat16's
8-bit mantissa accumulated over a step. The data stay on the CPU so that both devices shuffle
with the same generator (CUDA's ``randperm`` draws another order from the same seed).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import models
from compression import alds, imp
from orchestrator import stored_names
from orchestrator.config import DatasetConfig, SyntheticConfig, TrainConfig
from orchestrator.data import load
from orchestrator.testing.cli import orchestrate
from orchestrator.testing.results import load_study
from orchestrator.testing.sweeps import sweep_document, write_sweep
from orchestrator.trial import cache
from orchestrator.trial.training import train

DEVICES = [
    "cpu",
    *([pytest.param("cuda", marks=pytest.mark.cuda)] if torch.cuda.is_available() else []),
]

FP32_TOLERANCE = 1e-4
AMP_TOLERANCE = 2e-2


@pytest.fixture(autouse=True)
def exact_float32() -> Iterator[None]:
    """Full float32 on the GPU (no TF32), restored afterwards."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _data(device: str):
    synthetic = SyntheticConfig(
        image_size=32, channels=3, num_classes=10, train_size=240, test_size=60
    )
    return load(DatasetConfig(name="synthetic", synthetic=synthetic), device=device, seed=0)


def _trained(device: str, *, amp: bool, channels_last: bool, iterations: int = 1):
    model = models.build("conv2", num_classes=10, in_channels=3, seed=0, input_size=32)
    config = TrainConfig(
        optimizer="sgd", lr=0.05, batch_size=60, amp=amp, channels_last=channels_last
    )
    train(model, _data("cpu"), config, device=device, seed=0, iterations=iterations)
    return {name: value.detach().float().cpu() for name, value in model.state_dict().items()}


def _relative_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_a_training_step_on_cuda_matches_the_cpu(device: str, channels_last: bool) -> None:
    cpu = _trained("cpu", amp=False, channels_last=False)
    fp32 = _trained(device, amp=False, channels_last=channels_last)
    mixed = _trained(device, amp=True, channels_last=channels_last)
    assert _relative_difference(fp32, cpu) < FP32_TOLERANCE
    assert _relative_difference(mixed, cpu) < AMP_TOLERANCE


@pytest.mark.parametrize("device", DEVICES)
def test_masks_stay_enforced_under_amp(device: str) -> None:
    model = models.build("conv2", num_classes=10, in_channels=3, seed=0, input_size=32)
    model = model.to(device)
    masks = imp.prune(model, 0.7, scope="layer")
    imp.apply(model, masks)
    config = TrainConfig(optimizer="adam", lr=1e-3, batch_size=60, amp=True)
    # The scaler may skip steps (inf gradients) and the optimizer's moments move pruned
    # weights: re-applying the masks after every step is what keeps them at zero.
    train(
        model,
        _data(device),
        config,
        device=device,
        seed=0,
        iterations=8,
        after_step=functools.partial(imp.apply, masks=masks),  # as procedure.imp_cycle does
    )
    weights = imp.prunable(model)
    for name, mask in masks.items():
        weight = weights[name].detach()
        assert weight.device.type == device
        assert torch.count_nonzero(weight[mask.to(weight.device) == 0]) == 0, name


@pytest.mark.parametrize("device", DEVICES)
def test_alds_on_cuda_tensors_gives_the_cpu_plan(device: str) -> None:
    model = models.build("conv4", num_classes=10, in_channels=3, seed=0, input_size=32)
    on_cpu = alds.allocate(model, 0.5)
    on_gpu = alds.allocate(model.to(device), 0.5)
    assert [(layer.name, layer.k, layer.rank) for layer in on_gpu.layers] == [
        (layer.name, layer.k, layer.rank) for layer in on_cpu.layers
    ]
    compressed, _ = alds.compress(model, 0.5, mode="factorize")
    assert all(p.device.type == device for p in compressed.parameters())


@pytest.mark.parametrize("device", DEVICES)
def test_a_dense_checkpoint_trained_on_cuda_loads_on_the_cpu_and_back(
    tmp_path: Path, device: str
) -> None:
    model = models.build("conv2", num_classes=10, in_channels=3, seed=0, input_size=32)
    train(model, _data(device), TrainConfig(batch_size=60), device=device, seed=0, iterations=2)
    path = tmp_path / "dense.pt"
    cache.save_atomically({"state": model.state_dict()}, path)
    state = cache.load(path)["state"]
    assert all(value.device.type == "cpu" for value in state.values())
    on_cpu = models.build("conv2", num_classes=10, in_channels=3, seed=1, input_size=32)
    on_cpu.load_state_dict(state)
    x = torch.randn(4, 3, 32, 32)
    model.eval(), on_cpu.eval()
    expected = model(x.to(device)).cpu()
    torch.testing.assert_close(on_cpu(x), expected, rtol=FP32_TOLERANCE, atol=FP32_TOLERANCE)
    # Back on the GPU in NCHW (trained channels-last): other kernels, the same function.
    back = on_cpu.to(device)
    torch.testing.assert_close(
        back(x.to(device)).cpu(), expected, rtol=FP32_TOLERANCE, atol=FP32_TOLERANCE
    )


@pytest.mark.parametrize("device", DEVICES)
def test_two_workers_share_one_gpu_in_a_sweep(tmp_path: Path, device: str) -> None:
    document = sweep_document(tmp_path, "gpu", seeds=[0, 1], execution={"workers_per_device": 2})
    path = write_sweep(tmp_path, document)
    # --devices auto on exactly one visible GPU (or the CPU, where none is).
    devices = "auto" if device == "cuda" else "cpu"
    done = orchestrate(
        "sweep",
        str(path),
        "--devices",
        devices,
        cwd=tmp_path,
        env={"CUDA_VISIBLE_DEVICES": "0"} if device == "cuda" else None,
        heartbeat=None,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    slot = "cuda:0" if device == "cuda" else "cpu"
    assert f"2 worker(s): {slot}, {slot}" in done.stdout
    trials = load_study(document).trials
    assert {t.state.name for t in trials} == {"COMPLETE"} and len(trials) == 4
    assert {t.user_attrs[stored_names.TRIAL_DEVICE] for t in trials} == {slot}
    assert len({t.user_attrs[stored_names.TRIAL_WORKER] for t in trials}) == 2
