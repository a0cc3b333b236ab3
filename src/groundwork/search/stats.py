"""Small statistics for noise-aware selection: the mean of an idea's runs with its 95%
confidence interval, and the margin a gain must clear to be more than noise."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

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
