"""The baseline's failure: every idea is measured against it, so a run without one stops."""

from __future__ import annotations

from pathlib import Path

from groundwork.records import FailureCategory, Result


class BaselineFailed(RuntimeError):
    """The baseline failed twice: the run has no reference and stops."""


def failure_reason(result: Result) -> str:
    detail = result.detail.strip()
    return f"{result.failure}: {detail.splitlines()[0] if detail else 'no detail'}"


def failed_twice(result: Result, log_path: Path, run_dir: Path) -> BaselineFailed:
    """The error that stops the run, with what to do about it."""
    advice = (
        "the job ran out of time: on a slow or busy machine give the profile a larger kill_limit_s "
        "(compute budgets) or grace_s (time budgets), or run where fewer processes compete"
        if result.failure == FailureCategory.TIMED_OUT
        else "the unmodified codebase does not run here: fix the environment (see the log)"
    )
    return BaselineFailed(
        f"the baseline failed twice ({failure_reason(result)}); every idea is measured against it, so the run "
        f"stops. Job log: {log_path}. What to do: {advice}; then `groundwork resume {run_dir}` "
        "runs the baseline again"
    )
