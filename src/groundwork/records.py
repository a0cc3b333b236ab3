"""Typed records that flow between the stages of a run and live in the run store.

Idea -> Patch -> Job -> Result: every arrow of the loop is one of these, written to the
store before the next stage acts on it, so a killed run can always be resumed.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StrEnum(str, Enum):
    def __str__(self) -> str:  # print the value, not "Class.member"
        return self.value


class PromptKind(StrEnum):
    BASELINE = "baseline"  # the unmodified codebase, run once per run
    SIMPLE = "simple"  # ideas from the codebase and goal alone
    EXPLORE = "explore"  # new directions, shown what was tried
    EXPLOIT = "exploit"  # refine or combine ideas that beat the baseline
    CONFIRM = "confirm"  # a top idea's patch re-run with a fresh seed (noise-aware selection)


class IdeaState(StrEnum):
    PROPOSED = "proposed"
    IMPLEMENTED = "implemented"
    PATCH_FAILED = "patch_failed"


class PatchStatus(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"


class JobState(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"  # a slot is reserved; the process is being started
    RUNNING = "running"
    DONE = "done"  # ran and produced a valid metric
    FAILED = "failed"  # crashed, no metric, tampered, implausible
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    CREATED = "created"  # the folder exists; no controller has run it yet
    RUNNING = "running"  # a controller drives it (or died doing so: resume takes over)
    FINISHED = "finished"
    BUDGET_EXHAUSTED = "budget_exhausted"  # a dollar, device-hour or wall-time cap was reached
    BASELINE_FAILED = "baseline_failed"
    INTERRUPTED = "interrupted"  # Ctrl+C
    FAILED = "failed"  # an error stopped the controller


TERMINAL_JOB_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED})


class FailureCategory(StrEnum):
    PATCH_FAILED = "patch_failed"  # the diff did not apply or broke a rule
    CRASHED = "crashed"  # training or evaluation exited non-zero
    TIMED_OUT = "timed_out"  # killed at budget + grace
    NO_METRIC = "no_metric"  # exited cleanly but wrote no usable metric
    EVAL_TAMPERED = "eval_tampered"  # a locked file changed while the job ran
    METRIC_IMPLAUSIBLE = "metric_implausible"  # outside the environment's plausible range
    ABORTED_TRAILING = "aborted_trailing"  # stopped early: its training curve trailed the baseline's
    DIVERGED = "diverged"  # a non-finite training loss, or a model whose outputs are NaN/inf


def now() -> float:
    return time.time()


class _Record(BaseModel):
    # Validators are built on a model's first use, not at import: a job runner uses one
    # of these models, and its start-up delays every job.
    model_config = ConfigDict(defer_build=True)


class Idea(_Record):
    id: str
    epoch: int
    index: int
    title: str
    text: str
    category: str = "other"
    prompt_kind: PromptKind
    origin: str  # who wrote it, e.g. "catalog (no LLM)"
    parents: list[str] = Field(default_factory=list)
    thinking: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)  # ideator-specific data (catalog edits)
    state: IdeaState = IdeaState.PROPOSED
    created_at: float = Field(default_factory=now)


class Patch(_Record):
    id: str
    idea_id: str
    attempt: int
    implementer: str
    status: PatchStatus
    diff_path: str  # artifact path relative to the run folder
    diff_sha256: str
    error: str = ""
    files: list[str] = Field(default_factory=list)
    codebase_hash: str = ""  # hash of the patched codebase when it applied
    model: str = ""  # the implementer model, when one wrote it
    repair_round: int = 0  # 0: the first implementation; k: written in repair round k, after a run failed
    cost_usd: float = 0.0
    tokens: int = 0
    created_at: float = Field(default_factory=now)


class Job(_Record):
    id: str
    idea_id: str
    patch_id: str
    backend: str
    state: JobState = JobState.QUEUED
    attempt: int = 1
    seed: int | None = None  # None: the run's seed
    resources: dict[str, Any] = Field(default_factory=dict)
    slot: int | None = None
    worker: str = ""  # e.g. "pid 1234 on host"
    job_dir: str = ""  # relative to the run folder
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    repairs: int = 0  # repair rounds so far: each ran a corrected patch as a new attempt
    # A failed run of a repairable idea: its result, held (no result row yet) until a repair
    # round is queued or the idea ends with it.
    awaiting_repair: Result | None = None
    preflight_stops: int = 0  # attempts stopped at pre-flight, each followed by a repair round
    created_at: float = Field(default_factory=now)


class Result(_Record):
    idea_id: str
    job_id: str | None = None
    metric: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    curve: list[dict[str, Any]] = Field(default_factory=list)
    failure: FailureCategory | None = None
    detail: str = ""
    flags: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None
    repair_rounds: int = 0  # repair rounds before the run that gave this result
    preflight_stops: int = 0  # attempts of the idea's job stopped at pre-flight, this one included
    created_at: float = Field(default_factory=now)

    @property
    def valid(self) -> bool:
        return self.failure is None and self.metric is not None


class JobOutcome(_Record):
    """What a worker reports when a job ends (written by the job runner as JSON)."""

    job_id: str
    attempt: int
    failure: FailureCategory | None = None
    metric: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    curve: list[dict[str, Any]] = Field(default_factory=list)
    detail: str = ""
    flags: dict[str, Any] = Field(default_factory=dict)
    exit_code: int | None = None
    started_at: float
    ended_at: float

    def job_state(self) -> JobState:
        if self.failure is None:
            return JobState.DONE
        if self.failure == FailureCategory.TIMED_OUT:
            return JobState.TIMED_OUT
        return JobState.FAILED
