"""A sweep that decides (``sequential:``): the design's boundaries and error rates, its bad
input, and real sequential sweeps with two workers, a worker killed during a look, and a grown
``max_seeds``."""

from __future__ import annotations

import copy
import math
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from scipy import stats

from orchestrator import locks, plan, stored_names, workspace
from orchestrator.report import looks, sequential
from orchestrator.study import growth
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.results import (
    completed_once,
    load_study,
    running_at_step,
    study_storage,
    wait_for,
)
from orchestrator.testing.sweeps import sweep_document, write_sweep

# --------------------------------------------------------------------------- the design


def test_one_look_is_the_fixed_t_test() -> None:
    (bound,) = sequential.boundaries((8,), 0.025)
    assert bound == pytest.approx(float(stats.t.ppf(0.975, 7)), rel=0.02)
    # Fewer than three seeds decide nothing; their share of the level passes on.
    assert sequential.boundaries((2, 4), 0.025)[0] == math.inf


@pytest.mark.parametrize("kind", sequential.SPENDING)
def test_paired_t_tests_cross_the_boundaries_with_the_level_spent(kind: str) -> None:
    """Sweeps simulated apart from the ones that set the boundaries, with another spread:
    the t-statistics' first crossings come at the rate each look spends."""
    looks = (3, 5, 7, 10)
    bounds = np.array(sequential.boundaries(looks, 0.05, kind))
    rng = np.random.default_rng(1)
    draws = rng.standard_normal((200_000, 10)) * 3.0
    crossed = np.zeros(len(draws), dtype=bool)
    for n, bound in zip(looks, bounds, strict=True):
        sample = draws[:, :n]
        t = sample.mean(axis=1) / (sample.std(axis=1, ddof=1) / np.sqrt(n))
        crossed |= t >= bound
        spent = sequential.spending(n / 10, 0.05, kind)
        assert crossed.mean() == pytest.approx(spent, abs=0.0025)  # 3 binomial std errors


def _design(**change: Any) -> sequential.Design:
    fields = {"first": 3, "step": 1, "max_seeds": 10, "alpha": 0.05, "family_size": 3}
    return sequential.Design(**{**fields, "margin": 0.005, **change})


def test_a_decision_agrees_with_its_interval_and_the_margin() -> None:
    design = _design()
    rng = np.random.default_rng(2)
    mean = rng.normal(0.0, 0.01, 5000)
    std = rng.uniform(0.0005, 0.01, 5000)
    for look in range(len(design.looks)):
        decision, low, high = design.decide(mean, std, look)
        assert np.array_equal(decision == sequential.BETTER, low > 0)
        assert np.array_equal(decision == sequential.WORSE, high < 0)
        equivalent = decision == sequential.EQUIVALENT
        # An equivalence shows no difference and lies inside the margin.
        assert ((low[equivalent] <= 0) & (high[equivalent] >= 0)).all()
        assert (np.abs(mean[equivalent]) < 0.005).all()
        last = look == len(design.looks) - 1
        # Still open at the last look is undecided, and only there.
        assert not (decision == (sequential.OPEN if last else sequential.UNDECIDED)).any()
    # No spread decides nothing; three seeds are the fewest a look decides on.
    assert design.decide(0.01, 0.0, 0)[0] == sequential.OPEN
    assert _design(first=2).decide(0.05, 0.001, 0)[0] == sequential.OPEN
    assert design.looks == (3, 4, 5, 6, 7, 8, 9, 10)
    assert _design(step=3).looks == (3, 6, 9, 10)


