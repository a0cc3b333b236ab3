"""The one noise-aware comparison of ideas with the baseline, used by the search
(`SearchHistory`) and by every view of a run (`RunSummary`): the baseline's mean, an idea's
signed gain over it, the margin a gain must clear to be more than noise, the noise floor's
fallback, the best idea; and the small statistics under them (the mean of an idea's runs
with its 95% confidence interval). Below every other module: it imports only records.py's
`StrEnum`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from groundwork.records import StrEnum

if TYPE_CHECKING:  # the job runner imports this module through protocols.py: no manifest models at start
    from groundwork.environments.manifest import Objective

T = TypeVar("T")

# Two-sided 95% Student t quantiles by degrees of freedom (1..30); beyond 30 the normal's 1.96.
T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(dof: int) -> float:
    if dof < 1:
        raise ValueError(f"a confidence interval needs at least one degree of freedom, got {dof}")
    return T95[dof - 1] if dof <= len(T95) else 1.96


@dataclass(frozen=True)
class Estimate:
    """The mean of n runs and the half-width of its 95% confidence interval (None for one run)."""

    mean: float
    n: int
    half_width: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        if not values:
            raise ValueError("an estimate needs at least one value")
        mean = statistics.fmean(values)
        if len(values) < 2:
            return cls(mean, 1)
        return cls(mean, len(values), t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))

    def __str__(self) -> str:
        if self.half_width is None:
            return f"{self.mean:.4f}"
        return f"{self.mean:.4f} ± {self.half_width:.4f} (n={self.n})"


def noise_margin(noise_std: float, n: int, n_baseline: int) -> float:
    """Two standard deviations of the difference between the mean of n runs and the mean of
    n_baseline baseline runs, each run with the environment's noise `noise_std`."""
    return 2.0 * noise_std * math.sqrt(1.0 / max(1, n) + 1.0 / max(1, n_baseline))


def run_noise_std(baseline_values: Sequence[float], stored_std: float | None) -> float | None:
    """The run-to-run noise: the sample sd of this run's baseline seeds when two or more
    ran, else the floor stored by `groundwork env baseline` (None: unknown)."""
    return statistics.stdev(baseline_values) if len(baseline_values) >= 2 else stored_std


class Verdict(StrEnum):
    """An idea against the baseline (`Comparison.verdict`); the values are what views print."""

    BETTER = "better"  # a gain beyond the noise margin
    WORSE = "worse"  # a loss beyond the noise margin
    WITHIN_NOISE = "within noise"  # inside the margin either way: never an improvement
    BETTER_NOISE_UNKNOWN = "better, noise unknown"  # a gain, with no noise measured
    NOT_BETTER = "not better"  # no gain, with no noise measured
    UNKNOWN = "unknown"  # no baseline metric, or the idea has no runs


@dataclass(frozen=True)
class Comparison:
    """Ideas against the baseline. `baseline_values` holds the baseline's metric on each
    seed that ran (its one run's when only that one did; empty: no baseline metric);
    `noise_std` is the run-to-run noise (None: unknown)."""

    objective: Objective
    baseline_values: Sequence[float]
    noise_std: float | None = None

    @property
    def baseline_mean(self) -> float | None:
        return statistics.fmean(self.baseline_values) if self.baseline_values else None

    def gain(self, values: Sequence[float]) -> float | None:
        """Signed gain of the mean of an idea's runs over the baseline's mean (positive is
        better); None without a baseline metric or without runs."""
        base = self.baseline_mean
        if base is None or not values:
            return None
        return self.objective.signed_gain(statistics.fmean(values), base)

    def margin(self, n: int) -> float | None:
        """Two standard deviations of the difference between the mean of n runs and the
        baseline's mean (None while the noise is unknown)."""
        if self.noise_std is None:
            return None
        return noise_margin(self.noise_std, n, len(self.baseline_values))

    def beats(self, values: Sequence[float]) -> bool:
        """The search's test: a gain beyond the noise margin (any gain while the noise is unknown)."""
        gain = self.gain(values)
        return gain is not None and gain > (self.margin(len(values)) or 0.0)

    def verdict(self, values: Sequence[float]) -> Verdict:
        """Better or worse only outside two standard deviations of the noise on the
        difference of the means; a gain inside it is never called an improvement."""
        gain = self.gain(values)
        if gain is None:
            return Verdict.UNKNOWN
        margin = self.margin(len(values))
        if margin is None:
            return Verdict.BETTER_NOISE_UNKNOWN if gain > 0 else Verdict.NOT_BETTER
        if abs(gain) <= margin:
            return Verdict.WITHIN_NOISE
        return Verdict.BETTER if gain > 0 else Verdict.WORSE

    def ranked(self, items: Sequence[T], values: Callable[[T], Sequence[float]]) -> list[T]:
        """Items with runs, best mean first (ties keep their order)."""
        having = [item for item in items if values(item)]
        return sorted(having, key=lambda item: self.objective.rank_key(statistics.fmean(values(item))))

    def best(self, items: Sequence[T], values: Callable[[T], Sequence[float]]) -> T | None:
        ranked = self.ranked(items, values)
        return ranked[0] if ranked else None
