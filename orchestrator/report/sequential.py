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
information fraction t = n/max_seeds (``sequential.spending``): linear by default, α·t (Kim &
DeMets' power family at ρ = 1), of the Pocock type, α·ln(1 + (e − 1)·t), which spends more at
the first looks, or of the O'Brien-Fleming type, 2 − 2Φ(z(1 − α/2)/√t), which spends little
before the last look. At 3 or 4 seeds a t-interval is so wide that little is decided whatever is
spent there; the linear function keeps that share for the looks that use it. A wrong
"better"/"worse" spends α/(2m) in each tail, a wrong "equivalent" (TOST: each bound one-sided)
α/m. These are repeated confidence intervals (Jennison & Turnbull 2000, ch. 9): each error needs
an interval to miss the true difference at some look, so stopping at any decision keeps both
rates.

The boundaries are those of the paired t-statistic itself, not of a normal mean with a known
spread mapped to t: at 3 to 5 seeds that mapping lets about 7% through where 5% was asked. With
no true difference the looks' t-statistics have one joint distribution whatever the spread, so
:func:`boundaries` sets the critical values by simulating it once (2,000,000 sweeps, a fixed seed:
every worker computes the same), and ``benchmarks/bench_sequential.py`` measures the error rates
reached with this module's code. Numpy and scipy.special alone, as :mod:`planner`: a worker's
look and ``validate`` use it without the report's tables.
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
    "LINEAR",
    "OBRIEN_FLEMING",
    "OPEN",
    "POCOCK",
    "SPENDING",
    "UNDECIDED",
    "WORSE",
    "Design",
    "boundaries",
    "simulate",
    "spending",
    "words",
]

OPEN, BETTER, WORSE, EQUIVALENT, UNDECIDED = 0, 1, 2, 3, 4
DECIDED = (BETTER, WORSE, EQUIVALENT)
_PATHS = 2_000_000  # simulated sweeps that set the boundaries: a crossing of 0.0003 ± 4%
_DRAWS = 60_000_000  # at most this many normal draws per boundary set (paths × max_seeds)
_STREAM = 20261207  # the simulation's seed: every worker computes the same boundaries
LINEAR, OBRIEN_FLEMING, POCOCK = "linear", "obrien-fleming", "pocock"
SPENDING = (LINEAR, OBRIEN_FLEMING, POCOCK)


def spending(fraction: float, level: float, kind: str = LINEAR) -> float:
    """The level spent by the information ``fraction`` t (n/max_seeds): linear, level·t (Kim &
    DeMets' power family at ρ = 1), or Lan-DeMets' functions of the O'Brien-Fleming type,
    2 − 2Φ(z(1 − level/2)/√t), or of the Pocock type, level·ln(1 + (e − 1)·t); the whole
    ``level`` at t = 1."""
    if fraction <= 0.0:
        return 0.0
    fraction = min(fraction, 1.0)
    if kind == LINEAR:
        return level * fraction
    if kind == POCOCK:
        return level * math.log(1.0 + (math.e - 1.0) * fraction)
    z = float(special.ndtri(1.0 - level / 2.0))
    return float(min(level, 2.0 - 2.0 * special.ndtr(z / math.sqrt(fraction))))


@functools.lru_cache(maxsize=64)
def boundaries(looks: tuple[int, ...], level: float, kind: str = LINEAR) -> tuple[float, ...]:
    """The critical values of a one-sided paired t-test at ``level`` watched at ``looks``
    (the seeds at each, the last the most): c_k such that, with no true difference, the
    t-statistic first reaches c_k at look k with the probability :func:`spending` adds there.

    With no true difference the t-statistics of the looks have one joint distribution,
    whatever the spread, so the boundaries are set once by simulating it: sweeps of normal
    differences, and at each look the quantile of the t-statistics of those that have not
    crossed yet. A look with fewer than :data:`MIN_SEEDS` seeds decides nothing, and its
    share of the level passes to the next.

    Returns:
        One critical value per look; ``inf`` where a look decides nothing.
    """
    largest = looks[-1]
    paths = max(10_000, min(_PATHS, _DRAWS // largest))
    rng = np.random.default_rng(_STREAM)
    total = np.zeros(paths)
    squares = np.zeros(paths)
    alive = np.ones(paths, dtype=bool)
    seen = 0
    crossed = 0
    bounds = []
    for n in looks:
        draws = rng.standard_normal((paths, n - seen))
        total += draws.sum(axis=1)
        squares += (draws**2).sum(axis=1)
        seen = n
        allowed = round(spending(n / largest, level, kind) * paths) - crossed
        if n < MIN_SEEDS or allowed <= 0:
            bounds.append(math.inf)
            continue
        mean = total / n
        error = np.sqrt(np.maximum(squares - n * mean**2, 0.0) / (n - 1) / n)
        statistic = np.where(alive, mean / error, -np.inf)
        # The allowed-th largest statistic of the sweeps still open.
        bound = float(np.partition(statistic, paths - allowed)[paths - allowed])
        bounds.append(bound)
        newly = alive & (statistic >= bound)
        crossed += int(newly.sum())
        alive &= ~newly
    return tuple(bounds)


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
    kind: str = LINEAR

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
        """Per look, the t critical values of a difference's tail (α/(2m)) and of an
        equivalence bound (α/m)."""
        return (
            np.array(boundaries(self.looks, self.level / 2, self.kind)),
            np.array(boundaries(self.looks, self.level, self.kind)),
        )

    def nominal_levels(self) -> tuple[np.ndarray, np.ndarray]:
        """Per look, the two-sided level of the difference's interval and the one-sided level
        of each equivalence bound (what ``validate`` prints as the boundary)."""
        freedom = np.array(self.looks, dtype=float) - 1
        difference, equivalence = self._critical
        with np.errstate(invalid="ignore"):
            return (
                2 * special.stdtr(freedom, -difference),
                special.stdtr(freedom, -equivalence),
            )

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
