#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): the device, the cuda tests, step time against a bare
# loop, sweep throughput with 1-8 workers on one GPU, the measured cost of alds_rate.yaml.
#   bash benchmarks/gpu_check.sh                        # on a GPU host, after scripts/setup.sh
#   bash benchmarks/gpu_check.sh --device cpu --quick   # dry run of the same code paths
# PYTHON chooses the interpreter (default: the checkout's .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" benchmarks/gpu_check.py "$@"