def test_a_small_simulation_holds_both_error_rates() -> None:
    """The benchmark's simulation in seconds: every true effect 0 (a wrong better/worse) and
    every true effect at the margin (a wrong equivalent), family-wise, at spreads of one and
    two margins."""
    rng = np.random.default_rng(3)
    design = _design(max_seeds=12, family_size=4)
    for std in (0.005, 0.01):
        nulls, _ = sequential.simulate(design, [0.0] * 4, [std] * 4, 3000, rng)
        wrong = np.isin(nulls, (sequential.BETTER, sequential.WORSE)).any(axis=1).mean()
        edge, used = sequential.simulate(
            design, [0.005, -0.005, 0.005, -0.005], [std] * 4, 3000, rng
        )
        fooled = (edge == sequential.EQUIVALENT).any(axis=1).mean()
        # Both at or below alpha, with room for the simulation's error (3000 sweeps: ±0.004).
        assert wrong <= 0.05 + 0.012 and fooled <= 0.05 + 0.012
        assert ((used >= 3) & (used <= 12)).all()
    # A clear answer stops early: no true difference and a small spread.
    decided, used = sequential.simulate(design, [0.0] * 4, [0.001] * 4, 500, rng)
    assert (decided == sequential.EQUIVALENT).mean() > 0.9 and used.mean() < 6


def test_a_sampled_configuration_races_like_a_grid_one() -> None:
    config = parse_config(
        {
            "name": "sampled",
            "seeds": [0, 1, 2],
            "sequential": {"max_seeds": 6},
            "report": {"margin": 0.5},
            "search": {
                "sampler": "random",
                "n_trials": 9,
                "space": {"alds.rate": {"low": 0.0, "high": 0.6}},
            },
        }
    )
    # Sampled in this order: the IMP-only rate is a twin, a repeat races once, 0.9 is outside
    # the space (a trial of an earlier YAML).
    chosen = [{"alds.rate": r} for r in (0.3, 0.0, 0.3, 0.45, 0.9)]
    raced = looks.configurations_of(config, chosen)
    assert raced == [{"alds.rate": 0.3}, {"alds.rate": 0.45}]
    # The family: the budget's three configurations less the twin.
    assert looks.design(config).family_size == 2
    # Three seeds each: 0.3 follows its twin to 0.1 point, 0.45 scatters by 2 points.
    steps, sparsity = [0, 1, 2, 3], [0.0, 0.5, 0.75, 0.875]
    twin = [0.9, 0.88, 0.85, 0.8]

    def shifted(by: float) -> tuple[list[int], list[float], list[float]]:
        return steps, sparsity, [a + by for a in twin]

    curves = {
        "alds.rate=0.0": {seed: shifted(0.0) for seed in (0, 1, 2)},
        "alds.rate=0.3": {seed: shifted(d) for seed, d in enumerate((0.001, -0.001, 0.0005))},
        "alds.rate=0.45": {seed: shifted(d) for seed, d in enumerate((0.02, -0.02, 0.01))},
    }
    close, scattered = looks.states(config, curves, raced)
    assert close.decision == sequential.EQUIVALENT and close.seeds == 3
    assert scattered.decision == sequential.OPEN and scattered.needs == (0, 1, 2, 3)
    # Only the open one gets a seed, and its twin with it.
    needed = looks.needs(config, [close, scattered])
    assert needed["alds.rate=0.3"] == (0, 1, 2)
    assert needed["alds.rate=0.45"] == needed["alds.rate=0.0"] == (0, 1, 2, 3)


