"""ALDS: time of one ``compress`` and the true error it leaves, per error measure, side by side.

For each network and rate, every error measure (``exact``, ``bound``, ``reference``) runs the
whole ``alds.compress`` (decompositions, search, factorized network) on the same random-init
weights; the best of ``--repeats`` runs is reported. The true relative operator-norm error of
every layer is then recomputed independently from the projected weights
(``matrix_norm(W − Ŵ, 2) / matrix_norm(W, 2)``), so the error columns do not trust the plan.

    .venv/bin/python benchmarks/bench_alds.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

import models
from compression import alds


def true_errors(model: torch.nn.Module, plan: alds.AldsPlan) -> list[float]:
    projected = alds.apply(model, plan, mode="project")
    errors = []
    for name, module in alds.compressible_layers(model):
        original = module.weight.detach().double().flatten(1)
        approximation = projected.get_submodule(name).weight.detach().double().flatten(1)
        residual = torch.linalg.matrix_norm(original - approximation, ord=2)
        errors.append(float(residual / torch.linalg.matrix_norm(original, ord=2)))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="conv6,resnet20")
    parser.add_argument("--rates", default="0.5,0.8")
    parser.add_argument("--measures", default=",".join(alds.ERROR_MEASURES))
    parser.add_argument("--mode", default="factorize", choices=alds.MODES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, mode {args.mode}")
    header = f"{'model':9} {'rate':>4} {'measure':9} {'seconds':>8} {'achieved':>8}"
    print(header + f" {'max true':>8} {'mean true':>9} {'max reported':>12}  vs reference")
    for name in args.models.split(","):
        model = models.build(name).eval()
        for rate in (float(value) for value in args.rates.split(",")):
            results = {}
            for measure in args.measures.split(","):
                seconds = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    _, plan = alds.compress(model, rate, mode=args.mode, error=measure)
                    seconds.append(time.perf_counter() - start)
                errors = true_errors(model, plan)
                results[measure] = (min(seconds), plan, max(errors), sum(errors) / len(errors))
            reference = results.get("reference")
            for measure, (best, plan, worst, mean) in results.items():
                ratio = f"{worst / reference[2]:.3f}x max" if reference else ""
                print(
                    f"{name:9} {rate:4.2f} {measure:9} {best:8.3f} {plan.achieved_rate:8.4f} "
                    f"{worst:8.4f} {mean:9.4f} {plan.max_error:12.4f}  {ratio}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
