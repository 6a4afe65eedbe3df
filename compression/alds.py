"""ALDS: layer-wise low-rank compression with a global choice of split k and rank per layer.

A layer's weight is folded into an ``f x (c·κ1·κ2)`` matrix whose input channels are cut into
``k`` consecutive groups; each group keeps its best rank-``j`` approximation. :func:`allocate`
chooses ``(k, j)`` for every ungrouped ``Conv2d``/``Linear`` so that the network keeps a given
fraction of those layers' weights with the smallest achievable largest per-layer error;
:func:`apply` realises the plan, either in place of the original weights (``project``) or as
an encoder/decoder pair (``factorize``).
See ``docs/alds.md``.
"""

from __future__ import annotations

import copy
import heapq
import math
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, TypedDict

import torch
from torch import nn

from compression.factorized import FactorizedConv2d, FactorizedLinear
from compression.metrics import count_layer_flops, count_parameters

__all__ = [
    "ERROR_MEASURES",
    "MODES",
    "AldsPlan",
    "Allocator",
    "LayerPlan",
    "allocate",
    "apply",
    "compress",
    "compressible_layers",
]

ErrorMeasure = Literal["bound", "reference", "exact"]
Mode = Literal["project", "factorize"]
ERROR_MEASURES: tuple[str, ...] = ("bound", "reference", "exact")
MODES: tuple[str, ...] = ("project", "factorize")


# --------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class LayerPlan:
    """The decision for one layer; ``rank is None`` keeps it dense."""

    name: str
    kind: str  # "Conv2d" | "Linear"
    shape: tuple[int, ...]
    k: int
    rank: int | None
    error: float  # under the plan's error measure
    exact_error: float  # ‖W − Ŵ‖₂ / ‖W‖₂ of this decision
    params_before: int  # weights only
    params_after: int
    flops_before: int | None = None
    flops_after: int | None = None

    @property
    def decomposed(self) -> bool:
        return self.rank is not None


