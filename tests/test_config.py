"""Sweep config loading: defaults, hashing, dotted overrides and every bad-input case."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from orchestrator import plan
from orchestrator.cli import main
from orchestrator.config import ConfigError, SweepConfig, flatten
from orchestrator.sweep_file import load_config, numeric_ranges, parse_config, warnings
from orchestrator.trial.identity import config_hash

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        "alds_rate",
        "alds_rate_compressed",
        "quickstart",
        "fashion_mnist_alds_imp",
        "fashion_mnist_global",
        "fashion_mnist_rewind_control",
        "fashion_mnist_global_rewind_control",
        "fashion_mnist_conv_rewind_control",
    ],
)
def test_shipped_sweeps_are_valid(name: str) -> None:
    config = load_config(ROOT / "sweeps" / f"{name}.yaml")
    assert config.name == name
    assert "alds.rate" in config.search.space


def test_alds_rate_sweep_describes_the_seed_experiment() -> None:
    config = load_config(ROOT / "sweeps" / "alds_rate.yaml")
    assert (config.model.name, config.model.width, config.dataset.name) == ("conv6", 1, "cifar10")
    assert (config.train.optimizer, config.train.lr, config.train.batch_size) == ("adam", 3e-4, 60)
    assert (config.train.iterations, config.dataset.validation) == (30000, 5000)
    # The lottery-ticket schedule its comment names: layer-wise, conv 15%, FC 20%, output 10%,
    # rewound to θ0; ALDS as the seed applies it (project mode).
    assert (config.imp.scope, config.imp.rates, config.imp.rewind) == (
        "layer",
        {"conv": 0.15, "fc": 0.2, "output": 0.1},
        "init",
    )
    assert config.alds.mode == "project"
    # Only the ALDS rate varies: every configuration's twin is the grid's rate-0 point.
    assert list(config.search.space) == ["alds.rate"]
    fixed = plan.fixed_configurations(config)
    assert fixed == [{"alds.rate": r} for r in (0.0, 0.2, 0.4, 0.6, 0.8)]
    assert all(plan.twin_of(config, entry) in fixed for entry in fixed)
    assert plan.total_trials(config) == 15 and plan.most_sampled_twins(config) == 0


def test_every_alds_configuration_gets_its_imp_only_twin(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "name: twins\n"
            "imp: {prune_fraction: 0.2}\n"
            "search:\n"
            "  space:\n"
            "    alds.rate: {low: 0.0, high: 0.8}\n"
            "    alds.mode: {choices: [project, factorize]}\n"
            "    imp.prune_fraction: {low: 0.1, high: 0.3}\n"
            "  enqueue:\n"
            "    - {alds.rate: 0.3, alds.mode: factorize, imp.prune_fraction: 0.25}\n",
        )
    )
    ours = {"alds.rate": 0.3, "alds.mode": "factorize", "imp.prune_fraction": 0.25}
    # The same schedule at rate 0; the ALDS mode means nothing there and takes one value.
    twin = {"alds.rate": 0.0, "alds.mode": "project", "imp.prune_fraction": 0.25}
    assert plan.twin_of(config, ours) == twin
    assert plan.fixed_configurations(config) == [
        ours,
        {"alds.rate": 0.0, "alds.mode": "project", "imp.prune_fraction": 0.2},
        twin,
    ]


def test_rewinding_factorized_networks_to_theta0_is_allowed_with_a_warning(tmp_path: Path) -> None:
    plain = load_config(write(tmp_path, "name: f\nalds: {mode: factorize}\n"))
    assert plain.imp.factorized_rewind == "alds" and warnings(plain) == []
    chosen = load_config(
        write(tmp_path, "name: f\nalds: {mode: factorize}\nimp: {factorized_rewind: theta0}\n")
    )
    (warning,) = warnings(chosen)
    assert warning.startswith("imp.factorized_rewind: theta0") and "unrelated entries" in warning
    # Project mode never factorizes: nothing to warn about.
    project = load_config(write(tmp_path, "name: f\nimp: {factorized_rewind: theta0}\n"))
    assert warnings(project) == []


def test_short_yaml_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "name: tiny\n"))
    assert config.seeds == (0,)
    assert config.train.epochs == 1.0 and config.train.iterations is None
    assert config.alds.rate == 0.0
    assert config.search.objective[0].metric == "accuracy"


def test_single_objective_and_list_are_both_accepted(tmp_path: Path) -> None:
    one = load_config(
        write(tmp_path, "name: a\nsearch: {objective: {metric: loss, direction: minimize}}\n")
    )
    assert len(one.search.objective) == 1 and one.search.objective[0].metric == "loss"
    two = load_config(
        write(
            tmp_path,
            "name: a\nsearch:\n  objective:\n    - {metric: accuracy}\n"
            "    - {metric: params_nonzero, direction: minimize}\n",
        )
    )
    assert [o.metric for o in two.search.objective] == ["accuracy", "params_nonzero"]


def test_config_is_frozen_and_hash_is_stable(tmp_path: Path) -> None:
    first = load_config(write(tmp_path, "name: a\nalds: {rate: 0.3}\n"))
    second = parse_config(yaml.safe_load("alds: {rate: 0.3}\nname: a\n"))
    assert config_hash(first) == config_hash(second)
    assert config_hash(first) != config_hash(first.with_params({"alds.rate": 0.4}))
    with pytest.raises(Exception, match="frozen"):
        first.alds.rate = 0.5  # type: ignore[misc]


def test_with_params_replaces_dotted_fields() -> None:
    config = SweepConfig(name="a").with_params({"alds.rate": 0.5, "imp.prune_fraction": 0.3})
    assert (config.alds.rate, config.imp.prune_fraction) == (0.5, 0.3)
    assert flatten(config)["alds.rate"] == 0.5
    with pytest.raises(ConfigError, match=r"alds\.rate"):
        config.with_params({"alds.rate": 1.0})
    with pytest.raises(ConfigError, match="not a field"):
        config.with_params({"alds.nope": 1})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: x\nalds:\n  rate: [0.1\n")
    assert "YAML syntax error at line" in message and "column" in message


def test_yaml_tags_are_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: !!python/object/apply:os.system ['true']\n")
    assert "YAML" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nalsd: {rate: 0.1}\n", "alsd: unknown key (did you mean 'alds'?)"),
        ("name: x\nalds: {rat: 0.1}\n", "alds.rat: unknown key (did you mean 'rate'?)"),
        ("name: x\ntrain: {lr: abc}\n", "train.lr"),
        ("name: x\ntrain: {batch_size: 2.5}\n", "train.batch_size"),
        ("name: x\nalds: {rate: 1.0}\n", "alds.rate"),
        ("name: x\nalds: {rate: -0.1}\n", "alds.rate"),
        ("name: x\nimp: {prune_fraction: 0}\n", "imp.prune_fraction"),
        ("name: x\nimp: {prune_fraction: 1}\n", "imp.prune_fraction"),
        ("name: x\nimp: {rewind: early}\n", "imp.rewind"),
        ("name: x\nimp: {rates: {deep: 0.2}}\n", "imp.rates"),
        ("name: x\nmodel: conv7\n", "unknown model 'conv7'"),
        ("name: x\nreport: {margin: 0}\n", "report.margin"),
        ("name: x\nreport: {primary: aoc}\n", "report.primary"),
        ("name: x\nreport: {primary: 1.0}\n", "report.primary"),
        ("name: x\nmodel: {name: conv6, width: 0}\n", "model.width"),
        ("name: x\nmodel: {name: conv6, width: 100}\n", "model.width"),
        ("name: x\nmodel: {name: conv6, widht: 0.5}\n", "model.widht: unknown key"),
        ("name: x\nmodel: {name: 'torchvision:resnet18', width: 0.5}\n", "takes no width"),
        ("name: x\nseeds: []\n", "seeds"),
        ("name: x\ntrain: {epochs: 2, iterations: 100}\n", "not both"),
        ("name: 'bad name'\n", "name"),
        ("alds: {rate: 0.1}\n", "name"),
        ("name: x\nexecution: {devices: gpu0}\n", "execution.devices"),
        ("- 1\n", "must be a mapping"),
        ("", "got empty"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_search_range_low_above_high(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: x\nsearch: {space: {alds.rate: {low: 0.5, high: 0.1}}}\n")
    assert "search.space.alds.rate" in message and "greater than high" in message


def test_search_range_outside_the_field_range(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: x\nsearch: {space: {alds.rate: {low: 0.0, high: 1.5}}}\n")
    assert "search.space.alds.rate" in message and "1.5" in message


def test_search_path_that_is_not_a_field(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: x\nsearch: {space: {alds.rat: {low: 0.1, high: 0.5}}}\n")
    assert "search.space.alds.rat: is not a field" in message and "alds.rate" in message
    message = error_of(tmp_path, "name: x\nsearch: {space: {alds: {choices: [1, 2]}}}\n")
    assert "search.space.alds: is not a field" in message


def test_enqueued_value_outside_the_field_range(tmp_path: Path) -> None:
    text = (
        "name: x\nsearch:\n  space: {alds.rate: {low: 0, high: 0.5}}\n  enqueue: [{alds.rate: 2}]\n"
    )
    assert "search.enqueue[0]" in error_of(tmp_path, text)


def test_pruner_with_multi_objective_is_refused(tmp_path: Path) -> None:
    text = (
        "name: x\nsearch:\n  pruner: median\n  objective:\n    - {metric: accuracy}\n"
        "    - {metric: params_nonzero, direction: minimize}\n"
    )
    message = error_of(tmp_path, text)
    assert "pruner 'median'" in message and "2 objectives" in message


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=8)
)
yaml_keys = st.sampled_from(
    [
        "name",
        "seeds",
        "model",
        "dataset",
        "train",
        "alds",
        "imp",
        "search",
        "execution",
        "rate",
        "lr",
        "space",
        "alds.rate",
        "low",
        "high",
        "choices",
        "objective",
        "metric",
        "x",
    ]
)
yaml_documents = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(yaml_keys, children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=yaml_documents)
def test_random_documents_give_a_config_or_a_config_error(document: object) -> None:
    text = yaml.safe_dump(document)
    try:
        result = parse_config(yaml.safe_load(text))
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(result, SweepConfig)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_random_text_gives_a_config_or_a_config_error(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        assert isinstance(load_config(path), SweepConfig)
    except ConfigError as exc:
        assert str(path) in str(exc)


def test_baseline_outside_the_space_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: x\nsearch: {space: {alds.rate: {choices: [0.3, 0.6]}}}\n")
    assert "search.enqueue_baseline: alds.rate = 0.0 lies outside search.space.alds.rate" in message
    text = (
        "name: x\nsearch: {space: {imp.prune_fraction: {low: 0.3, high: 0.5},"
        " alds.rate: {low: 0, high: 0.5}}}\n"
    )
    assert "the baseline takes the config's imp.prune_fraction" in error_of(tmp_path, text)
    ok = (
        "name: x\nsearch:\n  enqueue_baseline: false\n  space: {alds.rate: {choices: [0.3, 0.6]}}\n"
    )
    assert plan.fixed_configurations(load_config(write(tmp_path, ok))) == []


def test_trial_budget_rules(tmp_path: Path) -> None:
    assert "multiple of the 2 seeds" in error_of(
        tmp_path, "name: x\nseeds: [0, 1]\nsearch: {n_trials: 5}\n"
    )
    text = (
        "name: x\nsearch: {sampler: grid, n_trials: 5, space: {alds.rate: {choices: [0.0, 0.5]}}}\n"
    )
    assert "must equal the grid's 2 configurations" in error_of(tmp_path, text)
    text = "name: x\nsearch: {sampler: grid, space: {alds.rate: {low: 0.0, high: 0.5}}}\n"
    assert "grid sampler needs 'choices' or a 'step'" in error_of(tmp_path, text)
    grid = load_config(
        write(
            tmp_path,
            "name: x\nseeds: [0, 1]\nsearch: {sampler: grid,"
            " space: {alds.rate: {low: 0, high: 0.4, step: 0.2}}}\n",
        )
    )
    assert plan.total_trials(grid) == 6
    assert plan.total_trials(load_config(write(tmp_path, "name: x\nseeds: [0, 1, 2]\n"))) == 30


QUICKSTART = yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text())
NUMERIC_FIELDS = sorted(
    path
    for path, value in flatten(parse_config(QUICKSTART)).items()
    if isinstance(value, int | float) and not isinstance(value, bool)
)


def with_field(document: dict, path: str, value: object) -> dict:
    """``document`` with the field at dotted ``path`` set to ``value`` (sections created)."""
    changed = copy.deepcopy(document)
    *sections, name = path.split(".")
    held = changed
    for section in sections:
        held = held.setdefault(section, {})
    held[name] = value
    return changed


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(NUMERIC_FIELDS),
    value=st.one_of(
        st.booleans(),
        st.floats(),
        st.integers(-(2**70), 2**70),
        st.text(max_size=300),
    ),
)
def test_one_number_changed_loads_finite_or_names_its_field(path: str, value: object) -> None:
    # Any value in any numeric field of the quickstart: a config whose number is finite and
    # not a boolean, or an error naming the field that quotes a short piece of the value.
    try:
        config = parse_config(with_field(QUICKSTART, path, value))
    except ConfigError as exc:
        message = str(exc)
        assert path in message
        assert all(len(line) < 300 for line in message.splitlines())
    else:
        loaded = flatten(config)[path]
        assert not isinstance(loaded, bool)
        assert not isinstance(loaded, float) or math.isfinite(loaded)
        assert abs(loaded) <= 2**32  # every upper end (test below) lies under it


@pytest.mark.parametrize(
    ("path", "text", "said"),
    [
        ("train.epochs", ".inf", "finite"),
        ("imp.epochs_per_cycle", ".inf", "finite"),
        ("alds.finetune_epochs", ".inf", "finite"),
        ("train.lr", ".nan", "finite"),
        ("train.lr", ".inf", "finite"),
        ("execution.trial_timeout", ".inf", "finite"),
        ("train.batch_size", "true", "true/false"),
        ("execution.workers_per_device", "true", "true/false"),
        ("imp.cycles", "false", "true/false"),
        ("train.batch_size", str(2**70), "less than or equal to 1048576"),
        ("execution.workers_per_device", str(2**70), "less than or equal to 64"),
        ("dataset.train_subset", str(2**70), "less than or equal to 100000000"),
        ("train.lr", "1e308", "less than or equal to 10"),
        ("train.epochs", "1e308", "less than or equal to 10000"),
    ],
)
def test_meaningless_numbers_exit_2_naming_the_field(
    tmp_path: Path, path: str, text: str, said: str
) -> None:
    stderr = refused_with(tmp_path, path, text)
    assert f"{path}: " in stderr and said in stderr


def refused_with(tmp_path: Path, path: str, text: str) -> str:
    """``orchestrate validate`` on the quickstart with the YAML ``text`` at ``path``: it must
    exit 2; returns its standard error."""
    document = with_field(QUICKSTART, path, "PLACEHOLDER")
    sweep = write(tmp_path, yaml.safe_dump(document).replace("PLACEHOLDER", text))
    result = CliRunner().invoke(main, ["validate", str(sweep)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    return result.stderr


def test_a_long_bad_value_is_quoted_short(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: x\ndataset: {name: " + "x" * 10_000 + "}\n")
    line = next(line for line in message.splitlines() if "dataset.name" in line)
    assert len(line) < 200 and "…" in line


@pytest.mark.parametrize(
    ("path", "text", "field"),
    [
        ("train.milestones", "[100, true]", "train.milestones.1"),
        ("alds.k_candidates", "[true, 2]", "alds.k_candidates.0"),
        ("imp.rates", "{conv: false}", "imp.rates.conv"),
        ("seeds", "[0, true]", "seeds.1"),
        ("train.milestones", f"[{2**70}]", "train.milestones.0"),
    ],
)
def test_booleans_and_huge_numbers_inside_lists_exit_2_naming_the_item(
    tmp_path: Path, path: str, text: str, field: str
) -> None:
    stderr = refused_with(tmp_path, path, text)
    assert f"{field}: " in stderr, stderr


# Checked elsewhere: against the field they replace, and (0, 1) by the objective's validator.
CHECKED_ELSEWHERE = ("search.space", "search.objective")


def test_every_number_of_the_schema_has_both_ends() -> None:
    open_ended = [
        path
        for path, interval in numeric_ranges().items()
        if "∞" in interval and not path.startswith(CHECKED_ELSEWHERE)
    ]
    assert open_ended == []


def test_the_ranges_in_the_docs_are_the_schemas() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    documented = dict(re.findall(r"^\| `([^`]+)` \| ([\[(][^|]+[\])]) \|$", text, re.M))
    expected = {
        path: interval
        for path, interval in numeric_ranges().items()
        if not path.startswith(CHECKED_ELSEWHERE)
    }
    assert documented == expected


def test_the_plain_model_name_is_width_one_in_every_hash_and_dump() -> None:
    plain = parse_config({"name": "x", "model": "conv4"})
    spelled = parse_config({"name": "x", "model": {"name": "conv4", "width": 1}})
    assert config_hash(plain) == config_hash(spelled)
    assert spelled.model_dump(mode="json")["model"] == "conv4"  # as before widths existed
    scaled = parse_config({"name": "x", "model": {"name": "conv4", "width": 0.5}})
    assert config_hash(scaled) != config_hash(plain)
    assert flatten(scaled)["model.width"] == 0.5 and str(scaled.model) == "conv4 (width 0.5)"


def test_the_width_can_be_searched_and_a_searched_name_keeps_it() -> None:
    config = parse_config(
        {
            "name": "x",
            "model": {"name": "conv4", "width": 0.5},
            "search": {"space": {"model.width": {"choices": [0.25, 1.0]}}},
        }
    )
    assert config.with_params({"model.width": 0.25}).model.width == 0.25
    assert (
        config.with_params({"model": "conv2"}).model
        == parse_config({"name": "x", "model": {"name": "conv2", "width": 0.5}}).model
    )
    # Searched at the default width too, where the section dumps as the plain name.
    plain = parse_config({"name": "x", "search": {"space": {"model.width": {"choices": [0.5]}}}})
    assert plain.with_params({"model.width": 0.5}).model.width == 0.5


def test_an_unset_report_section_leaves_every_hash_as_it_was() -> None:
    plain = parse_config({"name": "x"})
    assert "report" not in plain.model_dump(mode="json")
    assert config_hash(parse_config({"name": "x", "report": {}})) == config_hash(plain)
    declared = parse_config({"name": "x", "report": {"margin": 0.5}})
    assert flatten(declared)["report.margin"] == 0.5  # an MLflow param once set
