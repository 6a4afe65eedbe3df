"""The device pool and the worker command line: one process per GPU, each seeing its GPU only."""

from __future__ import annotations

from orchestrator.cli import worker as worker_cli
from orchestrator.supervisor import Slot, device_slots, worker_command


def test_device_slots_for_gpu_indices_and_cpu() -> None:
    slots = device_slots("0,1,3", 2)
    assert [slot.gpu for slot in slots] == [0, 0, 1, 1, 3, 3]
    assert [slot.index for slot in slots] == list(range(6))
    assert [slot.name for slot in slots[:3]] == ["cuda:0", "cuda:0", "cuda:1"]
    assert device_slots("cpu", 3) == [Slot(None, 0), Slot(None, 1), Slot(None, 2)]
    # No GPU on this machine: auto falls back to the CPU.
    assert device_slots("auto", 1) == [Slot(None, 0)]


def test_gpu_worker_sees_only_its_gpu_and_the_command_is_a_real_cli_call() -> None:
    command, env = worker_command(Slot(3, 5), "study", "sqlite:///s.db", "http://m:5000", 4)
    assert env["CUDA_VISIBLE_DEVICES"] == "3" and env["OMP_NUM_THREADS"] == "4"
    assert command[1:4] == ["-m", "orchestrator.cli", "worker"]
    params = worker_cli.make_context("worker", command[4:]).params
    assert params == {
        "study_name": "study",
        "storage_url": "sqlite:///s.db",
        "device": "cuda:0",
        "tracking_uri": "http://m:5000",
        "threads": 4,
        "index": 5,
        "allow_failures": True,  # the sweep reports failed trials once, at its end
        "close_sweep": False,  # the sweep closes its parent run itself
    }


def test_cpu_worker_keeps_the_visible_devices_of_its_parent(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    command, env = worker_command(Slot(None, 0), "s", "sqlite:///s.db", "sqlite:///m.db", 1)
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert command[command.index("--device") + 1] == "cpu"
