#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh machine: Fashion-MNIST, a venv in .venv, the package.
# It prints one line per step. pip runs with -qq, which shows its errors but not its warnings:
# setuptools reports every editable build as a warning. A failing step ends the script with
# that step's exit status.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "installing Fashion-MNIST..."
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "creating .venv..."
    python3 -m venv .venv
fi
pip_install() { .venv/bin/python -m pip install -qq "$@"; }

echo "upgrading pip..."
pip_install --upgrade pip
# torch first and pinned: this release is served from the local disk; an unpinned resolve would
# pull a newer CUDA build from the registry.
echo "installing PyTorch..."
pip_install "torch==2.14.1" "torchvision==0.29.1"
echo "installing the package..."
pip_install -e ".[dev]"
.venv/bin/python -c "import torch, optuna, mlflow, orchestrator, compression, models"
echo "ready: .venv/bin/orchestrate"
