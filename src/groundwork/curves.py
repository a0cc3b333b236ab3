"""A result's training curve (the points of `out/train_log.jsonl`) as one named series:
what the plots draw and what the ideator is told about a run's progress."""

from __future__ import annotations

from groundwork.records import Result

PREFERRED_KEYS = ("loss", "reward", "accuracy")


def curve_series(
    result: Result | None, preferred: tuple[str, ...] = PREFERRED_KEYS
) -> tuple[str, list[float], list[float]]:
    """(name, x, y) of a result's training curve: the first preferred key it logged,
    against "step" (or the point's index)."""
    if result is None or not result.curve:
        return "", [], []
    keys = [k for k in result.curve[0] if isinstance(result.curve[0][k], (int, float)) and k != "step"]
    name = next((k for k in preferred if k in keys), keys[0] if keys else "")
    if not name:
        return "", [], []
    xs, ys = [], []
    for n, point in enumerate(result.curve):
        value = point.get(name)
        if isinstance(value, (int, float)):
            xs.append(float(point.get("step", n)))
            ys.append(float(value))
    return name, xs, ys
