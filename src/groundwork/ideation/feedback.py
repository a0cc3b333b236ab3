"""What the ideator is told about ideas that already ran: one line each with its result;
for a failure its kind and the key error line; for the best ideas a short summary of their
training curve. Each list stays within a character budget, so a long run's prompts keep
their size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from groundwork.curves import curve_series
from groundwork.log_lines import ERROR_LINE
from groundwork.protocols import Scored

if TYPE_CHECKING:
    from groundwork.environments.manifest import Metric

FEEDBACK_CHARS = 8000  # per list of ideas (the tried ideas of an explore prompt, an exploit prompt's parents)
DESCRIPTION_CHARS = 600  # of each exploit parent's description
ERROR_CHARS = 240  # of a failure's key error line
CURVE_POINTS = 4  # first, last and evenly spaced points between
CURVES_SHOWN = 3  # the best ideas of an explore list that get a curve summary


def _trim(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def key_error_line(detail: str) -> str:
    """The one line of a failure's detail worth showing: the last exception or error line
    of the log tail it carries, else its first line."""
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    for line in reversed(lines):
        if ERROR_LINE.match(line):
            return _trim(line, ERROR_CHARS)
    return _trim(lines[0], ERROR_CHARS) if lines else ""


def _number(value: float) -> str:
    return f"{value:.4g}"


def curve_summary(scored: Scored) -> str:
    """`loss 5.52 -> 3.1 -> 2.71 -> 2.55 (steps 0, 32, 64, 96)`; empty without a curve."""
    name, xs, ys = curve_series(scored.result)
    if not ys:
        return ""
    picks = sorted({round(k * (len(ys) - 1) / (CURVE_POINTS - 1)) for k in range(CURVE_POINTS)})
    values = " -> ".join(_number(ys[i]) for i in picks)
    steps = ", ".join(_number(xs[i]) for i in picks)
    return f"{name} {values} (steps {steps})"


def result_line(scored: Scored, metric: Metric, baseline: float | None) -> str:
    """`"Title" (e1-02): val_bpb = 3.5000 (+0.3000 vs baseline)`, or the failure with its
    kind and key error line."""
    result = scored.result
    head = f'"{_trim(scored.idea.title, 120)}" ({scored.idea.id})'
    if result.valid:
        value = float(result.metric)  # type: ignore[arg-type]
        line = f"{head}: {metric.name} = {value:.4f}"
        if baseline is not None:
            gain = metric.signed_gain(value, baseline)
            line += f" ({gain:+.4f} vs baseline)"
        return line
    kind = str(result.failure) if result.failure else "no result"
    summary = key_error_line(result.detail.splitlines()[0]) if result.detail.strip() else ""
    error = key_error_line(result.detail)
    reason = summary.rstrip(":") if summary else ""
    if error and error != summary:
        reason = f"{reason} | {error}" if reason else error
    return f"{head}: failed, {kind}" + (f": {reason}" if reason else "")


def _within_budget(entries: list[str], budget: int) -> list[str]:
    """Whole entries while they fit, then one line saying how many were left out."""
    kept, used = [], 0
    for n, entry in enumerate(entries):
        if used + len(entry) + 1 > budget and kept:
            kept.append(f"- ... and {len(entries) - n} more not shown (prompt budget of {budget} characters)")
            break
        kept.append(entry)
        used += len(entry) + 1
    return kept


def tried_lines(
    tried: Sequence[Scored], metric: Metric, baseline: float | None, budget: int = FEEDBACK_CHARS
) -> list[str]:
    """An explore prompt's list: every tried idea on its own line; the best few valid ones
    with a curve summary on the line below."""
    valid = sorted((s for s in tried if s.result.valid), key=lambda s: metric.rank_key(float(s.result.metric)))  # type: ignore[arg-type]
    with_curve = {s.idea.id for s in valid[:CURVES_SHOWN]}
    entries = []
    for s in tried:
        entry = "- " + result_line(s, metric, baseline)
        curve = curve_summary(s) if s.idea.id in with_curve else ""
        entries.append(entry + (f"\n  training curve: {curve}" if curve else ""))
    return _within_budget(entries, budget)


def parent_lines(
    parents: Sequence[Scored], metric: Metric, baseline: float | None, budget: int = FEEDBACK_CHARS
) -> list[str]:
    """An exploit prompt's list: each parent's result, its description and its curve."""
    entries = []
    for s in parents:
        entry = "- " + result_line(s, metric, baseline) + "\n  " + _trim(s.idea.text, DESCRIPTION_CHARS)
        curve = curve_summary(s)
        entries.append(entry + (f"\n  training curve: {curve}" if curve else ""))
    return _within_budget(entries, budget)
