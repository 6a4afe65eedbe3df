"""The sequential design of a sweep that decides: repeated confidence intervals under alpha
spending, one look per round of seeds.

Each ALDS configuration is compared with its IMP-only twin on the primary endpoint, paired by
seed, as :func:`statistics.judge` compares them, but at every look: after the first seeds
(``seeds``) and after every ``sequential.step`` more, up to ``sequential.max_seeds``. A look
decides **ALDS better** or **ALDS worse** when the difference's repeated interval excludes
zero, **equivalent** when the equivalence bounds lie inside ±margin (and no difference is
shown: a difference takes precedence, as in the report's rule), and otherwise leaves the
configuration **open**; still open at ``max_seeds``, it is **undecided**.

Error rates. The family's ``alpha`` is split over its m configurations (Bonferroni, α/m each),
and each configuration's α/m is spent over its looks with a Lan-DeMets spending function of the
information fraction t = n/max_seeds (``sequential.spending``): of the Pocock type by default,
α·ln(1 + (e − 1)·t), which spends evenly enough that a clear answer stops early, or of the
O'Brien-Fleming type, 2 − 2Φ(z(1 − α/2)/√t), which spends little before the last look
(``benchmarks/bench_sequential.py`` measures both: the Pocock type uses fewer seeds at the
published spreads, both hold the error rates). The boundaries are the group-sequential ones of a
normal mean with known variance, computed exactly by numerical integration over the looks
(Armitage, McPherson & Rowe 1969): a wrong "better"/"worse" spends α/(2m) in each tail and a
wrong "equivalent" (TOST: each bound one-sided) spends α/m. With an unknown variance each look's
nominal level goes to the t distribution on n − 1 degrees of freedom (the "significance level"
approach, Jennison & Turnbull 2000, §3.9 and ch. 9); that is an approximation at small n, so
``benchmarks/bench_sequential.py`` measures the error rates it reaches by simulation, with this
module's code. Numpy and scipy.special alone, as :mod:`planner`: a worker's look and
``validate`` use it without the report's tables.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from orchestrator.report.planner import MIN_SEEDS, NO_SPREAD_STD

__all__ = [
    "BETTER",
    "DECIDED",
    "EQUIVALENT",
    "OPEN",
    "UNDECIDED",
    "WORSE",
    "Design",
    "boundaries",
    "spending",
]

OPEN, BETTER, WORSE, EQUIVALENT, UNDECIDED = 0, 1, 2, 3, 4
DECIDED = (BETTER, WORSE, EQUIVALENT)
_GRID = 1201  # points of the score's density per look: boundaries to about 1e-4 in z
_TAIL = 9.0  # standard deviations of the score's density kept below the boundary


OBRIEN_FLEMING, POCOCK = "obrien-fleming", "pocock"
SPENDING = (OBRIEN_FLEMING, POCOCK)


def spending(fraction: float, level: float, kind: str = OBRIEN_FLEMING) -> float:
    """The level spent by the information ``fraction`` t (n/max_seeds), Lan-DeMets' functions:
    of the O'Brien-Fleming type, 2 − 2Φ(z(1 − level/2)/√t), or of the Pocock type,
    level·ln(1 + (e − 1)·t); the whole ``level`` at t = 1."""
    if fraction <= 0.0:
        return 0.0
    fraction = min(fraction, 1.0)
    if kind == POCOCK:
        return level * math.log(1.0 + (math.e - 1.0) * fraction)
    z = float(special.ndtri(1.0 - level / 2.0))
    return float(min(level, 2.0 - 2.0 * special.ndtr(z / math.sqrt(fraction))))


@functools.lru_cache(maxsize=64)
def boundaries(
    fractions: tuple[float, ...], level: float, kind: str = OBRIEN_FLEMING
) -> tuple[float, ...]:
    """The z boundaries of a one-sided test at ``level`` watched at the information
    ``fractions`` (increasing, the last 1): c_k such that a standard Brownian motion's
    standardised value first crosses c_k at look k with the probability :func:`spending`
    adds there. The score's density below the boundaries is carried from look to look on a
    grid (trapezoid rule), and each c_k is found by bisection.

    Returns:
        One boundary per look; ``inf`` where a look spends nothing.
    """
    spent = [spending(t, level, kind) for t in fractions]
    increments = np.diff([0.0, *spent])
    bounds: list[float] = []
    nodes = weights = density = None
    previous = 0.0
    for t, increment in zip(fractions, increments, strict=True):
        if nodes is None:
            c = float(special.ndtri(1.0 - increment)) if increment > 0 else math.inf
            top = min(c, _TAIL) * math.sqrt(t)
            nodes = np.linspace(-_TAIL * math.sqrt(t), top, _GRID)
            density = np.exp(-(nodes**2) / (2 * t)) / math.sqrt(2 * math.pi * t)
        else:
            gap = math.sqrt(t - previous)
            assert weights is not None and density is not None
            mass = weights * density

            c = _solve(nodes, mass, math.sqrt(t), gap, increment) if increment > 0 else math.inf
            top = min(c, _TAIL) * math.sqrt(t)
            new_nodes = np.linspace(-_TAIL * math.sqrt(t), top, _GRID)
            kernel = np.exp(-((new_nodes[:, None] - nodes[None, :]) ** 2) / (2 * gap**2))
            density = kernel @ mass / (gap * math.sqrt(2 * math.pi))
            nodes = new_nodes
        step = nodes[1] - nodes[0]
        weights = np.full(_GRID, step)
        weights[[0, -1]] = step / 2
        bounds.append(c)
        previous = t
    return tuple(bounds)


def _solve(nodes: np.ndarray, mass: np.ndarray, scale: float, gap: float, target: float) -> float:
    """The boundary c at which the score, carried by ``mass`` at ``nodes`` from the last look
    and moved by a normal step of standard deviation ``gap``, first crosses c·``scale`` with
    probability ``target``: bisection (the crossing falls as c rises)."""
    low, high = -_TAIL, 2 * _TAIL
    for _ in range(80):
        middle = (low + high) / 2
        if float(np.sum(mass * special.ndtr((nodes - middle * scale) / gap))) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@dataclass(frozen=True)
class Design:
    """A sequential paired design: its looks and the critical values at each.

    Attributes:
        first: the seeds of the first look (the sweep's listed ``seeds``).
        step: seeds added per look.
        max_seeds: the most seeds a configuration gets; the last look is there.
        alpha: the family-wise error rate, over the configurations and all looks.
        family_size: the ALDS configurations judged together (m).
        margin: the equivalence margin, in accuracy.
        kind: the spending function (:data:`SPENDING`).
    """

    first: int
    step: int
    max_seeds: int
    alpha: float
    family_size: int
    margin: float
    kind: str = POCOCK

    @property
    def looks(self) -> tuple[int, ...]:
        """The seeds at each look: ``first``, ``first + step``, … and ``max_seeds`` last."""
        seeds = list(range(self.first, self.max_seeds, self.step))
        return (*seeds, self.max_seeds)

    @property
    def level(self) -> float:
        """Each configuration's share of ``alpha``: α/m."""
        return self.alpha / max(self.family_size, 1)

    @functools.cached_property
    def _critical(self) -> tuple[np.ndarray, np.ndarray]:
        fractions = tuple(n / self.max_seeds for n in self.looks)
        freedom = np.array(self.looks, dtype=float) - 1
        critical = []
        for level in (self.level / 2, self.level):  # a difference's tail; an equivalence bound
            z = np.array(boundaries(fractions, level, self.kind))
            nominal = special.ndtr(-z)  # the one-sided level each look is tested at
            with np.errstate(divide="ignore"):
                t = np.where(nominal > 0, special.stdtrit(freedom, 1.0 - nominal), np.inf)
            critical.append(np.where(freedom >= MIN_SEEDS - 1, t, np.inf))
        return critical[0], critical[1]

    def nominal_levels(self) -> tuple[np.ndarray, np.ndarray]:
        """Per look, the two-sided level of the difference's interval and the one-sided level
        of each equivalence bound (what ``validate`` prints as the boundary)."""
        fractions = tuple(n / self.max_seeds for n in self.looks)
        difference = 2 * special.ndtr(-np.array(boundaries(fractions, self.level / 2, self.kind)))
        equivalence = special.ndtr(-np.array(boundaries(fractions, self.level, self.kind)))
        return difference, equivalence

    def look_of(self, n: int) -> int | None:
        """The look that happens at ``n`` seeds (0 the first); None at no look."""
        looks = self.looks
        return looks.index(n) if n in looks else None

    def decide(
        self,
        mean: np.ndarray | float,
        std: np.ndarray | float,
        look: np.ndarray | int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The decision at a look, for every configuration (or simulated one) at once.

        Args:
            mean, std: the paired differences' mean and standard deviation (ddof 1), in
                accuracy, at that look.
            look: the look's index in :attr:`looks`.

        Returns:
            (decision codes: :data:`OPEN`, :data:`BETTER`, :data:`WORSE`,
            :data:`EQUIVALENT` or at the last look :data:`UNDECIDED`; the difference's
            repeated interval, low and high). No spread (every difference one value) decides
            nothing.
        """
        mean = np.asarray(mean, dtype=float)
        std = np.asarray(std, dtype=float)
        look = np.asarray(look, dtype=int)
        difference_t, equivalence_t = self._critical
        n = np.asarray(self.looks, dtype=float)[look]
        error = std / np.sqrt(n)
        half = difference_t[look] * error
        low, high = mean - half, mean + half
        spread = std > NO_SPREAD_STD
        better = spread & (low > 0)
        worse = spread & (high < 0)
        bound = np.abs(mean) + equivalence_t[look] * error
        equivalent = spread & ~better & ~worse & (bound < self.margin)
        decision = np.full(np.broadcast(mean, std, look).shape, OPEN, dtype=int)
        decision = np.where(better, BETTER, decision)
        decision = np.where(worse, WORSE, decision)
        decision = np.where(equivalent, EQUIVALENT, decision)
        last = look == len(self.looks) - 1
        decision = np.where(last & (decision == OPEN), UNDECIDED, decision)
        return decision, low, high


def words(decision: int, margin: float) -> str:
    """A decision in the report's words; ``margin`` in accuracy."""
    return {
        OPEN: "open",
        BETTER: "ALDS better",
        WORSE: "ALDS worse",
        EQUIVALENT: f"equivalent within ±{100 * margin:g} pt",
        UNDECIDED: "undecided",
    }[decision]


def simulate(
    design: Design,
    differences: Sequence[float] | np.ndarray,
    stds: Sequence[float] | np.ndarray,
    repeats: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``repeats`` sweeps of the design on normal paired differences: configuration j with
    true mean ``differences[j]`` and standard deviation ``stds[j]``, seeds added while it is
    open, decided by :meth:`Design.decide` (the code a sweep's look runs).

    Returns:
        (decision codes, seeds used), each ``repeats`` × configurations.
    """
    truth = np.asarray(differences, dtype=float)
    spread = np.asarray(stds, dtype=float)
    draws = (
        rng.standard_normal((repeats, len(truth), design.max_seeds)) * spread[:, None]
        + truth[:, None]
    )
    total = np.cumsum(draws, axis=2)
    squares = np.cumsum(draws**2, axis=2)
    decision = np.full((repeats, len(truth)), OPEN, dtype=int)
    used = np.zeros((repeats, len(truth)), dtype=int)
    for look, n in enumerate(design.looks):
        open_now = decision == OPEN
        mean = total[:, :, n - 1] / n
        variance = np.maximum(squares[:, :, n - 1] - n * mean**2, 0.0) / (n - 1)
        made, _, _ = design.decide(mean, np.sqrt(variance), look)
        decision = np.where(open_now, made, decision)
        used = np.where(open_now, n, used)
    return decision, used
