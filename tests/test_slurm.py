"""``--launcher slurm`` on a real single-node Slurm cluster (started here, see
:class:`orchestrator.testing.servers.ThrowawaySlurm`), and the journal-file storage it defaults
to."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import stored_names, workspace
from orchestrator.cli import worker as worker_cli
from orchestrator.launchers import slurm
from orchestrator.study import study as studies
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.results import (
    completed_once,
    curve,
    load_study,
    running_at_step,
    study_storage,
    tracking_uri,
    wait_for,
)
from orchestrator.testing.servers import ThrowawaySlurm
from orchestrator.testing.sweeps import slow_sweep, sweep_document, write_sweep

# --------------------------------------------------------------------------- no cluster needed


def slurm_document(tmp_path: Path, name: str, **slurm_section: object) -> dict:
    """A sweep of :func:`slow_sweep` trials (3 IMP cycles) for one-CPU workers on Slurm: on
    ``execution.devices: cpu`` a task asks for no GPU without ``gpus_per_worker``."""
    one_cpu = {"workers": 1, "cpus_per_worker": 1}
    return slow_sweep(
        tmp_path,
        name,
        imp={"cycles": 3, "epochs_per_cycle": 1},
        execution={"slurm": {**one_cpu, **slurm_section}},
    )


def test_batch_script_holds_every_option_of_the_yaml_section(tmp_path: Path) -> None:
    document = sweep_document(tmp_path, "script")
    document["execution"]["slurm"] = {
        "workers": 6,
        "partition": "gpu-a100",
        "time": "1-12:00:00",
        "gpus_per_worker": 2,
        "cpus_per_worker": 8,
        "memory": "32G",
        "account": "lab42",
        "signal_seconds": 600,
        "setup": ["module load cuda/12.4", "source ~/venv/bin/activate"],
        "extra": ["--qos=high", "--constraint=a100"],
    }
    config = parse_config(document)
    script = slurm.batch_script(
        config, storage_url="journal:///shared/s.journal", tracking_uri="http://login:5000"
    )
    lines = script.splitlines()
    options = [line.removeprefix("#SBATCH ") for line in lines if line.startswith("#SBATCH ")]
    for option in (
        "--array=0-5",
        "--partition=gpu-a100",
        "--time=1-12:00:00",
        "--gres=gpu:2",
        "--cpus-per-task=8",
        "--mem=32G",
        "--account=lab42",
        "--signal=B:USR1@600",
        "--requeue",
        "--qos=high",
        "--constraint=a100",
        "--job-name=orchestrate-script",
    ):
        assert option in options, option
    assert f"--output={slurm.log_file(config)}" in options
    # The set-up lines run before the worker, which replaces the shell (signals reach it).
    setup = lines.index("module load cuda/12.4")
    assert lines[setup + 1] == "source ~/venv/bin/activate"
    (worker,) = [line for line in lines if line.startswith("exec ")]
    assert lines.index(worker) > setup
    for part in (
        "worker --study script",
        "--storage journal:///shared/s.journal",
        "--tracking-uri http://login:5000",
        "--device cuda",
        '--threads "${SLURM_CPUS_PER_TASK:-1}"',
    ):
        assert part in worker, part
    # The worker line is a real call of `orchestrate worker`, as Slurm's shell expands it.
    expanded = worker.replace("${SLURM_CPUS_PER_TASK:-1}", "8").replace(
        "${SLURM_ARRAY_TASK_ID:-0}", "3"
    )
    arguments = shlex.split(expanded)[1:]
    assert arguments[:3] == [sys.executable, "-m", "orchestrator"]
    params = worker_cli.make_context("worker", arguments[4:]).params
    assert params["threads"] == 8 and params["index"] == 3 and params["device"] == "cuda"
    assert params["close_sweep"] and params["allow_failures"]
    # bash accepts the script as written.
    path = tmp_path / "worker.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("time", "four hours", "time"),
        ("workers", 0, "workers"),
        ("gpus_per_worker", -1, "gpus_per_worker"),
        ("extra", ["qos=high"], "extra"),
        ("partitions", "gpu", "partitions"),
    ],
)
def test_bad_slurm_field_is_a_clear_exit_2_error(
    tmp_path: Path, field: str, value: object, named: str
) -> None:
    document = sweep_document(tmp_path, "bad")
    document["execution"]["slurm"] = {field: value}
    path = write_sweep(tmp_path, document)
    # validate and sweep load the file alike; sweep is checked once, on the first case.
    commands = [("validate",)] + ([("sweep", "--launcher", "slurm")] if field == "time" else [])
    for command in commands:
        result = orchestrate(*command[:1], str(path), *command[1:], cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"execution.slurm.{named}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not Path(document["execution"]["workspace"]).exists()  # nothing was created


def test_slurm_options_need_the_slurm_launcher(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, sweep_document(tmp_path, "local"))
    result = orchestrate("sweep", str(path), "--wait", "--partition", "gpu", cwd=tmp_path)
    assert result.returncode == 2
    assert "--partition, --wait: only with --launcher slurm" in result.stderr


@pytest.mark.slow
def test_two_workers_on_a_journal_storage_claim_each_trial_once(tmp_path: Path) -> None:
    document = sweep_document(
        tmp_path,
        "journal",
        seeds=[0, 1],
        search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0, 0.5]}}},
    )
    path = write_sweep(tmp_path, document)
    journal = tmp_path / "shared" / "study.journal"
    url = workspace.journal_url(journal)
    enqueued = orchestrate("sweep", str(path), "--storage", url, "--enqueue-only", cwd=tmp_path)
    assert enqueued.returncode == 0, enqueued.stderr[-3000:]
    command = ("worker", "--study", "journal", "--storage", url, "--threads", "1")
    workers = [orchestrate(*command, cwd=tmp_path, background=True) for _ in range(2)]
    for worker in workers:
        code, _, err = finish(worker)
        assert code == 0, err[-3000:]
    trials = optuna.load_study(study_name="journal", storage=studies.open_storage(url)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    counts = completed_once(trials)
    assert len(counts) == 4 and set(counts.values()) == {1}
    # Both workers ran trials, and each trial beat into the journal while it ran.
    assert len({t.user_attrs[stored_names.TRIAL_WORKER] for t in trials}) == 2
    assert all(stored_names.TRIAL_HEARTBEAT in t.system_attrs for t in trials)


def test_journal_heartbeat_finds_a_dead_workers_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = sweep_document(tmp_path, "beats")
    config = parse_config(document)
    url = workspace.journal_url(tmp_path / "study.journal")
    storage = studies.open_storage(url)
    study = studies.create_or_resume(config, storage)
    from orchestrator.study import queue

    queue.fill_queue(study, config)
    trial, _ = queue.claim_trial(study)
    trial.set_user_attr(stored_names.TRIAL_TASK, "17_0")
    monkeypatch.setenv("ORCHESTRATE_HEARTBEAT_SECONDS", "1")
    with queue.Heartbeat(storage, trial):
        time.sleep(2.5)
        # Beating: never stale, however long the trial runs.
        assert queue.fail_stale(study, max_retries=1) == []
    time.sleep(4.5)  # four missed beats and a half
    assert queue.fail_stale(study, max_retries=1) == [trial.number]
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[stored_names.TRIAL_FAIL_REASON] == queue.STALE_REASON
    retry = [t for t in study.trials if t.system_attrs.get(stored_names.TRIAL_FAILED_TRIAL) == 0]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    # The retry carries the trial, not its dead try: no old beat (it would look stale the
    # moment it is claimed), no Slurm task (cancel would requeue it while it runs elsewhere).
    assert stored_names.TRIAL_HEARTBEAT not in retry[0].system_attrs
    assert stored_names.TRIAL_TASK not in retry[0].user_attrs
    claimed = [queue.claim_trial(study)[0].number for _ in range(2)]  # trial 1, then the retry
    assert claimed[-1] == retry[0].number
    assert queue.fail_stale(study, max_retries=1) == []


# --------------------------------------------------------------------------- on a real cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawaySlurm]:
    with ThrowawaySlurm(cpus=4) as running:
        yield running


def journal_study(document: dict) -> optuna.Study:
    """The study in the sweep's journal file (the storage of ``--launcher slurm``)."""
    return load_study(document, study_storage(document, journal=True))


