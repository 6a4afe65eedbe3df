"""Launchers: the registry and what it refuses, the task a worker runs in, and the local
launcher's device pool and worker command line (one process per GPU, each seeing its GPU
only). The Slurm launcher on a real cluster: tests/test_slurm.py."""

from __future__ import annotations

import signal
import typing
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from orchestrator import cli, launchers
from orchestrator.cli import main, worker as worker_cli
from orchestrator.config import ConfigError, ExecutionConfig, SweepConfig
from orchestrator.launchers.local import LocalLauncher, Slot, device_slots, worker_command
from orchestrator.launchers.slurm import SlurmLauncher


def test_every_launcher_the_schema_allows_is_registered() -> None:
    allowed = typing.get_args(ExecutionConfig.model_fields["launcher"].annotation)
    assert set(allowed) == set(launchers.LAUNCHERS)
    for name, cls in launchers.LAUNCHERS.items():
        assert cls.name == name
        config = SweepConfig(name="x").with_params({"execution.launcher": name})
        assert isinstance(launchers.get(config), cls)


def test_options_of_another_launcher_are_refused_naming_it() -> None:
    local = SweepConfig(name="x")
    with pytest.raises(ConfigError, match=r"--partition, --wait: only with --launcher slurm"):
        launchers.get(local, {"partition": "gpu", "wait": True})
    slurm = local.with_params({"execution.launcher": "slurm"})
    assert isinstance(launchers.get(slurm, {"partition": "gpu", "wait": True}), SlurmLauncher)
    # The sweep command offers every launcher's options, each once, mapped to its field.
    offered = {option.flag: option.path for option in launchers.options()}
    assert offered["--partition"] == "execution.slurm.partition" and offered["--wait"] is None


def test_the_sweep_command_refuses_them_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nexecution: {devices: cpu}\n")
    result = CliRunner().invoke(main, ["sweep", str(path), "--workers", "3"])
    assert result.exit_code == 2 and "--workers: only with --launcher slurm" in result.output


def test_a_worker_knows_the_launcher_task_it_runs_in(monkeypatch) -> None:
    for variable in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(variable, raising=False)
    assert launchers.hosting() is LocalLauncher and LocalLauncher.current_task() is None
    assert LocalLauncher.preemption_signals == (signal.SIGUSR1,)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "17")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert launchers.hosting() is SlurmLauncher and SlurmLauncher.current_task() == "17_3"
    # Under Slurm, SIGTERM (scancel, preemption) abandons the step; USR1 also requeues the task.
    assert signal.SIGTERM in SlurmLauncher.preemption_signals
    assert SlurmLauncher.requeue_signals == (signal.SIGUSR1,)
    # What the worker is handed (it imports no launcher): the task, its signals, the requeue.
    host = launchers.hosting().host()
    assert (host.task, host.requeue_signals) == ("17_3", (signal.SIGUSR1,))
    assert signal.SIGTERM in host.preemption_signals
    assert host.requeue_task == SlurmLauncher.requeue_task
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    local = launchers.hosting().host()
    assert (local.task, local.preemption_signals) == (None, (signal.SIGUSR1,))


def test_default_storage_follows_the_launcher(tmp_path: Path) -> None:
    config = SweepConfig(name="x", execution={"workspace": str(tmp_path)})
    assert launchers.get(config).default_storage().startswith("sqlite:///")
    slurm = config.with_params({"execution.launcher": "slurm"})
    assert launchers.get(slurm).default_storage().startswith("journal:///")


def test_cancel_without_recorded_tasks_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(f"name: x\nexecution: {{workspace: {tmp_path / 'ws'}}}\n")
    result = CliRunner().invoke(main, ["cancel", str(path)])
    assert result.exit_code == 2 and "no launcher tasks recorded" in result.output


def test_device_slots_for_gpu_indices_and_cpu() -> None:
    slots = device_slots("0,1,3", 2)
    assert [slot.gpu for slot in slots] == [0, 0, 1, 1, 3, 3]
    assert [slot.index for slot in slots] == list(range(6))
    assert [slot.name for slot in slots[:3]] == ["cuda:0", "cuda:0", "cuda:1"]
    assert device_slots("cpu", 3) == [Slot(None, 0), Slot(None, 1), Slot(None, 2)]
    # auto: every visible GPU, else the CPU.
    gpus = torch.cuda.device_count()
    expected = [Slot(g, g) for g in range(gpus)] if gpus else [Slot(None, 0)]
    assert device_slots("auto", 1) == expected


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
        "supervised": True,  # the sweep reports failed trials once, at its end
        "allow_failures": False,
        "close_sweep": False,  # the sweep closes its parent run itself
        "retry_failed": False,  # the sweep queued the retries it was asked for itself
    }


def test_cpu_worker_keeps_the_visible_devices_of_its_parent(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    command, env = worker_command(Slot(None, 0), "s", "sqlite:///s.db", "sqlite:///m.db", 1)
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert command[command.index("--device") + 1] == "cpu"


def test_launch_options_from_the_command_line_reach_the_config_zero_included() -> None:
    args = ["x.yaml", "--launcher", "slurm", "--gpus-per-worker", "0", "--partition", "cpu"]
    params = cli.sweep.make_context("sweep", args).params
    # An unset option is None, an unset flag False; a 0 given is kept.
    launch = {k: params[k] for k in ("launcher", "gpus_per_worker", "partition", "workers", "wait")}
    given = cli._given(launch)
    assert given == {"launcher": "slurm", "gpus_per_worker": 0, "partition": "cpu"}
    config = launchers.with_flags(SweepConfig(name="x"), given)
    slurm = config.execution.slurm
    assert config.execution.launcher == "slurm"
    assert (slurm.gpus_per_worker, slurm.partition) == (0, "cpu")


def test_a_launcher_name_without_an_entry_is_refused_naming_the_field() -> None:
    # A stored config of another version: the schema let the name through, the table has none.
    execution = ExecutionConfig.model_construct(**{**ExecutionConfig().__dict__, "launcher": "k8s"})
    config = SweepConfig.model_construct(
        **{**SweepConfig(name="x").__dict__, "execution": execution}
    )
    with pytest.raises(ConfigError, match=r"execution.launcher: unknown launcher 'k8s'"):
        launchers.get(config)


_PROBE = """
import sys
import orchestrator.launchers, orchestrator.report, orchestrator.execution.sweep
import orchestrator.execution.progress, orchestrator.study, orchestrator.tracking
print("torch" in sys.modules)
"""


def test_the_sweep_parent_report_and_status_do_not_import_torch() -> None:
    # Only a worker needs torch; the sweep's parent process, report and status do not pay for it.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
