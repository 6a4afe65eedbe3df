# syntax=docker/dockerfile:1
# The orchestrate tool for the compose stack (docker-compose.yml): workers, the one-shot CLI, and
# the MLflow server and optuna-dashboard, so every service runs the same library versions.
#
# PyTorch's Linux wheels from PyPI bundle the CUDA runtime and the NVIDIA Container Toolkit brings
# the driver, so a slim Python base is enough for the GPU workers.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# Pinned as scripts/setup.sh pins them: the versions the test suite runs on.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG OPTUNA_DASHBOARD_VERSION=0.21.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# torch alone in its own layer: gigabytes that a change to the project does not rebuild.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

WORKDIR /opt/orchestrate
COPY pyproject.toml README.md ./
COPY orchestrator/ orchestrator/
COPY compression/ compression/
COPY models/ models/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . "optuna-dashboard==${OPTUNA_DASHBOARD_VERSION}"

COPY --chmod=0755 docker/gpu-slot.sh docker/stack-orchestrate.sh /usr/local/bin/

# The folders the compose volumes mount, created here so that a new named volume starts out
# owned by the unprivileged user: the working directory's .orchestrate/ (workspaces and the
# checkpoint cache, checkpoints/ beside the workspaces), the datasets (ORCHESTRATE_DATA, which is
# also the default ~/.cache/orchestrate/data), MLflow's artifacts and accounts, and the GPU slot
# locks.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin orchestrate \
    && mkdir -p /workspace/.orchestrate /home/orchestrate/.cache/orchestrate/data \
        /srv/mlflow/artifacts /srv/mlflow/auth /srv/gpu-slots \
    && chown -R orchestrate:orchestrate /workspace /home/orchestrate/.cache /srv/mlflow \
        /srv/gpu-slots
COPY --chown=orchestrate:orchestrate sweeps/ /workspace/sweeps/

USER orchestrate
WORKDIR /workspace
ENV ORCHESTRATE_DATA=/home/orchestrate/.cache/orchestrate/data

ENTRYPOINT ["orchestrate"]
CMD ["--help"]