def accuracy(document: dict, trial: optuna.trial.FrozenTrial) -> list[tuple[int, float]]:
    """The trial's accuracy curve in the sweep's own MLflow store."""
    return curve(MlflowClient(tracking_uri(document)), trial.user_attrs[stored_names.TRIAL_RUN_ID])


@pytest.mark.slow
def test_wait_runs_a_two_task_array_that_survives_a_killed_task(
    cluster: ThrowawaySlurm, tmp_path: Path
) -> None:
    document = slurm_document(tmp_path, "array", workers=2)
    document["search"] = {
        "sampler": "grid",
        "space": {"alds.rate": {"choices": [0.0, 0.3, 0.6]}},
    }
    path = write_sweep(tmp_path, document)
    sweep = orchestrate(
        "sweep",
        str(path),
        "--launcher",
        "slurm",
        "--wait",
        cwd=tmp_path,
        env=cluster.variables(),
        background=True,
    )
    journal = study_storage(document, journal=True)
    # One task's worker dies hard mid-trial (its node fails; scancel would send SIGTERM
    # first): the other worker finds the trial stale (no beats for four heartbeats) and
    # retries it.
    running = wait_for(lambda: running_at_step("array", journal, 1), what="a trial at step 1")
    victim = running.user_attrs[stored_names.TRIAL_WORKER]
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
    code, out, err = finish(sweep)
    assert code == 0, err[-3000:] + out[-3000:]
    assert "submitted job array" in out
    trials = journal_study(document).trials
    counts = completed_once(trials)
    assert len(counts) == 3 and set(counts.values()) == {1}
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.user_attrs[stored_names.TRIAL_FAIL_REASON] for t in killed] == [
        "worker stopped sending heartbeats"
    ]
    assert len({t.user_attrs[stored_names.TRIAL_TASK] for t in trials}) == 2
    # The batch script is in the workspace; status shows the tasks next to the trials.
    config = parse_config(document)
    assert slurm.batch_script_file(config).read_text().startswith("#!/bin/bash")
    status = orchestrate("status", str(path), cwd=tmp_path, env=cluster.variables())
    assert status.returncode == 0, status.stderr
    job = slurm.job_ids(config)[0]
    assert f"Slurm job(s) {job}" in status.stdout
    assert f"{job}_0" in status.stdout and f"{job}_1" in status.stdout


