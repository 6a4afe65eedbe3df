#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh machine: Fashion-MNIST, a venv in .venv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
# torch first and pinned: this release is served from the local disk; an unpinned resolve would
# pull a newer CUDA build from the registry.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 \
    | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import torch, optuna, mlflow, orchestrator, compression, models"
