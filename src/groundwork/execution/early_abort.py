"""Early abort from the learning curve: a job whose training curve trails the baseline's
beyond the noise is stopped, and its slot goes to the next job.

The controller builds an `AbortRule` from the baseline's curves (two seeds or more): at
each point of compute (tokens, or steps) the limit is the baseline seeds' mean plus
`k` times their spread (at least `min_margin` of the mean, so seeds that happen to agree do
not make a hair trigger). The rule travels in the job's spec as plain data; the job runner
checks the curve training writes (`out/train_log.jsonl`) while it runs, so the rule works
on every backend. After `warmup` of the baseline's compute, `patience` logged points in a
row beyond the limit stop the job as `aborted_trailing`."""

from __future__ import annotations

import json
import statistics
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

X_KEYS = ("tokens", "step")  # compute axes, most precise first
Y_KEYS = {"loss": True, "train_loss": True, "reward": False, "accuracy": False}  # name -> lower is better


@dataclass(frozen=True)
class AbortRule:
    x_key: str
    y_key: str
    minimize: bool
    xs: list[float]  # the baseline's compute points, increasing
    limits: list[float]  # the worst value a job may have at each point
    warmup_x: float  # no verdict before this much compute
    patience: int  # trailing points in a row that stop a job
    k: float  # recorded for the reason text
    seeds: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AbortRule:
        return cls(**data)

    def limit_at(self, x: float) -> float | None:
        """The limit at compute `x`, linearly between the baseline's points; None outside them."""
        if not self.xs or x < self.xs[0] or x > self.xs[-1]:
            return None
        i = bisect_left(self.xs, x)
        if self.xs[i] == x or i == 0:
            return self.limits[i]
        x0, x1, y0, y1 = self.xs[i - 1], self.xs[i], self.limits[i - 1], self.limits[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)

    def verdict(self, points: Sequence[dict]) -> str | None:
        """Why the job should stop, from its curve so far; None while it may go on."""
        streak = 0
        for point in points:
            x, y = point.get(self.x_key), point.get(self.y_key)
            if not _number(x) or not _number(y) or x < self.warmup_x:
                continue
            limit = self.limit_at(float(x))
            if limit is None:
                continue
            trailing = y > limit if self.minimize else y < limit
            streak = streak + 1 if trailing else 0
            if streak >= self.patience:
                word = "above" if self.minimize else "below"
                return (
                    f"trailing the baseline at {self.x_key} {x:g} of {self.xs[-1]:g}: {self.y_key} {y:.4g} is {word} "
                    f"{limit:.4g} (the baseline's mean {'+' if self.minimize else '-'} {self.k:g} sd over "
                    f"{self.seeds} seeds) for {streak} logged points in a row"
                )
        return None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def curve_axes(curve: Sequence[dict]) -> tuple[str, str] | None:
    """(compute key, value key) that a curve logs, or None."""
    if not curve:
        return None
    first = curve[-1]
    x_key = next((k for k in X_KEYS if _number(first.get(k))), None)
    y_key = next((k for k in Y_KEYS if _number(first.get(k))), None)
    return (x_key, y_key) if x_key and y_key else None


def _interp(curve: Sequence[dict], x_key: str, y_key: str, x: float) -> float | None:
    pts = sorted((float(p[x_key]), float(p[y_key])) for p in curve if _number(p.get(x_key)) and _number(p.get(y_key)))
    if not pts or x < pts[0][0] or x > pts[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def rule_from_baselines(
    curves: Sequence[Sequence[dict]],
    *,
    k: float = 3.0,
    warmup: float = 0.3,
    patience: int = 2,
    min_margin: float = 0.01,
) -> AbortRule | None:
    """The rule from the baseline seeds' curves; None with fewer than two usable curves
    (the spread is not known yet)."""
    curves = [c for c in curves if curve_axes(c)]
    if len(curves) < 2:
        return None
    x_key, y_key = curve_axes(curves[0])  # type: ignore[misc]
    curves = [c for c in curves if curve_axes(c) == (x_key, y_key)]
    if len(curves) < 2:
        return None
    minimize = Y_KEYS[y_key]
    grid = sorted({float(p[x_key]) for p in curves[0] if _number(p.get(x_key))})
    xs, limits = [], []
    for x in grid:
        values = [v for v in (_interp(c, x_key, y_key, x) for c in curves) if v is not None]
        if len(values) < 2:
            continue
        mean = statistics.fmean(values)
        margin = max(k * statistics.stdev(values), min_margin * abs(mean))
        xs.append(x)
        limits.append(mean + margin if minimize else mean - margin)
    if not xs:
        return None
    return AbortRule(x_key, y_key, minimize, xs, limits, warmup * xs[-1], patience, k, len(curves))


def read_curve(path: Path) -> list[dict]:
    """The points of a train log written so far (a half-written last line is skipped)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    points = []
    for line in text.splitlines():
        try:
            point = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(point, dict):
            points.append(point)
    return points


def compute_share(rule: AbortRule, curve: Sequence[dict]) -> float:
    """How much of the baseline's compute a stopped job had used (its last logged point)."""
    xs = [float(p[rule.x_key]) for p in curve if _number(p.get(rule.x_key))]
    return min(1.0, max(xs) / rule.xs[-1]) if xs and rule.xs[-1] > 0 else 0.0