def test_the_benchmark_prints_error_rates_and_savings() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks/bench_sequential.py"), "--sweeps", "1000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "family-wise wrong better/worse" in done.stdout
    # One block per spending function, and the worst case of the default.
    blocks = [line for line in done.stdout.splitlines() if line.endswith("sweeps per scenario)")]
    assert [line.split()[0] for line in blocks] == list(sequential.SPENDING)
    assert done.stdout.count("fewer)") == len(sequential.SPENDING)
    assert f"worst case, {sequential.LINEAR}," in done.stdout


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("section", "report", "message"),
    [
        ({"max_seeds": 6}, None, "sequential needs report.margin"),
        ({"max_seeds": 2}, {"margin": 1.0}, "sequential.max_seeds (2) is smaller than the 3"),
        ({"max_seeds": 6, "step": 0}, {"margin": 1.0}, "sequential.step"),
        ({"max_seeds": 6, "alpha": 0.5}, {"margin": 1.0}, "sequential.alpha"),
        ({"max_seeds": 6, "alpha": 0.0}, {"margin": 1.0}, "sequential.alpha"),
        ({"step": 1}, {"margin": 1.0}, "sequential.max_seeds"),
    ],
)
def test_bad_sequential_input_exits_2_naming_the_field(
    tmp_path: Path, section: dict, report: dict | None, message: str
) -> None:
    document = sweep_document(tmp_path, "bad", seeds=[0, 1, 2], sequential=section)
    if report is not None:
        document["report"] = report
    path = write_sweep(tmp_path, document)
    result = orchestrate("validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and str(path) in result.stderr
    assert not (tmp_path / "ws").exists()  # nothing created


# --------------------------------------------------------------------------- real sweeps

MARGIN_POINTS = 1.5


def _document(folder: Path, name: str) -> dict:
    """Three ALDS rates and their twin, three seeds first, up to five: on the tiny task the
    high rates are clearly worse at the first look, the lowest stays open."""
    return sweep_document(
        folder,
        name,
        seeds=[0, 1, 2],
        sequential={"max_seeds": 5},
        report={"margin": MARGIN_POINTS},
        search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0, 0.3, 0.6, 0.9]}}},
        execution={"workers_per_device": 2},
    )


def _decisions(document: dict) -> dict[str, tuple[int, int]]:
    config = parse_config(document)
    trials = growth.in_sweep(config, load_study(document).get_trials(deepcopy=False))
    return {s.config: (s.decision, s.seeds) for s in looks.look(config, trials)}


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    folder = tmp_path_factory.mktemp("sequential")
    document = _document(folder, "decides")
    path = write_sweep(folder, document)
    done = orchestrate("sweep", str(path), cwd=folder, threads=1)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, document, done.stdout


def test_a_sequential_sweep_runs_each_configuration_until_it_is_decided(
    decided: tuple[Path, dict, str],
) -> None:
    _, document, _ = decided
    config = parse_config(document)
    trials = load_study(document).get_trials(deepcopy=False)
    # Every (configuration, seed) once, nothing left queued or failed.
    counts = completed_once(trials)
    assert set(counts.values()) == {1}
    assert all(t.state == TrialState.COMPLETE for t in trials)
    states = looks.look(config, growth.in_sweep(config, trials))
    assert len(states) == 3
    seeds_of = Counter(dict(params)["alds.rate"] for params, _ in counts)
    margin = MARGIN_POINTS / 100
    for state in states:
        assert state.decided
        assert 3 <= state.seeds <= 5
        # Undecided only at max_seeds; a decision before it ends the configuration's seeds.
        assert (state.decision == sequential.UNDECIDED) == (state.seeds == 5)
        assert seeds_of[state.params["alds.rate"]] == state.seeds
        assert state.needs == plan.all_seeds(config)[: state.seeds]
        if state.decision == sequential.BETTER:
            assert state.ci_low > 0
        elif state.decision == sequential.WORSE:
            assert state.ci_high < 0
        elif state.decision == sequential.EQUIVALENT:
            assert state.ci_low <= 0 <= state.ci_high and abs(state.mean) < margin
    # The twin ran every seed a configuration needed, and no other.
    assert seeds_of[0.0] == max(state.seeds for state in states)
    # Some configuration decided at the first look and one went on: the design raced.
    assert min(state.seeds for state in states) == 3
    assert len(trials) < 4 * 5


def test_status_and_the_report_show_the_decisions(decided: tuple[Path, dict, str]) -> None:
    folder, document, _ = decided
    path = folder / "decides.yaml"
    status = orchestrate("status", str(path), cwd=folder)
    assert status.returncode == 0, status.stderr
    shown = " ".join(status.stdout.split())
    assert "alds.rate=0.6: ALDS worse at look 1 (3 seeds)" in shown
    report = orchestrate("report", str(path), cwd=folder)
    assert report.returncode == 0, report.stderr[-3000:]
    table = pd.read_csv(workspace.report_folder(parse_config(document)) / "decisions.csv")
    assert set(table.columns) >= {"config", "seeds", "decision", "look", "ci_low", "ci_high"}
    expected = _decisions(document)
    for row in table.to_dict("records"):
        decision, seeds = expected[row["config"]]
        assert row["decision"] == sequential.words(decision, MARGIN_POINTS / 100)
        assert row["seeds"] == seeds
        if decision != sequential.UNDECIDED:
            assert row["trials_saved"] == row["fixed_seeds"] - seeds
        else:
            assert "seeds to show equivalence" in row["planned"]
            assert math.isnan(row["fixed_seeds"])


