"""Every name this tool stores: Optuna study and trial attributes, MLflow run tags.

A key is written by one module and read by others (the worker writes ``TRIAL_RUN_ID``, the
report and the supervisor read it); naming it once here keeps them from drifting apart. The
strings are part of the stored format: changing one orphans what existing studies hold.
"""

# study user attributes

STUDY_CONFIG = "sweep_config"  # the sweep's validated config, as JSON
STUDY_CONFIG_HASH = "config_hash"
STUDY_TRACKING_URI = "mlflow_tracking_uri"
STUDY_EXPERIMENT_ID = "mlflow_experiment_id"
STUDY_PARENT_RUN_ID = "mlflow_parent_run_id"
STUDY_CONFIG_HISTORY = "config_history"  # the experiment hashes of the YAMLs it grew from
# The studies this one's earlier trials were moved to when its YAML changed a categorical
# space, which Optuna cannot change within a study (study.py); their results are reused.
STUDY_EARLIER = "earlier_generations"
# A sequential sweep's decisions, by configuration label (report.looks.records): a decision
# stays made when the design later grows (sequential.max_seeds).
STUDY_DECISIONS = "sequential_decisions"
# The finished trials the comparison logged to the parent run was drawn from: a start that
# finds the same count and nothing to run redraws nothing (execution.sweep).
STUDY_REPORTED_FINISHED = "reported_finished"
# What a study's new generation keeps of the old one: where its runs are, what it grew from.
STUDY_KEPT_BY_A_NEW_GENERATION = (
    STUDY_PARENT_RUN_ID,
    STUDY_TRACKING_URI,
    STUDY_EXPERIMENT_ID,
    STUDY_CONFIG_HISTORY,
    STUDY_DECISIONS,
)

# trial user attributes

TRIAL_SEED = "seed"
TRIAL_SLOT = "slot"  # a placeholder the sampler is still to fill
TRIAL_REPEAT_OF = "repeat_of"  # the sampled trial whose parameters this one repeats
TRIAL_REPEATS_ENQUEUED = "repeats_enqueued"
TRIAL_TWIN_OF = "twin_of"  # on an IMP-only twin enqueued for a sampled trial: that trial
TRIAL_RUN_ID = "mlflow_run_id"
TRIAL_WORKER = "worker"  # worker_label() of the worker running it
TRIAL_DEVICE = "device"
TRIAL_STEP = "step"  # the last compression step reported
TRIAL_FAIL_REASON = "fail_reason"
TRIAL_ARM = "arm"  # ARM_BASELINE or ARM_ALDS: the label optuna-dashboard shows
TRIAL_RUN_URL = "mlflow_run_url"  # a link to the trial's run, where MLflow is an HTTP server
TRIAL_TWIN_RUN_ID = "twin_run_id"  # an ALDS trial's or a control's IMP-only twin's run
TRIAL_TASK = "slurm_task"  # the launcher's task running it (a Slurm array task "<job>_<task>")
TRIAL_RUN_SECONDS = "run_seconds"  # the seconds its compression and training took, no overhead
# A trial's result identity (identity.py): set when a worker claims it, under the storage's
# creation lock, so a worker that needs the same key finds it running.
TRIAL_KEY = "trial_key"
TRIAL_DATA_DIGEST = "data_digest"  # the digest of the images and labels it trained on
TRIAL_DEVICE_CLASS = "device_class"  # cpu or cuda: results differ between them
TRIAL_RESULTS_VERSION = "results_version"
TRIAL_PACKAGE_VERSION = "package_version"
# What a result carries from the trial that computed it to every trial that reuses it.
TRIAL_RESULT_ATTRS = (
    TRIAL_KEY,
    TRIAL_DATA_DIGEST,
    TRIAL_DEVICE_CLASS,
    TRIAL_RESULTS_VERSION,
    TRIAL_PACKAGE_VERSION,
)
TRIAL_REUSED_FROM = "reused_from"  # on a trial copied from another's result: that one's run
TRIAL_REUSED_TRIAL = "reused_trial"  # ... and that trial, as "<study>#<number>"
# ... and the seconds that trial took to train: the copy's duration in the report (its own is
# the second or so the copy took)
TRIAL_TRAINED_SECONDS = "trained_seconds"

# trial system attributes

