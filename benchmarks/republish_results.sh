#!/usr/bin/env bash
# Regenerates docs/results/ for the three LeNet sweeps and times it (docs/results.md, Compute):
# each sweep and report under /usr/bin/time, one after the other, then what a lottery-ticket
# control costs against its IMP-only twin (mean duration_s in the layer-wise trials.csv).
#   bash benchmarks/republish_results.sh          # after scripts/setup.sh; about 70 min here
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
for sweep in fashion_mnist_global fashion_mnist_rewind_control fashion_mnist_alds_imp; do
  /usr/bin/time -f "sweep $sweep: %e s" .venv/bin/orchestrate sweep "sweeps/$sweep.yaml" >/dev/null
done
levels=(--sparsity-levels 0.5,0.8,0.9,0.95,0.98,0.99)
for sweep in fashion_mnist_alds_imp fashion_mnist_global fashion_mnist_rewind_control; do
  extra=()
  [ "$sweep" = fashion_mnist_global ] && extra=("${levels[@]}")
  /usr/bin/time -f "report $sweep: %e s" .venv/bin/orchestrate report "sweeps/$sweep.yaml" \
    --output "docs/results/$sweep" "${extra[@]}" >/dev/null
done
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