@pytest.mark.slow
def test_usr1_requeues_the_task_and_the_trial_resumes_at_its_last_cycle(
    cluster: ThrowawaySlurm, tmp_path: Path
) -> None:
    document = slurm_document(tmp_path, "preempted")
    document["search"] = {
        "sampler": "grid",
        "enqueue_baseline": False,
        "space": {"alds.rate": {"choices": [0.5]}},
    }
    path = write_sweep(tmp_path, document)
    submitted = orchestrate(
        "sweep", str(path), "--launcher", "slurm", cwd=tmp_path, env=cluster.variables()
    )
    assert submitted.returncode == 0, submitted.stderr
    (job,) = slurm.job_ids(parse_config(document))
    assert f"submitted job array {job}" in submitted.stdout
    journal = study_storage(document, journal=True)
    wait_for(lambda: running_at_step("preempted", journal, 2), what="the trial at step 2")
    # What the time-limit warning (--signal=B:USR1@N) sends, at a moment of our choosing.
    env = cluster.env()
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job}_0"], env=env, check=True)

    def restarted_and_done() -> bool:
        (task,) = [t for t in slurm_tasks(env, job)]
        return task.restarts >= 1 and task.state == "COMPLETED"

    wait_for(restarted_and_done, timeout=600, what="the requeued task to finish")
    trials = journal_study(document).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs[stored_names.TRIAL_FAIL_REASON] == "interrupted"
    assert trials[1].system_attrs[stored_names.TRIAL_FAILED_TRIAL] == 0
    # An interruption is not a failure of the trial: no retry was spent on it.
    assert trials[1].system_attrs[stored_names.TRIAL_RETRY_HISTORY] == []
    uri = tracking_uri(document)
    resumed = MlflowClient(uri).get_run(trials[1].user_attrs[stored_names.TRIAL_RUN_ID])
    assert resumed.data.tags[stored_names.TAG_RESUMED] == "true"
    # Without --wait no sweep process waits for the end: the last worker closes the parent.
    parent = journal_study(document).user_attrs[stored_names.STUDY_PARENT_RUN_ID]
    assert MlflowClient(uri).get_run(parent).info.status == "FINISHED"
    # Every step exactly once, equal to the same trial run without preemption.
    preempted = accuracy(document, trials[1])
    assert [step for step, _ in preempted] == list(range(document["imp"]["cycles"] + 2))
    reference = slow_sweep(tmp_path, "reference", search=document["search"], imp=document["imp"])
    reference_path = write_sweep(tmp_path, reference)
    done = orchestrate(
        "sweep",
        str(reference_path),
        cwd=tmp_path,
        env={"ORCHESTRATE_WORKER_THREADS": "1"},
        heartbeat=None,
        timeout=None,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (uninterrupted,) = load_study(reference).trials
    assert preempted == accuracy(reference, uninterrupted)


def slurm_tasks(env: dict[str, str], job: str) -> list[slurm.Task]:
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    try:
        return slurm.tasks([job])
    finally:
        if previous is None:
            del os.environ["SLURM_CONF"]
        else:
            os.environ["SLURM_CONF"] = previous


@pytest.mark.slow
def test_cancel_stops_the_tasks_and_requeues_their_trials(
    cluster: ThrowawaySlurm, tmp_path: Path
) -> None:
    document = slurm_document(tmp_path, "cancelled")
    document["search"] = {"sampler": "grid", "space": {"alds.rate": {"choices": [0.0]}}}
    document["imp"]["cycles"] = 8  # still running when `orchestrate cancel` has started
    path = write_sweep(tmp_path, document)
    submitted = orchestrate(
        "sweep", str(path), "--launcher", "slurm", cwd=tmp_path, env=cluster.variables()
    )
    assert submitted.returncode == 0, submitted.stderr
    journal = study_storage(document, journal=True)
    wait_for(lambda: running_at_step("cancelled", journal, 1), what="the trial at step 1")
    cancelled = orchestrate("cancel", str(path), cwd=tmp_path, env=cluster.variables())
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled 1 task(s)" in cancelled.stdout
    trials = journal_study(document).trials
    # Nothing is left RUNNING; the trial waits in the queue for the next workers.
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs[stored_names.TRIAL_FAIL_REASON] in (
        "interrupted",
        slurm.CANCELLED_REASON,
    )
    (job,) = slurm.job_ids(parse_config(document))
    assert all(not task.active for task in slurm_tasks(cluster.env(), job))
    # Submitting again resumes it.
    resumed = orchestrate(
        "sweep", str(path), "--launcher", "slurm", "--wait", cwd=tmp_path, env=cluster.variables()
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = journal_study(document).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert [step for step, _ in accuracy(document, trials[1])] == list(
        range(document["imp"]["cycles"] + 2)
    )
    assert len(slurm.job_ids(parse_config(document))) == 2
    # The same through `sweep --cancel`, on a sweep whose tasks have all ended: nothing to do.
    again = orchestrate(
        "sweep", str(path), "--launcher", "slurm", "--cancel", cwd=tmp_path, env=cluster.variables()
    )
    assert again.returncode == 0, again.stderr
    assert "cancelled 0 task(s)" in again.stdout and "requeued 0 running trial(s)" in again.stdout


@pytest.mark.slow
def test_a_gpu_request_the_cluster_cannot_meet_names_the_field(
    cluster: ThrowawaySlurm, tmp_path: Path
) -> None:
    # The cluster here has no GPUs: a sweep that asks one per task is refused at submission.
    document = slurm_document(tmp_path, "gpuless", gpus_per_worker=1)
    path = write_sweep(tmp_path, document)
    result = orchestrate(
        "sweep", str(path), "--launcher", "slurm", cwd=tmp_path, env=cluster.variables()
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "execution.slurm.gpus_per_worker: 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_prints_the_resolved_slurm_options(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from orchestrator.cli import main

    document = sweep_document(tmp_path, "resolved")  # execution.devices: cpu
    document["execution"] |= {"launcher": "slurm", "slurm": {"workers": 3}}
    on_cpu = CliRunner().invoke(main, ["validate", str(write_sweep(tmp_path, document))])
    assert on_cpu.exit_code == 0, on_cpu.output
    assert "3 task(s), each --cpus-per-task=4 and no GPU (from execution.devices)" in " ".join(
        on_cpu.output.split()
    )
    document["execution"] |= {"devices": "auto"}
    on_gpus = CliRunner().invoke(main, ["validate", str(write_sweep(tmp_path, document))])
    assert "--gres=gpu:1 (from execution.devices), workers on cuda" in " ".join(
        on_gpus.output.split()
    )


def test_many_tasks_on_a_sqlite_tracking_file_are_warned_of(tmp_path: Path) -> None:
    document = slurm_document(tmp_path, "many", workers=8)
    config = parse_config(document)
    said = slurm.tracking_warning(config, "sqlite:////shared/ws/mlflow.db")
    assert said is not None and "8 tasks" in said and "--tracking-uri" in said
    assert slurm.tracking_warning(config, "http://login:5000") is None
    few = parse_config(slurm_document(tmp_path, "few", workers=slurm.SQLITE_WRITERS))
    assert slurm.tracking_warning(few, "sqlite:////shared/ws/mlflow.db") is None


@pytest.mark.slow
def test_a_sequential_sweep_decides_in_a_job_array_with_no_parent(
    cluster: ThrowawaySlurm, tmp_path: Path
) -> None:
    """Submitted without --wait: no sweep process follows the array; its workers look after
    each trial, keep claiming while a look may add work and leave when every configuration
    is decided, and the last closes the sweep."""
    from orchestrator.report import looks, sequential
    from orchestrator.study import growth

    document = sweep_document(
        tmp_path,
        "decides_on_slurm",
        seeds=[0, 1, 2],
        sequential={"max_seeds": 5},
        report={"margin": 1.5},
        search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0, 0.3, 0.6, 0.9]}}},
        execution={"slurm": {"workers": 2, "cpus_per_worker": 1}},
    )
    path = write_sweep(tmp_path, document)
    submitted = orchestrate(
        "sweep", str(path), "--launcher", "slurm", cwd=tmp_path, env=cluster.variables()
    )
    assert submitted.returncode == 0, submitted.stderr
    (job,) = slurm.job_ids(parse_config(document))
    env = cluster.env()
    wait_for(
        lambda: all(not task.active for task in slurm_tasks(env, job)),
        timeout=600,
        what="the job array to end",
    )
    config = parse_config(document)
    trials = journal_study(document).trials
    assert set(completed_once(trials).values()) == {1}
    assert all(t.state == TrialState.COMPLETE for t in trials)
    states = looks.look(config, growth.in_sweep(config, trials))
    assert all(state.decided for state in states)
    seeds = {rate: sum(t.params["alds.rate"] == rate for t in trials) for rate in (0.3, 0.6, 0.9)}
    for state in states:
        assert seeds[state.params["alds.rate"]] == state.seeds
        assert (state.decision == sequential.UNDECIDED) == (state.seeds == 5)
    # The decisions the workers kept are the ones the trials give.
    kept = journal_study(document).user_attrs[stored_names.STUDY_DECISIONS]
    assert {label: record["seeds"] for label, record in kept.items()} == {
        state.config: state.seeds for state in states
    }
    parent = journal_study(document).user_attrs[stored_names.STUDY_PARENT_RUN_ID]
    assert MlflowClient(tracking_uri(document)).get_run(parent).info.status == "FINISHED"