# Optuna's own names: its heartbeat retry and enqueue_trial write these, and ours must match.
TRIAL_FAILED_TRIAL = "failed_trial"  # on a retry: the number of the trial it repeats
TRIAL_RETRY_HISTORY = "retry_history"
TRIAL_FIXED_PARAMS = "fixed_params"  # the parameters a trial was enqueued with
# Ours: the last beat of a trial's worker (UNIX time) on storages without Optuna's heartbeat.
TRIAL_HEARTBEAT = "orchestrate:heartbeat"
# Ours: the steps an ended trial measured, one row per step (step, phase, cycle and every
# metric): a complete trial's whole curve, which another sweep reuses without reading MLflow
# (results.py); every ended trial's, which the report reads with the trials (report/sources.py).
TRIAL_CURVE = "orchestrate:curve"

# MLflow run tags

# A run created while the tracking server is unreachable has a provisional id with this prefix
# until the outbox sends it (a trial's TRIAL_RUN_ID may hold one meanwhile).
PENDING_RUN_ID = "pending-"
TAG_ROLE = "orchestrate.role"
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
TAG_SWEEP = "sweep"
TAG_CONFIG_HASH = "config_hash"
TAG_TRIAL_NUMBER = "trial_number"
TAG_SEED = "seed"
TAG_HOST = "host"
TAG_DEVICE = "device"
TAG_WORKER = "worker"
TAG_STATE = "state"
TAG_FAIL_REASON = "fail_reason"
TAG_RETRY_OF = "retry_of_trial"
TAG_RESUMED = "resumed"
TAG_DENSE_CHECKPOINT = "dense_checkpoint"
TAG_ARM = "arm"
ARM_BASELINE = "baseline"  # IMP only: alds.rate 0
ARM_ALDS = "alds"
ARM_CONTROL = "control"  # a lottery-ticket control of an IMP-only configuration (plan.CONTROLS)
TAG_CONFIG = "config"  # the configuration label its seeds share (the report's)
TAG_TWIN_RUN_ID = "twin_run_id"  # on an ALDS trial's or a control's run: its twin's (twins.py)
TAG_TRIAL_KEY = "trial_key"
TAG_REUSED_FROM = "reused_from"  # on a reused trial's run: the run whose result it copies
# On the runs of a study's earlier generation (moved out from under the parent when the study
# renews, their results copied into the new generation's runs): the archive study they ran in
TAG_GENERATION = "earlier_generation"
TAG_RESULTS_VERSION = "results_version"
TAG_PACKAGE_VERSION = "package_version"
# MLflow's own tags: the UI nests runs by the first and fills the Source column from the second.
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_NOTE = "mlflow.note.content"  # a run's or an experiment's description
# MLflow opens an experiment in its training views (not the GenAI ones) by this tag.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
# An experiment tag the runs page loads as its columns and charts (runs_view.py).
TAG_SHARED_VIEW_PREFIX = "mlflow.sharedViewState."

# MLflow metrics of a trial run, besides the measurements of procedure.Step


def layer_remaining(layer: str) -> str:
    """The metric of one layer's remaining fraction; MLflow's charts group ``remaining/*``."""
    return f"remaining/{layer}"


# MLflow params

PARAM_SEED = "seed"

# MLflow metrics of the sweep's parent run (counts of trials, the best value so far)

SWEEP_METRIC_PREFIX = "trials_"
SWEEP_METRIC_BEST = "best_value"

# MLflow dataset inputs

INPUT_CONTEXT_TRAIN = "train"
INPUT_TAG_CONTEXT = "mlflow.data.context"  # MLflow's own tag for what a dataset was used for

# MLflow artifacts

ARTIFACT_SWEEP_CONFIG = "sweep.json"  # of the sweep's parent run
ARTIFACT_REPORT_FOLDER = "report"  # of the parent run: what `orchestrate report` wrote, a
# folder per logged report under it
TAG_REPORT_LATEST = "report_latest"  # of the parent run: the folder of the last logged report
ARTIFACT_CURVE = "curve"  # of a trial run, as <name>.csv: one row per step
ARTIFACT_LAYERS = "layers"  # per-layer sparsity at the end
ARTIFACT_ALDS_PLAN = "alds_plan"  # per-layer k, rank and error of the ALDS plan
ARTIFACT_TRIAL_FIGURE = "accuracy_vs_sparsity.png"
ARTIFACT_FINAL_WEIGHTS = "final.pt"  # the final state dict and masks


def worker_label(host: str, pid: int) -> str:
    """The value of ``TRIAL_WORKER`` and ``TAG_WORKER``: which process runs a trial."""
    return f"{host}:{pid}"