def test_validate_prints_the_looks_and_the_cost(decided: tuple[Path, dict, str]) -> None:
    folder, _, _ = decided
    shown = " ".join(
        orchestrate("validate", str(folder / "decides.yaml"), cwd=folder).stdout.split()
    )
    assert "sequential: looks at 3, 4, 5 seeds" in shown
    assert "at most 20 trials (4 configurations × 5 seeds)" in shown
    assert "expected seeds per configuration" in shown


def test_a_worker_killed_during_a_look_loses_nothing(decided: tuple[Path, dict, str]) -> None:
    folder, reference, _ = decided
    document = _document(folder, "killed")
    path = write_sweep(folder, document)
    made = orchestrate("sweep", str(path), "--enqueue-only", cwd=folder)
    assert made.returncode == 0, made.stderr
    url = study_storage(document)
    lock = workspace.lock_file(workspace.sqlite_file(url))
    worker = ["worker", "--study", "killed", "--storage", url, "--threads", "1"]
    victim = orchestrate(*worker, cwd=folder, background=True)
    # Read with Optuna's own storage: this tool's takes the creation lock to open it.
    raw = optuna.storages.RDBStorage(url)

    def finished() -> int:
        trials = optuna.load_study(study_name="killed", storage=raw).trials
        return sum(t.state == TrialState.COMPLETE for t in trials)

    killed = False
    for _ in range(10):
        # A trial training (its key claimed under the creation lock): the test takes the
        # lock, so the worker finishes the trial, waits for the lock in its look, dies there.
        wait_for(lambda: running_at_step("killed", url, 1) is not None, what="a trial training")
        with locks.exclusive(lock):
            before = finished()
            deadline = time.monotonic() + 60
            while finished() == before and time.monotonic() < deadline:
                time.sleep(0.2)
            if finished() > before:  # else it had moved on to the next trial's key
                time.sleep(2)
                assert victim.poll() is None
                victim.send_signal(signal.SIGKILL)
                finish(victim)
                killed = True
                break
    assert killed
    code, _, err = finish(orchestrate(*worker, cwd=folder, background=True))
    assert code == 0, err[-3000:]
    counts = completed_once(load_study(document).trials)
    assert set(counts.values()) == {1}
    # The same decisions, at the same seeds, as the sweep that ran without a fault.
    assert _decisions(document) == _decisions(reference)


def test_growing_max_seeds_resumes_only_the_open_configurations(
    decided: tuple[Path, dict, str],
) -> None:
    folder, document, _ = decided
    grown = copy.deepcopy(document)
    grown["name"] = "decides"
    grown["sequential"]["max_seeds"] = 6
    before = load_study(document).get_trials(deepcopy=False)
    undecided = {
        state.params["alds.rate"]
        for state in looks.look(
            parse_config(document), growth.in_sweep(parse_config(document), before)
        )
        if state.decision == sequential.UNDECIDED
    }
    path = write_sweep(folder, grown)
    done = orchestrate("sweep", str(path), cwd=folder, threads=1)
    assert done.returncode == 0, done.stderr[-3000:]
    after = load_study(grown).get_trials(deepcopy=False)
    new = [t for t in after if t.number >= len(before)]
    # Only the configurations left undecided at 5 seeds, and their twin, got a sixth seed.
    assert {t.params["alds.rate"] for t in new} == (undecided | {0.0} if undecided else set())
    assert all(t.user_attrs[stored_names.TRIAL_SEED] == 5 for t in new)
    assert set(completed_once(after).values()) == {1}