@dataclass(frozen=True)
class AldsPlan:
    """Per-layer choices of split ``k`` and rank, with the totals they imply.

    Rates are fractions removed: ``achieved_rate`` over the compressible layers' weights (what
    the target ``rate`` constrains), ``total_rate`` over all parameters, biases and BatchNorm
    included. Sizes and FLOPs are those of the factorized network; ``project`` mode keeps the
    dense shapes but has the same rank budget. FLOPs are ``None`` unless an input shape was given.
    """

    rate: float
    error: str
    layers: tuple[LayerPlan, ...]
    total_params_before: int
    flops_before: int | None = None
    _by_name: dict[str, LayerPlan] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {layer.name: layer for layer in self.layers})

    def __getitem__(self, name: str) -> LayerPlan:
        return self._by_name[name]

    def _per_layer(self, attribute: str) -> list:
        return [getattr(layer, attribute) for layer in self.layers]

    @property
    def compressible_before(self) -> int:
        return sum(layer.params_before for layer in self.layers)

    @property
    def compressible_after(self) -> int:
        return sum(layer.params_after for layer in self.layers)

    @property
    def achieved_rate(self) -> float:
        return 1.0 - self.compressible_after / self.compressible_before

    @property
    def total_params_after(self) -> int:
        return self.total_params_before - self.compressible_before + self.compressible_after

    @property
    def total_rate(self) -> float:
        return 1.0 - self.total_params_after / self.total_params_before

    @property
    def flops_after(self) -> int | None:
        if self.flops_before is None:
            return None
        saved = 0
        for layer in self.layers:
            if layer.flops_before is None or layer.flops_after is None:
                raise ValueError(f"layer {layer.name!r} has no FLOPs, though its plan has")
            saved += layer.flops_before - layer.flops_after
        return self.flops_before - saved

    @property
    def max_error(self) -> float:
        return max(self._per_layer("error"))

    @property
    def max_exact_error(self) -> float:
        return max(self._per_layer("exact_error"))

    def summary(self) -> dict:
        """The totals as a flat dict (for logging as metrics or params)."""
        decomposed = [layer for layer in self.layers if layer.decomposed]
        exact = self._per_layer("exact_error")
        return {
            "rate": self.rate,
            "error_measure": self.error,
            "achieved_rate": self.achieved_rate,
            "total_rate": self.total_rate,
            "compressible_before": self.compressible_before,
            "compressible_after": self.compressible_after,
            "params_before": self.total_params_before,
            "params_after": self.total_params_after,
            "flops_before": self.flops_before,
            "flops_after": self.flops_after,
            "layers": len(self.layers),
            "layers_decomposed": len(decomposed),
            "max_error": self.max_error,
            "max_exact_error": max(exact),
            "mean_exact_error": sum(exact) / len(exact),
        }

    def to_rows(self) -> list[dict]:
        """One JSON-friendly dict per layer, in network order (ready for a DataFrame)."""
        rows = []
        for layer in self.layers:
            row = asdict(layer)
            row["shape"] = "x".join(str(size) for size in layer.shape)
            row["decomposed"] = layer.decomposed
            rows.append(row)
        return rows

    def to_dict(self) -> dict:
        """JSON-friendly form; :meth:`from_dict` rebuilds the plan (to re-apply it on load)."""
        return {
            "rate": self.rate,
            "error": self.error,
            "total_params_before": self.total_params_before,
            "flops_before": self.flops_before,
            "layers": [{**asdict(layer), "shape": list(layer.shape)} for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict) -> AldsPlan:
        layers = tuple(
            LayerPlan(**{**layer, "shape": tuple(layer["shape"])}) for layer in data["layers"]
        )
        return cls(
            rate=data["rate"],
            error=data["error"],
            layers=layers,
            total_params_before=data["total_params_before"],
            flops_before=data.get("flops_before"),
        )


# --------------------------------------------------------------------------- layers and folding


def compressible_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """The ungrouped ``nn.Conv2d`` and the ``nn.Linear`` layers ALDS may decompose, in order.

    Grouped/depthwise convs are left alone, and so are the projections inside
    ``nn.MultiheadAttention``, whose weights it reads directly instead of calling them.
    """
    attention = {
        id(child)
        for module in model.modules()
        if isinstance(module, nn.MultiheadAttention)
        for child in module.modules()
    }
    layers = []
    for name, module in model.named_modules():
        if id(module) in attention:
            continue
        if (isinstance(module, nn.Conv2d) and module.groups == 1) or isinstance(module, nn.Linear):
            layers.append((name, module))
    return layers


def _fold(weight: torch.Tensor, k: int) -> torch.Tensor:
    """``(f, c, ...)`` weight → ``(k, f, c/k·κ1·κ2)``: the k column blocks of the folded matrix."""
    f = weight.shape[0]
    return weight.reshape(f, k, -1).transpose(0, 1)


def _unfold(groups: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    return groups.transpose(0, 1).reshape(shape)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ---------------------------------------------------------------------------- error of a rank


class _Curve:
    """Errors and sizes of every rank of one layer cut into ``k`` groups.

    Ranks are positions ``1..max_rank``, the largest whose factors are smaller than the dense
    weight; position ``max_rank + 1`` is the dense fallback (error 0). The ``reference`` and
    ``bound`` errors of all ranks come from one batched eigen-decomposition of the groups' Gram
    matrices (:func:`_group_spectrum`). The ``exact`` error is computed only for the ranks a
    search asks about, bracketed by ``max_g σ_{j+1}(W_g) ≤ ‖W − Ŵ‖₂ ≤ (Σ_g σ_{j+1}(W_g)²)^½``
    (both relative to ‖W‖₂) and cached.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        k: int,
        measure: str,
        norm: float,
        outer: Callable[[], torch.Tensor],
        sigma: torch.Tensor | None = None,
    ) -> None:
        self.weight = weight
        self.k = k
        self.norm = norm if norm > 0 else 1.0  # an all-zero weight has zero errors anyway
        f = weight.shape[0]
        columns = weight[0].numel()
        self.dense = f * columns
        self.step = k * f + columns  # parameters per unit of rank
        self._outer = outer  # W·Wᵀ in float64, shared by the layer's splits
        self._basis: torch.Tensor | None = None
        if sigma is None:
            exact = measure == "exact" and k > 1
            sigma, self._basis = _group_spectrum(weight, k, vectors=exact)
        self.p = sigma.shape[1]
        self.max_rank = _max_rank(f, columns, k)
        # Index j holds σ_{j+1} of every group, the first one rank j drops (sigma[:, j]; it
        # exists since max_rank < p); index 0 is unused.
        dropped = torch.cat([sigma.new_zeros(k, 1), sigma[:, 1 : self.max_rank + 1]], dim=1)
        largest = (dropped.amax(0) / self.norm).tolist()
        largest[0] = math.inf
        self._lower = largest
        self._upper = (dropped.square().sum(0).sqrt() / self.norm).tolist()
        self._upper[0] = math.inf
        if measure == "reference":
            self._values: list[float] | None = largest
        elif measure == "bound":
            self._values = [math.sqrt(k) * value for value in largest]
        elif k == 1:
            self._values = largest  # Eckart–Young: the first dropped singular value, exactly
        else:
            self._values = None
        self._known: list[int] = []  # evaluated exact positions, ascending
        self._known_values: list[float] = []
        self.evaluations = 0

    # error(position) is non-increasing in position for every measure.
    def error(self, position: int) -> float:
        if position > self.max_rank:
            return 0.0
        if self._values is not None:
            return self._values[position]
        return self._exact(position)

    def exact_error(self, position: int) -> float:
        if position > self.max_rank:
            return 0.0
        if self.k == 1:
            return self._lower[position]
        return self._exact(position)

    def ceiling(self) -> float:
        """An upper bound on the error of rank 1 that costs no exact evaluation."""
        if self.max_rank == 0:
            return 0.0
        return (self._values or self._upper)[1]

    def size(self, position: int) -> int:
        return self.dense if position > self.max_rank else position * self.step

    def bracket(self, eps: float) -> tuple[int, int]:
        """Bounds ``(low, high)`` on :meth:`rank_for` that cost no new exact evaluation."""
        dense = self.max_rank + 1
        if self._values is not None:
            position = _first_at_most(self._values, eps, 1, dense)
            return position, position
        low = _first_at_most(self._lower, eps, 1, dense)
        high = _first_at_most(self._upper, eps, low, dense)
        if self._known:
            # Cached exact values are monotone too: they narrow the bracket for free.
            i = _first_at_most(self._known_values, eps, 0, len(self._known))
            if i < len(self._known):
                high = min(high, self._known[i])
            if i > 0:
                low = max(low, self._known[i - 1] + 1)
        return low, high

    def refine(self, eps: float, low: int, high: int) -> tuple[int, int]:
        """One bisection step on a bracket of :meth:`rank_for` (one exact evaluation)."""
        mid = (low + high) // 2
        return (low, mid) if self._exact(mid) <= eps else (mid + 1, high)

    def rank_for(self, eps: float) -> int:
        """The smallest position whose error is at most ``eps``."""
        low, high = self.bracket(eps)
        while low < high:
            low, high = self.refine(eps, low, high)
        return low

    def _exact(self, position: int) -> float:
        index = bisect_left(self._known, position)
        if index < len(self._known) and self._known[index] == position:
            return self._known_values[index]
        value = self._residual_norm(position) / self.norm
        # Rounding must not break the bounds and the monotone order the searches rely on.
        value = min(max(value, self._lower[position]), self._upper[position])
        if index > 0:
            value = min(value, self._known_values[index - 1])
        if index < len(self._known):
            value = max(value, self._known_values[index])
        insort(self._known, position)
        self._known_values.insert(index, value)
        self.evaluations += 1
        return value

    def _residual_norm(self, rank: int) -> float:
        # W − Ŵ = [U_g,>j S_g,>j V_g,>jᵀ]_g and the V blocks are orthonormal with disjoint
        # supports, so ‖W − Ŵ‖₂ = ‖[U_g,>j S_g,>j]_g‖₂: the largest eigenvalue of a Gram matrix
        # of size min(f, k·(p − j)).
        f = self.weight.shape[0]
        if (self.p - rank) * self.k < f:
            blocks = self._scaled_columns(rank, self.p)
            gram = blocks.mT @ blocks
        elif 2 * rank < self.p - rank:
            # Few kept columns: subtract them from W·Wᵀ instead of summing the long tail, in
            # float64 because the difference is small next to ‖W‖².
            kept = self._scaled_columns(0, rank).double()
            gram = (self._outer() - kept @ kept.mT).float()
        else:
            blocks = self._scaled_columns(rank, self.p)
            gram = blocks @ blocks.mT
        return math.sqrt(max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0))

    def _scaled_columns(self, start: int, stop: int) -> torch.Tensor:
        """``U_g,i σ_g,i`` for ``start <= i < stop`` and every group g, as ``(f, ·)`` columns."""
        if self._basis is None:  # a bound-driven search asking for a true error
            self._basis = _group_spectrum(self.weight, self.k, vectors=True)[1]
        assert self._basis is not None
        f = self.weight.shape[0]
        if f * self.k <= self.weight[0].numel():  # wide groups: the basis holds U·S
            return self._basis[:, start:stop].reshape(f, -1)  # a view
        groups = _fold(self.weight.detach().float(), self.k)
        return (groups @ self._basis[:, :, start:stop]).transpose(0, 1).reshape(f, -1)  # W·V


def _outer_product(weight: torch.Tensor) -> torch.Tensor:
    """``W·Wᵀ`` of the folded weight, float64 ``(f, f)``."""
    folded = weight.detach().double().reshape(weight.shape[0], -1)
    return folded @ folded.mT


def _group_spectrum(
    weight: torch.Tensor, k: int, vectors: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Singular values ``(k, p)`` of the k groups, descending, and optionally their vectors.

    One batched eigen-decomposition of the groups' Gram matrices on their smaller side (float32:
    an error e = σ/‖W‖ comes out within about 3e-8/e relative). The vectors are what is smaller
    to keep: for wide groups (f ≤ c/k·κ1·κ2) ``U_g S_g`` as ``(f, p, k)``, the layout whose rank
    ranges are views; for tall ones ``V_g`` as ``(k, m, m)``, since ``U_g S_g = W_g V_g``.
    """
    groups = _fold(weight.detach().float(), k)
    f, width = groups.shape[1:]
    wide = f <= width
    gram = groups @ groups.mT if wide else groups.mT @ groups
    if not vectors:
        return torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0).sqrt(), None
    values, basis = torch.linalg.eigh(gram)
    sigma = values.flip(-1).clamp_min(0).sqrt()
    basis = basis.flip(-1)
    if not wide:
        return sigma, basis.contiguous()
    return sigma, (basis * sigma[:, None, :]).permute(1, 2, 0).contiguous()


def _max_rank(f: int, columns: int, k: int) -> int:
    """The largest rank whose factors ``rank·(k·f + columns)`` are smaller than ``f·columns``."""
    return min(f, columns // k, (f * columns - 1) // (k * f + columns))


def _first_at_most(values: list[float], eps: float, low: int, high: int) -> int:
    """First index in ``[low, high)`` of a non-increasing list whose value is ``<= eps``."""
    while low < high:
        mid = (low + high) // 2
        if values[mid] <= eps:
            high = mid
        else:
            low = mid + 1
    return low


# ------------------------------------------------------------------------------ the allocation


class _Layer:
    """One compressible layer: a snapshot of its weight and its curves, built on demand."""

    def __init__(
        self, name: str, module: nn.Conv2d | nn.Linear, candidates: list[int], measure: str
    ) -> None:
        self.name = name
        self.measure = measure
        self.kind = "Conv2d" if isinstance(module, nn.Conv2d) else "Linear"
        self.weight = module.weight.detach().clone()
        self.candidates = candidates
        self.dense = self.weight.numel()
        self._curves: dict[int, _Curve] = {}
        self._whole: torch.Tensor | None = None  # singular values of the unsplit matrix
        self._outer: torch.Tensor | None = None

    @property
    def norm(self) -> float:
        if self._whole is None:
            self._whole = _group_spectrum(self.weight, 1, vectors=False)[0]
        return float(self._whole[0, 0])

    def outer(self) -> torch.Tensor:
        if self._outer is None:
            self._outer = _outer_product(self.weight)
        return self._outer

    def curve(self, k: int) -> _Curve:
        if k not in self._curves:
            sigma = self._whole if k == 1 else None  # k = 1 is exact by Eckart–Young
            self._curves[k] = _Curve(self.weight, k, self.measure, self.norm, self.outer, sigma)
        return self._curves[k]

    def smallest(self) -> int:
        """The fewest parameters this layer can keep (rank 1 of the cheapest split, or dense)."""
        f, columns = self.weight.shape[0], self.weight[0].numel()
        return min(
            k * f + columns if _max_rank(f, columns, k) >= 1 else self.dense
            for k in self.candidates
        )


def _sizes(curves: list[_Curve], positions: list[int]) -> int:
    return sum(curve.size(position) for curve, position in zip(curves, positions, strict=True))


def _smallest_at(options: dict[int, _Curve], brackets: dict[int, tuple[int, int]]) -> tuple:
    """Bounds on a layer's fewest parameters over its splits, from their rank brackets."""
    low = min(options[k].size(first) for k, (first, _) in brackets.items())
    high = min(options[k].size(last) for k, (_, last) in brackets.items())
    return low, high


def _fits(layers: list[dict[int, _Curve]], eps: float, budget: int) -> bool:
    """Whether some split and rank per layer, every error at most ``eps``, fits ``budget``.

    For a given ε the layers are independent: each takes the split that meets ε with the
    fewest parameters. Those sizes are only known within bounds (the rank brackets); the layer
    with the widest bounds halves the bracket of its most promising split until the bounds on
    the total decide, so exact errors are computed only where the answer depends on them.
    """
    brackets = [{k: curve.bracket(eps) for k, curve in options.items()} for options in layers]
    bounds = [_smallest_at(o, b) for o, b in zip(layers, brackets, strict=True)]
    low = sum(bound[0] for bound in bounds)
    high = sum(bound[1] for bound in bounds)
    widest = [(a - b, index) for index, (a, b) in enumerate(bounds) if a < b]
    heapq.heapify(widest)
    while low <= budget < high:
        _, index = heapq.heappop(widest)
        options, bracket = layers[index], brackets[index]
        # The split with the smallest lower end is open whenever the layer is.
        k = min(bracket, key=lambda k: (options[k].size(bracket[k][0]), k))
        bracket[k] = options[k].refine(eps, *bracket[k])
        new = _smallest_at(options, bracket)
        low += new[0] - bounds[index][0]
        high += new[1] - bounds[index][1]
        bounds[index] = new
        if new[0] < new[1]:
            heapq.heappush(widest, (new[0] - new[1], index))
    return high <= budget


def _threshold(layers: list[dict[int, _Curve]], budget: int) -> float:
    """The smallest ε for which :func:`_fits` holds: the lowest achievable largest error.

    The fewest parameters meeting ε is non-increasing in ε, so bisection finds it; a relative
    width of 1e-12 isolates the optimal error value. The caller checked that rank 1 fits.
    """
    high = max(curve.ceiling() for options in layers for curve in options.values())
    low = 0.0
    if _fits(layers, low, budget):
        return low
    while high - low > 1e-12 * high:
        mid = 0.5 * (low + high)
        if _fits(layers, mid, budget):
            high = mid
        else:
            low = mid
    return high


def _cheapest_split(options: dict[int, _Curve], eps: float) -> int:
    """The split meeting ``eps`` with the fewest parameters (ties: the smaller k).

    Best first: always halve the bracket of the split with the smallest lower bound on its
    size, so a split that cannot win is never resolved.
    """
    queue = []
    for k, curve in options.items():
        first, last = curve.bracket(eps)
        queue.append((curve.size(first), k, first, last))
    heapq.heapify(queue)
    while True:
        _, k, first, last = heapq.heappop(queue)
        if first == last:
            return k
        first, last = options[k].refine(eps, first, last)
        heapq.heappush(queue, (options[k].size(first), k, first, last))


def _fill(curves: list[_Curve], positions: list[int], budget: int) -> list[int]:
    """Spend what the threshold left of the budget on the layers with the largest errors."""
    positions = list(positions)
    slack = budget - _sizes(curves, positions)
    while True:
        chosen = None
        for index, (curve, position) in enumerate(zip(curves, positions, strict=True)):
            if position > curve.max_rank:
                continue
            cost = curve.size(position + 1) - curve.size(position)
            if cost <= slack:
                error = curve.error(position)
                if chosen is None or error > chosen[0]:
                    chosen = (error, index, cost)
        if chosen is None:
            return positions
        _, index, cost = chosen
        positions[index] += 1
        slack -= cost


class Allocator:
    """The spectra of one model's compressible layers, reused by every :meth:`plan`.

    Building it snapshots the weights; each ``plan(rate)`` then only searches, so a sweep over
    rates pays for the decompositions once. ``error`` is the measure the search minimises:
    ``"exact"`` = ‖W − Ŵ‖₂/‖W‖₂, ``"bound"`` = the paper's √k·max_g σ_{j+1}(W_g)/‖W‖₂,
    ``"reference"`` = torchprune's (the same without √k). ``k_candidates`` restricts the splits
    (a layer none of them divides uses k = 1). ``input_shape`` ``(C, H, W)`` adds FLOPs to plans.
    For ``exact`` it keeps each split's singular vectors, about one weight's worth of memory per
    split, on the weights' device.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        error: ErrorMeasure = "exact",
        k_candidates: Sequence[int] | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if error not in ERROR_MEASURES:
            raise ValueError(f"unknown error measure {error!r}; choose one of {ERROR_MEASURES}")
        if k_candidates is not None and (
            len(k_candidates) == 0 or any(int(k) != k or k < 1 for k in k_candidates)
        ):
            raise ValueError(f"k_candidates must be positive integers, got {k_candidates!r}")
        found = compressible_layers(model)
        if not found:
            raise ValueError(
                "the model has no compressible layer (an ungrouped nn.Conv2d or an nn.Linear)"
            )
        self.error = error
        self.layers = []
        for name, module in found:
            divisors = _divisors(module.weight.shape[1])
            allowed = [k for k in divisors if k_candidates is None or k in k_candidates]
            self.layers.append(_Layer(name, module, allowed or [1], error))
        self.total_params = count_parameters(model)
        self.layer_flops = (
            count_layer_flops(model, input_shape) if input_shape is not None else None
        )

    def plan(self, rate: float) -> AldsPlan:
        """Splits and ranks that remove at least ``rate`` of the compressible weights.

        The largest per-layer error is the smallest any choice of splits and ranks achieves
        (see :func:`_fits`); the achieved rate is at least ``rate`` and, where rank
        granularity allows, within 0.005 of it. ``rate = 0`` keeps every layer dense.
        """
        if isinstance(rate, bool) or not (isinstance(rate, int | float) and 0.0 <= rate < 1.0):
            raise ValueError(f"rate must be in [0, 1), got {rate!r}")
        layers = self.layers
        total_dense = sum(layer.dense for layer in layers)
        budget = math.floor((1.0 - rate) * total_dense)
        chosen: list[tuple[int, int | None, float, float]] = [(1, None, 0.0, 0.0)] * len(layers)
        if rate > 0.0:
            smallest = sum(layer.smallest() for layer in layers)
            if smallest > budget:
                raise ValueError(
                    f"rate {rate} cannot be reached: the smallest reachable size is "
                    f"{smallest:,} of {total_dense:,} compressible weights (largest rate "
                    f"{1 - smallest / total_dense:.4f})"
                )
            chosen = self._search(budget)
        return self._plan(rate, chosen)

    def _search(self, budget: int) -> list[tuple[int, int | None, float, float]]:
        layers = [{k: layer.curve(k) for k in layer.candidates} for layer in self.layers]
        eps = _threshold(layers, budget)
        curves = [options[_cheapest_split(options, eps)] for options in layers]
        positions = _fill(curves, [curve.rank_for(eps) for curve in curves], budget)
        chosen: list[tuple[int, int | None, float, float]] = []
        for curve, position in zip(curves, positions, strict=True):
            if position > curve.max_rank:
                chosen.append((1, None, 0.0, 0.0))
            else:
                exact = curve.exact_error(position)
                chosen.append((curve.k, position, curve.error(position), exact))
        return chosen

    def _plan(self, rate: float, chosen: list[tuple[int, int | None, float, float]]) -> AldsPlan:
        plans = []
        for layer, (k, rank, layer_error, exact) in zip(self.layers, chosen, strict=True):
            f, columns = layer.weight.shape[0], layer.weight[0].numel()
            after = layer.dense if rank is None else rank * (k * f + columns)
            flops_before = flops_after = None
            if self.layer_flops is not None:
                flops_before = self.layer_flops[layer.name]
                flops_after = flops_before // layer.dense * after  # one MAC per weight and pixel
            plans.append(
                LayerPlan(
                    name=layer.name,
                    kind=layer.kind,
                    shape=tuple(layer.weight.shape),
                    k=k,
                    rank=rank,
                    error=float(layer_error),
                    exact_error=float(exact),
                    params_before=layer.dense,
                    params_after=after,
                    flops_before=flops_before,
                    flops_after=flops_after,
                )
            )
        return AldsPlan(
            rate=float(rate),
            error=self.error,
            layers=tuple(plans),
            total_params_before=self.total_params,
            flops_before=None if self.layer_flops is None else sum(self.layer_flops.values()),
        )


def allocate(
    model: nn.Module,
    rate: float,
    *,
    error: ErrorMeasure = "exact",
    seed: int = 0,
    k_candidates: Sequence[int] | None = None,
    input_shape: Sequence[int] | None = None,
) -> AldsPlan:
    """Choose a split ``k`` and a rank per compressible layer to remove ``rate`` of their weights.

    A one-shot :class:`Allocator` (see it for ``error``, ``k_candidates``, ``input_shape``) and
    :meth:`Allocator.plan`; the model is not modified. The search is exact and deterministic,
    so ``seed`` (kept in the signature for the API's callers) does not change the plan.
    """
    del seed
    allocator = Allocator(model, error=error, k_candidates=k_candidates, input_shape=input_shape)
    return allocator.plan(rate)


# --------------------------------------------------------------------------------- applying it


def _factors(weight: torch.Tensor, k: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced rank-``rank`` factors of each group: √S·Vᵀ ``(k, j, m)``, U·√S ``(k, f, j)``."""
    groups = _fold(weight.detach().double(), k)
    f, width = groups.shape[1:]
    if not 1 <= rank <= min(f, width):
        raise ValueError(f"rank {rank} is outside 1..{min(f, width)} for k = {k}")
    # LAPACK is markedly faster on tall matrices: decompose the transpose of wide ones.
    if f < width:
        v, s, uh = torch.linalg.svd(groups.mT, full_matrices=False)
        u, vh = uh.mT, v.mT
    else:
        u, s, vh = torch.linalg.svd(groups, full_matrices=False)
    root = s[:, :rank].sqrt()
    return root[:, :, None] * vh[:, :rank], u[:, :, :rank] * root[:, None, :]


def _check(module: nn.Module, layer: LayerPlan) -> nn.Conv2d | nn.Linear:
    """``module`` as the layer ``layer`` plans for; a ``ValueError`` when it is not that."""
    expected: type[nn.Conv2d] | type[nn.Linear] = nn.Conv2d if layer.kind == "Conv2d" else nn.Linear
    if not isinstance(module, expected) or tuple(module.weight.shape) != layer.shape:
        weight = getattr(module, "weight", None)
        shown = f" with weight {tuple(weight.shape)}" if isinstance(weight, torch.Tensor) else ""
        raise ValueError(
            f"layer {layer.name!r} does not match the plan: expected {layer.kind} with weight "
            f"{layer.shape}, found {type(module).__name__}{shown}"
        )
    if isinstance(module, nn.Conv2d) and module.groups != 1:
        raise ValueError(f"layer {layer.name!r} is a grouped conv; ALDS decomposes ungrouped ones")
    if layer.shape[1] % layer.k:
        raise ValueError(f"layer {layer.name!r}: k = {layer.k} does not divide {layer.shape[1]}")
    return module


class _Placement(TypedDict):
    """Where a new module's parameters live: those of the module it replaces."""

    device: torch.device
    dtype: torch.dtype


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's size (torch types it as a tuple of any length, as every conv's) as its pair."""
    first, second = values
    return first, second


def _factorized(module: nn.Conv2d | nn.Linear, k: int, rank: int) -> nn.Module:
    weight = module.weight
    encoder_weight, decoder_weight = _factors(weight, k, rank)
    f, c = weight.shape[:2]
    options = _Placement(device=weight.device, dtype=weight.dtype)
    decoder: nn.Conv2d | nn.Linear
    if isinstance(module, nn.Conv2d):
        encoder = nn.Conv2d(
            c,
            k * rank,
            _pair(module.kernel_size),
            _pair(module.stride),
            module.padding if isinstance(module.padding, str) else _pair(module.padding),
            _pair(module.dilation),
            groups=k,
            bias=False,
            padding_mode=module.padding_mode,
            **options,
        )
        decoder = nn.Conv2d(k * rank, f, 1, bias=module.bias is not None, **options)
        result: nn.Module = FactorizedConv2d(encoder, decoder)
    else:
        encoder = nn.Conv2d(c, k * rank, 1, groups=k, bias=False, **options)
        decoder = nn.Linear(k * rank, f, bias=module.bias is not None, **options)
        result = FactorizedLinear(encoder, decoder)
    with torch.no_grad():
        encoder.weight.copy_(encoder_weight.reshape(encoder.weight.shape))
        # Decoder input channel g·j + i is group g's i-th component, as the encoder emits them.
        decoder.weight.copy_(decoder_weight.transpose(0, 1).reshape(decoder.weight.shape))
        if module.bias is not None and decoder.bias is not None:  # the decoder has one then
            decoder.bias.copy_(module.bias)
    result.train(module.training)
    return result


def apply(model: nn.Module, plan: AldsPlan, mode: Mode = "project") -> nn.Module:
    """A copy of ``model`` with ``plan`` realised; ``model`` itself is left unchanged.

    ``project`` writes each decomposed layer's rank-j reconstruction into its weight (shapes
    unchanged); ``factorize`` replaces the layer with a
    :class:`~compression.factorized.FactorizedConv2d` or
    :class:`~compression.factorized.FactorizedLinear` under the same attribute name. The
    factors come from the model's current weights (one SVD per decomposed layer), so applying
    the same plan to a freshly built network gives the module structure to load a factorized
    ``state_dict`` into.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    result = copy.deepcopy(model)
    for layer in plan.layers:
        if not layer.decomposed:
            continue
        try:
            found = result.get_submodule(layer.name)
        except AttributeError:
            raise ValueError(f"the model has no layer {layer.name!r} named in the plan") from None
        module = _check(found, layer)
        assert layer.rank is not None
        if mode == "project":
            encoder_weight, decoder_weight = _factors(module.weight, layer.k, layer.rank)
            reconstruction = _unfold(decoder_weight @ encoder_weight, module.weight.shape)
            with torch.no_grad():
                module.weight.copy_(reconstruction)
        else:
            parent_name, _, child_name = layer.name.rpartition(".")
            parent = result.get_submodule(parent_name)
            setattr(parent, child_name, _factorized(module, layer.k, layer.rank))
    return result


def compress(
    model: nn.Module,
    rate: float,
    *,
    mode: Mode = "project",
    error: ErrorMeasure = "exact",
    seed: int = 0,
    k_candidates: Sequence[int] | None = None,
    input_shape: Sequence[int] | None = None,
) -> tuple[nn.Module, AldsPlan]:
    """:func:`allocate` then :func:`apply`: the compressed copy of ``model`` and its plan."""
    plan = allocate(
        model,
        rate,
        error=error,
        seed=seed,
        k_candidates=k_candidates,
        input_shape=input_shape,
    )
    return apply(model, plan, mode), plan
