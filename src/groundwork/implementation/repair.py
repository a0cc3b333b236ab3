"""Run-time repair: which failed runs an implementer may correct, and the part of a job's
log it is shown (the end, trimmed to a character budget, the error line always kept)."""

from __future__ import annotations

import re

from groundwork.log_lines import ERROR_LINE, TRACEBACK_START
from groundwork.records import FailureCategory, JobOutcome

# A crash or a missing metric is often a cheap bug in the patch. Everything else is final:
# a timeout, and the integrity failures (tampering, an implausible metric, a failed guard).
REPAIRABLE = frozenset({FailureCategory.CRASHED, FailureCategory.NO_METRIC, FailureCategory.DIVERGED})

NON_FINITE_LOSS = re.compile(r"\bloss\b[^\n]{0,40}?\b(nan|-?inf)\b|\b(nan|inf)\b[^\n]{0,20}\bloss\b", re.IGNORECASE)
CUT = "[... {n} lines cut ...]"


def repairable(outcome: JobOutcome) -> bool:
    """A failure worth a repair round: a crash, no metric or a diverged training, with no integrity check failed
    (a flag `*_ok` set to false, e.g. the locked files' hashes, marks the run as final)."""
    if outcome.failure not in REPAIRABLE:
        return False
    return not any(key.endswith("_ok") and value is False for key, value in outcome.flags.items())


def non_finite_loss(text: str) -> bool:
    """The log or failure shows a NaN or infinite loss (the training diverged)."""
    return bool(NON_FINITE_LOSS.search(text))


def log_excerpt(log: str, budget: int = 6000) -> str:
    """The last lines of `log` that fit in `budget` characters. When the last error line
    (an exception, or the start of a traceback) falls before them, it is kept with the
    lines from it on, and lines in between are cut: the error is what a repair needs."""
    if budget < 200:
        raise ValueError(f"log excerpt budget {budget}: give at least 200 characters")
    lines = [_clip(line, budget // 4) for line in log.rstrip("\n").splitlines()]
    if sum(len(line) + 1 for line in lines) <= budget:
        return "\n".join(lines)
    errors = [i for i, line in enumerate(lines) if ERROR_LINE.match(line) or TRACEBACK_START.match(line)]
    tail = _tail(lines, budget)
    start = len(lines) - len(tail)
    if not errors or errors[-1] >= start:
        return "\n".join([CUT.format(n=start), *tail] if start else tail)
    # Exceptions come last in a traceback: keep the last one and what leads to it, as room allows.
    error = errors[-1]
    head = _tail(lines[: error + 1], budget // 2)
    rest = _tail(lines[error + 1 :], budget - sum(len(line) + 1 for line in head) - 2 * len(CUT))
    first = error + 1 - len(head)
    cut_between = len(lines) - len(rest) - (error + 1)
    parts = ([CUT.format(n=first)] if first else []) + head
    parts += ([CUT.format(n=cut_between)] if cut_between else []) + rest
    return "\n".join(parts)


def _tail(lines: list[str], budget: int) -> list[str]:
    """The longest run of last lines whose length (with newlines) fits in `budget`."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    return kept[::-1]


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 20] + f" [... {len(line) - width + 20} chars]"
