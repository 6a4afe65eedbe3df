"""Every hash the tool names things by keeps its value for the published sweeps.

``tests/data/published_hashes.json`` holds the values the code gave before the identity module
gathered them (commit 2971b96): each sweep's config and experiment hashes and, for every trial
it plans (each configuration, control and seed), its result key on the CPU and on CUDA (for a
fixed data digest), the name of its progress file and the keys of its cached θ0 and dense
network (for Fashion-MNIST's 10 classes of 1×28×28 images). A change of any of them orphans
published studies, caches and reusable results. One sweep grew on purpose:
fashion_mnist_rewind_control added rates 0.2 and 0.8 (2026-12-07), so its config and
experiment hashes and its progress names are the grown YAML's; the keys of its first trials are
the ones pinned before. fashion_mnist_conv_sequential names the alpha spending it ran under
(pocock, 2026-12-07: its published decisions are what the code gives under pocock, not under
the linear default pinned before), so its config hash and progress names are the YAML's now;
its experiment hash and trial keys are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import plan
from orchestrator.sweep_file import load_config
from orchestrator.trial import identity
from orchestrator.trial.spec import TrialSpec

ROOT = Path(__file__).resolve().parent.parent
PINNED = json.loads((ROOT / "tests" / "data" / "published_hashes.json").read_text())
DIGEST = "digest-0"


def _hashes(sweep: str) -> dict:
    config = load_config(ROOT / "sweeps" / f"{sweep}.yaml")
    configurations = plan.fixed_configurations(config)
    configurations += plan.control_configurations(config, configurations)
    trials = {}
    for params in configurations:
        for seed in config.seeds:
            spec = TrialSpec(config, params, seed)
            init = identity.init_key(spec.config, classes=10, channels=1, size=28, seed=seed)
            dense = identity.dense_key(spec.config, init)
            trials[json.dumps([params, seed], sort_keys=True)] = {
                "trial_key": spec.key(device="cpu", data=DIGEST),
                "trial_key_cuda": spec.key(device="cuda:1", data=DIGEST),
                "progress": spec.progress_name,
                "init": identity.checkpoint_key(init),
                "dense": identity.checkpoint_key(dense),
            }
    return {
        "config_hash": identity.config_hash(config),
        "experiment_hash": identity.experiment_hash(config),
        "trials": trials,
    }


def test_every_published_sweep_is_pinned() -> None:
    assert sorted(PINNED) == sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("sweep", sorted(PINNED))
def test_the_hashes_of_a_published_sweep_are_unchanged(sweep: str) -> None:
    now, pinned = _hashes(sweep), PINNED[sweep]
    assert now["config_hash"] == pinned["config_hash"], f"{sweep}: config hash changed"
    assert now["experiment_hash"] == pinned["experiment_hash"], f"{sweep}: its study is orphaned"
    assert sorted(now["trials"]) == sorted(pinned["trials"]), f"{sweep}: other trials planned"
    changed = [
        f"{trial}: {name} {pinned['trials'][trial][name]} → {value}"
        for trial, values in now["trials"].items()
        for name, value in values.items()
        if pinned["trials"][trial][name] != value
    ]
    assert not changed, f"{sweep}: hashes changed:\n" + "\n".join(changed[:10])


def test_one_rule_hashes_everything() -> None:
    # Canonical JSON (sorted keys, compact) then SHA-256: key order and spacing never matter.
    assert identity.content_hash({"b": 1, "a": [1, 2]}) == identity.content_hash(
        json.loads('{"a": [1,2], "b": 1}')
    )
    assert len(identity.content_hash({})) == 12
    assert len(identity.checkpoint_key({})) == identity.CHECKPOINT_KEY_LENGTH
