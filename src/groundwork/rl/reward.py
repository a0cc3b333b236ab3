"""From a measured result to a reward: the improvement over the baseline in units of the
baseline's noise (its standard deviation over seeds), or in metric units when the noise
was never measured; a fixed penalty for an idea that failed to implement or to run."""

from __future__ import annotations

from dataclasses import dataclass

from groundwork.environments.manifest import Metric
from groundwork.records import Result


@dataclass(frozen=True)
class RewardScale:
    metric: Metric
    baseline: float
    noise_std: float | None  # None or 0: rewards are in metric units
    failure_reward: float

    @property
    def unit(self) -> str:
        if self.noise_std:
            return f"baseline noise sd ({self.noise_std:.4g} {self.metric.name})"
        return f"{self.metric.name} (noise not measured)"

    def improvement(self, metric: float) -> float:
        """Positive when better than the baseline, whatever the metric's direction."""
        return self.metric.signed_gain(metric, self.baseline)

    def reward(self, result: Result | None) -> float:
        if result is None or not result.valid:
            return self.failure_reward
        gain = self.improvement(float(result.metric))  # type: ignore[arg-type]
        return gain / self.noise_std if self.noise_std else gain
