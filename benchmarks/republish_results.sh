#!/usr/bin/env bash
# Regenerates docs/results/ and times it (docs/results.md, Compute): each sweep under
# /usr/bin/time, one after the other; each comparison sweep's report and their primary
# endpoints as one family (docs/results/family); the collapse sweep's report; the tables
# docs/results.md quotes (benchmarks/results_tables.py); then what a lottery-ticket control
# costs against its IMP-only twin.
#   bash benchmarks/republish_results.sh              # after scripts/setup.sh; hours here
#   bash benchmarks/republish_results.sh --from-export
# With --from-export no sweep runs: every report is computed again from the steps.csv and
# trials.csv it published (a change of the statistics, the margin or the family; seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
compared=(fashion_mnist_alds_imp fashion_mnist_global fashion_mnist_rewind_control
  fashion_mnist_global_rewind_control fashion_mnist_conv fashion_mnist_conv_rewind_control)
export_flag=()
if [ "${1:-}" = --from-export ]; then
  export_flag=(--from-export)
else
  for sweep in "${compared[@]}" fashion_mnist_collapse; do
    /usr/bin/time -f "sweep $sweep: %e s" .venv/bin/orchestrate sweep "sweeps/$sweep.yaml" >/dev/null
  done
fi
yamls=()
for sweep in "${compared[@]}"; do yamls+=("sweeps/$sweep.yaml"); done
/usr/bin/time -f "reports and family: %e s" .venv/bin/orchestrate report "${yamls[@]}" \
  --output docs/results "${export_flag[@]}" >/dev/null
levels=0.5,0.8,0.9,0.95,0.98,0.99
for sweep in fashion_mnist_global fashion_mnist_global_rewind_control; do
  .venv/bin/orchestrate report "sweeps/$sweep.yaml" --output "docs/results/$sweep" \
    --sparsity-levels "$levels" --from-export >/dev/null
done
.venv/bin/orchestrate report sweeps/fashion_mnist_collapse.yaml \
  --output docs/results/fashion_mnist_collapse --sparsity-levels "$levels,0.995,0.999" \
  "${export_flag[@]}" >/dev/null
.venv/bin/python benchmarks/results_tables.py
echo "all: $(( $(date +%s) - start )) s"
.venv/bin/python - <<'PY'
import pandas as pd

trials = pd.read_csv("docs/results/fashion_mnist_alds_imp/trials.csv")
control = trials["imp.control"].notna()
twin = ~control & (trials["alds.rate"] == 0)
print(
    f"a control trial {trials.loc[control, 'duration_s'].mean():.0f} s, an IMP-only trial "
    f"{trials.loc[twin, 'duration_s'].mean():.0f} s; controls "
    f"{trials.loc[control, 'duration_s'].sum() / 60:.1f} of "
    f"{trials['duration_s'].sum() / 60:.1f} trial-minutes"
)
PY
