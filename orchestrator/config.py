"""The sweep schema: a sweep YAML's document → validated, typed, frozen configuration.

Every section is a frozen pydantic model that forbids unknown keys, so a typo is an error
(with the nearest valid key suggested) rather than a silently ignored setting; an invalid
document's errors become one message naming every bad field (:func:`describe_errors`).
Reading and loading a sweep file is :mod:`orchestrator.sweep_file`'s, above this module:
loading never raises anything but :class:`ConfigError` for bad input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import (
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

import models
from orchestrator import plan
from orchestrator.config_fields import (
    EXPANDED,
    ConfigError,
    NoBoolean,
    Section,
    describe_errors,
    flatten,
)

__all__ = [
    "AldsConfig",
    "ConfigError",
    "DatasetConfig",
    "ExecutionConfig",
    "ImpConfig",
    "ModelConfig",
    "Objective",
    "ReportConfig",
    "SearchConfig",
    "SearchRange",
    "SequentialConfig",
    "SlurmConfig",
    "SweepConfig",
    "SyntheticConfig",
    "TrackingConfig",
    "TrainConfig",
    "flatten",
]


# --------------------------------------------------------------------------- sections

Probability = Annotated[float, NoBoolean, Field(gt=0.0, lt=1.0)]

# The largest values that mean something in a sweep, far above any real one (docs/config.md
# "Ranges"): a typo such as 2**70 is refused before it reaches a tensor size, a loop or sbatch.
MOST_EPOCHS = 10_000
MOST_ITERATIONS = 100_000_000
MOST_IMAGES = 100_000_000
MOST_BATCH = 1_048_576
MOST_SECONDS = 10_000_000  # about 115 days
MOST_WIDTH = 64.0
Iteration = Annotated[int, NoBoolean, Field(ge=1, le=MOST_ITERATIONS)]
Seed = Annotated[int, NoBoolean, Field(ge=0, le=2**32 - 1)]  # numpy's seeds
Split = Annotated[int, NoBoolean, Field(ge=1, le=4096)]


class ModelConfig(Section):
    """The network: a name ``models.build`` accepts and a width multiplier.

    ``model: conv6`` is ``model: {name: conv6, width: 1}``. At width 1 the section dumps as the
    plain name, so every hash and trial key of a config written before widths existed stays
    what it was; at any other width it dumps as the section, and the width is part of the
    dense checkpoint's and the trial's identity.
    """

    name: str = "conv6"
    width: float = Field(
        1.0,
        gt=0.0,
        le=MOST_WIDTH,
        description="multiplies every conv's channels (Conv-x, VGG, ResNet-20) or the hidden "
        "widths (LeNet-300-100)",
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value.startswith("torchvision:") or value in models.available():
            return value
        raise ValueError(
            f"unknown model '{value}'; available: {', '.join(models.available())}, "
            "or torchvision:<name>"
        )

    @model_validator(mode="after")
    def _scalable(self) -> ModelConfig:
        if self.width != 1 and not models.scalable(self.name):
            raise ValueError(f"model '{self.name}' takes no width; leave model.width at 1")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        if self.width == 1 and not (info.context or {}).get("expanded"):
            return self.name
        return handler(self)

    def __str__(self) -> str:
        return self.name if self.width == 1 else f"{self.name} (width {self.width:g})"


class SyntheticConfig(Section):
    """Shape of the deterministic synthetic classification task."""

    image_size: int = Field(16, ge=4, le=256)
    channels: int = Field(3, ge=1, le=16)
    num_classes: int = Field(10, ge=2, le=1000)
    train_size: int = Field(2048, ge=16, le=10_000_000)
    test_size: int = Field(512, ge=16, le=10_000_000)
    noise: float = Field(0.5, ge=0.0, le=100.0)


class DatasetConfig(Section):
    """Which data to train on and how much of it."""

    name: Literal["cifar10", "fashion-mnist", "mnist", "synthetic"] = "synthetic"
    root: str | None = None
    download: bool = False
    train_subset: int | None = Field(None, ge=1, le=MOST_IMAGES)
    test_subset: int | None = Field(None, ge=1, le=MOST_IMAGES)
    validation: int = Field(
        0, ge=0, le=MOST_IMAGES, description="training images held out for validation"
    )
    augment: bool = False
    synthetic: SyntheticConfig = SyntheticConfig()


class TrainConfig(Section):
    """Optimiser and schedule of one training run (dense training and each IMP cycle)."""

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(3.0e-4, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    batch_size: int = Field(60, ge=1, le=MOST_BATCH)
    epochs: float | None = Field(
        None, gt=0.0, le=MOST_EPOCHS, description="default 1 when iterations unset"
    )
    iterations: int | None = Field(None, ge=1, le=MOST_ITERATIONS)
    warmup_iterations: int = Field(0, ge=0, le=MOST_ITERATIONS)
    milestones: tuple[Iteration, ...] = Field((), description="iterations at which lr *= gamma")
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    eval_batch_size: int = Field(1000, ge=1, le=MOST_BATCH)
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on the CPU)")
    channels_last: bool = Field(True, description="channels-last memory format on CUDA")

    @model_validator(mode="before")
    @classmethod
    def _default_length(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("epochs") is None and data.get("iterations") is None:
            return {**data, "epochs": 1.0}
        return data

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        if self.epochs is not None and self.iterations is not None:
            raise ValueError("give either 'epochs' or 'iterations', not both")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError("'milestones' must be increasing")
        return self


class AldsConfig(Section):
    """ALDS low-rank compression applied to the dense-trained network."""

    rate: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of compressible weights removed")
    mode: Literal["project", "factorize"] = "project"
    error: Literal["bound", "reference", "exact"] = "exact"
    k_candidates: tuple[Split, ...] | None = Field(None, description="None: every divisor")
    finetune_epochs: float = Field(0.0, ge=0.0, le=MOST_EPOCHS)

    @field_validator("k_candidates")
    @classmethod
    def _some_k(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        # Each k's range is its type's (Split).
        if value is not None and not value:
            raise ValueError("k_candidates must be a non-empty list of positive integers")
        return value


_REWIND = re.compile(r"^(init|compressed|none|early:[0-9]+)$")


class ImpConfig(Section):
    """Iterative magnitude pruning after ALDS."""

    cycles: int = Field(5, ge=0, le=200)
    prune_fraction: Probability = 0.2
    until_remaining: Probability | None = Field(
        None,
        description="stop once at most this fraction of the original prunable weights remains; "
        "'cycles' is then the most cycles run",
    )
    scope: Literal["global", "layer"] = "global"
    rewind: str = "init"
    factorized_rewind: Literal["alds", "compressed", "reinit", "none", "theta0"] = Field(
        "alds",
        description="where an ALDS-factorized network (alds.mode factorize) rewinds: to its "
        "factors as ALDS made them (alds), after fine-tuning (compressed), Glorot-redrawn "
        "factors (reinit, a control), no rewind (none), or θ0 factorized by the plan (theta0: "
        "other coordinates than the trained factors; validate warns)",
    )
    epochs_per_cycle: float | None = Field(
        None, gt=0.0, le=MOST_EPOCHS, description="None: as train.epochs"
    )
    exclude: tuple[str, ...] = ()
    rates: dict[str, Probability] | None = Field(
        None, description="per-role rates per cycle, roles: conv, fc, output"
    )
    controls: tuple[plan.Control, ...] = Field(
        (),
        description="the lottery-ticket controls run for every IMP-only configuration at "
        "every seed, each a trial paired with it in the report's controls table: "
        "random_mask (a random mask with its per-layer sparsity at every cycle), reinit (its "
        "mask at every cycle, a fresh initialisation)",
    )

    @property
    def early_iteration(self) -> int | None:
        """The iteration of dense training ``rewind: early:N`` rewinds to; None otherwise."""
        return int(self.rewind.split(":", 1)[1]) if self.rewind.startswith("early:") else None

    @field_validator("rewind")
    @classmethod
    def _rewind(cls, value: str) -> str:
        if not _REWIND.match(value):
            raise ValueError("rewind must be one of init, early:N, compressed, none")
        return value

    @field_validator("controls")
    @classmethod
    def _once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("controls must not repeat")
        return value

    @model_validator(mode="after")
    def _controls_rewind(self) -> ImpConfig:
        # A control retrains each cycle's mask from the rewind point, as the lottery-ticket
        # controls do; "compressed" and "none" name no point a control could start from.
        if self.controls and not (self.rewind == "init" or self.early_iteration is not None):
            raise ValueError(
                f"controls need rewind init or early:N (a control trains each cycle's mask "
                f"from the rewind point), not {self.rewind!r}"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        document = handler(self)
        # Left out when empty: every hash of a config written before controls existed stays.
        if not self.controls and not (info.context or {}).get("expanded"):
            document.pop("controls", None)
        return document

    @field_validator("rates")
    @classmethod
    def _roles(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            unknown = set(value) - {"conv", "fc", "output"}
            if unknown:
                raise ValueError(f"unknown roles {sorted(unknown)}; roles are conv, fc, output")
        return value


class SearchRange(Section):
    """The values one searched field may take: a numeric range or a list of choices."""

    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0.0)
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _shape(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either 'choices' or 'low'/'high', not both")
            if not self.choices:
                raise ValueError("'choices' must not be empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both 'low' and 'high' (or 'choices')")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("a log range cannot have a step")
        return self

    @property
    def kind(self) -> str:
        """``choice``, ``range`` or ``range (log)``."""
        if self.choices is not None:
            return "choice"
        return "range (log)" if self.log else "range"

    def describe(self) -> str:
        """The values as text: ``0.0, 0.3`` or ``[0.0, 0.8], step 0.1``."""
        if self.choices is not None:
            return ", ".join(map(str, self.choices))
        step = f", step {self.step}" if self.step else ""
        return f"[{self.low}, {self.high}]{step}"

    def values(self) -> list[Any]:
        """The endpoints or choices, used to validate the range against the field."""
        if self.choices is not None:
            return list(self.choices)
        return [self.low, self.high]


class Objective(Section):
    """One objective of the study: a metric read at the end or at a target sparsity."""

    metric: Literal["accuracy", "val_accuracy", "loss", "params_nonzero", "sparsity"] = "accuracy"
    at: Literal["final", "best"] | float = Field(
        "final", description="'final', 'best', or a target sparsity in (0, 1)"
    )
    direction: Literal["maximize", "minimize"] = "maximize"

    @field_validator("at")
    @classmethod
    def _at(cls, value: str | float) -> str | float:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("a target sparsity must lie in (0, 1)")
        return value


class SearchConfig(Section):
    """How Optuna explores the space."""

    sampler: Literal["tpe", "random", "grid", "nsga2", "cmaes", "qmc"] = "tpe"
    sampler_seed: Seed | None = 0
    pruner: Literal["none", "median", "percentile", "hyperband", "successive_halving", "paired"] = (
        "none"
    )
    n_trials: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="total trials over all workers and seeds; default: the whole grid, or 10 "
        "configurations x seeds for the other samplers",
    )
    objective: tuple[Objective, ...] = Field(
        (Objective(),), description="one objective, or a list for a multi-objective study"
    )
    space: dict[str, SearchRange] = Field(default_factory=dict)
    enqueue: tuple[dict[str, Any], ...] = ()
    enqueue_baseline: bool = Field(
        True,
        description="enqueue the IMP-only twin (alds.rate = 0, the same IMP schedule and "
        "seed) of every ALDS configuration, sampled ones included",
    )

    @field_validator("objective", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, Mapping | Objective) else value

    @model_validator(mode="after")
    def _pruner_single_objective(self) -> SearchConfig:
        if len(self.objective) > 1 and self.pruner != "none":
            raise ValueError(
                f"pruner '{self.pruner}' cannot be used with {len(self.objective)} objectives: "
                "Optuna prunes single-objective studies only; set search.pruner: none"
            )
        if not self.objective:
            raise ValueError("objective must not be an empty list")
        return self


class SlurmConfig(Section):
    """How ``--launcher slurm`` submits the workers: one job array, a worker per task.

    Every field becomes a line of the batch script written into the sweep's workspace
    (docs/slurm.md).
    """

    workers: int = Field(2, ge=1, le=100_000, description="array tasks, each one worker")
    partition: str | None = Field(None, description="--partition; default: the cluster's")
    time: str | None = Field(None, description="--time per task, e.g. '4:00:00' or '2-00:00:00'")
    gpus_per_worker: int | None = Field(
        None,
        ge=0,
        le=64,
        description="--gres=gpu:N per task; 0: a CPU worker; default: 0 when execution.devices "
        "is cpu, else 1",
    )
    cpus_per_worker: int = Field(
        4, ge=1, le=1024, description="--cpus-per-task (and the worker's threads)"
    )
    memory: str | None = Field(None, description="--mem per task, e.g. '16G'")
    account: str | None = Field(None, description="--account")
    signal_seconds: int = Field(
        300,
        ge=0,
        le=65535,  # the most sbatch --signal takes
        description="USR1 this long before the time limit: the task stops, requeues",
    )
    setup: tuple[str, ...] = Field(
        (), description="shell lines run before the worker (module load, conda activate)"
    )
    extra: tuple[str, ...] = Field((), description="further #SBATCH options, e.g. '--qos=high'")

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        # Slurm's forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
        if value is None or re.fullmatch(r"(\d+-)?\d+(:\d{1,2}){0,2}", value):
            return value
        raise ValueError(
            f"time '{value}' is not a Slurm time limit (minutes, H:MM:SS or D-HH:MM:SS)"
        )

    @field_validator("partition", "account", "memory")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        if value is None or re.fullmatch(r"[A-Za-z0-9_.,:+-]+", value):
            return value
        raise ValueError(f"'{value}' is not a single word (letters, digits, _ . , : + -)")

    @field_validator("extra")
    @classmethod
    def _extra(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for option in value:
            if not option.startswith("-") or "\n" in option:
                raise ValueError(f"extra option '{option}' must be one '--name=value' option")
        return value


class ExecutionConfig(Section):
    """Where trials run and how failures are handled."""

    launcher: Literal["local", "slurm"] = Field(
        "local", description="local worker processes, or a Slurm job array (docs/slurm.md)"
    )

    devices: str = Field("auto", description="auto, cpu, or GPU indices like '0,1,3'")
    workers_per_device: int = Field(1, ge=1, le=64)
    max_retries: int = Field(2, ge=0, le=100, description="retries of a trial whose worker died")
    trial_timeout: float | None = Field(
        None, gt=0.0, le=MOST_SECONDS, description="seconds; a longer trial fails (and is retried)"
    )
    workspace: str | None = Field(None, description="default: .orchestrate/<name>")
    cache_dir: str | None = Field(
        None, description="shared checkpoint folder; default: checkpoints/ beside the workspace"
    )
    storage: str | None = Field(
        None,
        description="Optuna storage URL; default: in the workspace, SQLite (local launcher) "
        "or a journal file (slurm launcher)",
    )
    slurm: SlurmConfig = SlurmConfig()
    reuse: Literal["results_version", "any_version", "off"] = Field(
        "results_version",
        description="reuse a finished trial with the same key from any study of the storage: "
        "of this results version, of any version (an explicit opt-in: older code's numerics), "
        "or never (every trial of this sweep trains)",
    )

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: str) -> str:
        if value in ("auto", "cpu") or re.fullmatch(r"[0-9]+(,[0-9]+)*", value):
            return value
        raise ValueError("devices must be 'auto', 'cpu' or GPU indices like '0,1,3'")


class TrackingConfig(Section):
    """MLflow tracking; the URI falls back to MLFLOW_TRACKING_URI, then the workspace."""

    uri: str | None = None
    experiment: str | None = Field(None, description="default: the sweep's name")


PrimaryAuc = Literal["auc"]
PRIMARY_AUC: Final[PrimaryAuc] = "auc"


DEFAULT_POWER = 0.8  # the seed planner's chance of a verdict (report.planner)


class ReportConfig(Section):
    """How ``orchestrate report`` judges the sweep, declared before the data.

    Not part of any trial's identity nor of the study's: changing it changes what the report
    says of the results, never the results.
    """

    margin: float | None = Field(
        None,
        gt=0.0,
        le=100.0,
        description="equivalence margin in accuracy points: a TOST verdict for every paired "
        "difference (orchestrate report --margin overrides it)",
    )
    power: float = Field(
        DEFAULT_POWER,
        gt=0.0,
        lt=1.0,
        description="the seed planner's wanted chance that a verdict within the margin is "
        "reached (orchestrate report --power overrides it)",
    )
    primary: PrimaryAuc | Probability = Field(
        PRIMARY_AUC,
        description="the primary endpoint: auc (mean accuracy over the sparsity range every "
        "compared configuration reaches) or one sparsity (0.9: the paired accuracy difference "
        "there)",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        document = handler(self)
        # Left out at its default: every hash of a config written before it existed stays.
        if self.power == DEFAULT_POWER and not (info.context or {}).get("expanded"):
            document.pop("power", None)
        return document

    @property
    def level(self) -> float | None:
        """The sparsity the primary endpoint is read at; None for the AUC over the range."""
        return None if self.primary == PRIMARY_AUC else float(self.primary)


class SequentialConfig(Section):
    """A sweep that decides: seeds are added, a look at a time, only to the ALDS
    configurations still open against their twin (docs/config.md). Chooses which trials run,
    not what one computes: part of neither a trial's key nor the study's hash."""

    max_seeds: int = Field(ge=1, le=1000, description="the most seeds a configuration gets")
    step: int = Field(1, ge=1, le=100, description="seeds added per look")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="family-wise, over all looks")
    spending: Literal["linear", "pocock", "obrien-fleming"] = Field(
        "linear", description="the alpha spending function's type"
    )


class SweepConfig(Section):
    """A whole sweep, as read from its YAML file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    seeds: tuple[Seed, ...] = (0,)
    model: ModelConfig = ModelConfig()
    dataset: DatasetConfig = DatasetConfig()
    train: TrainConfig = TrainConfig()
    alds: AldsConfig = AldsConfig()
    imp: ImpConfig = ImpConfig()
    search: SearchConfig = SearchConfig()
    execution: ExecutionConfig = ExecutionConfig()
    tracking: TrackingConfig = TrackingConfig()
    report: ReportConfig = ReportConfig()
    sequential: SequentialConfig | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        document = handler(self)
        # An unset report section is left out, so every hash of a config written before the
        # section existed stays what it was; so is an unset sequential section.
        if self.report == ReportConfig() and not (info.context or {}).get("expanded"):
            document.pop("report", None)
        if self.sequential is None and not (info.context or {}).get("expanded"):
            document.pop("sequential", None)
        return document

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("seeds must list at least one seed")
        if len(set(value)) != len(value):
            raise ValueError("seeds must not repeat")
        return value

    def with_params(self, params: Mapping[str, Any]) -> SweepConfig:
        """This config with fields replaced by dotted path (``{"alds.rate": 0.5}``)."""
        data = self.model_dump(mode="python", context=EXPANDED)
        for path, value in params.items():
            node = data
            *parents, leaf = path.split(".")
            for key in parents:
                if not isinstance(node.get(key), dict):
                    raise ConfigError(f"'{path}' is not a field of the sweep config")
                node = node[key]
            if path == "model" and isinstance(value, str):
                node, leaf = node["model"], "name"  # a searched network keeps the width
            if leaf not in node or isinstance(node[leaf], dict):
                raise ConfigError(f"'{path}' is not a field of the sweep config")
            node[leaf] = value
        try:
            return SweepConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, "params", SweepConfig)) from None

    @model_validator(mode="after")
    def _space_paths(self) -> SweepConfig:
        searched = dict(self.search.space)
        for entry in self.search.enqueue:
            for path in entry:
                if path not in searched:
                    raise ValueError(f"search.enqueue names '{path}', which is not in search.space")
        return self

    @model_validator(mode="after")
    def _runnable_plan(self) -> SweepConfig:
        # else sweep_file's _check_space names the path
        if set(self.search.space) <= set(flatten(self, expanded=True)) | {"model"}:
            plan.check(self)
        return self

    def value_at(self, path: str) -> Any:
        """The value of the field at a dotted path (``alds.rate``)."""
        node: Any = self
        for key in path.split("."):
            node = getattr(node, key)
        return node
