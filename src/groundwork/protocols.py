"""The seams of the loop. Each stage is a Protocol; swapping a strategy, an ideator, an
implementer or a backend is one new class that satisfies it. Only plain data crosses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from groundwork.records import Idea, JobOutcome, PromptKind, Result
from groundwork.search.stats import Estimate, noise_margin

if TYPE_CHECKING:  # the job runner imports this module: it starts faster without the manifest's models
    from groundwork.environments.manifest import Metric


@dataclass(frozen=True)
class Scored:
    """An idea with its result, as the search sees it."""

    idea: Idea
    result: Result


@dataclass(frozen=True)
class SearchHistory:
    """Everything measured so far in a run, in the order it was proposed: the run's one
    ranked database of ideas. An idea re-run with fresh seeds (a confirmation) is scored by
    the mean of its runs."""

    metric: Metric
    baseline: Result | None
    scored: list[Scored]  # ideas with a result
    proposed: list[Idea] = field(default_factory=list)  # every idea of the run so far
    replicates: dict[str, list[Result]] = field(default_factory=dict)  # confirmation runs, by the idea they re-ran
    baseline_values: list[float] = field(default_factory=list)  # the baseline's metric on each seed that ran
    noise_std: float | None = None  # the environment's run-to-run noise, when measured
    confirm_seeds: int = 0  # > 0: an idea enters the exploit pool only after this many re-runs

    def valid(self) -> list[Scored]:
        return [s for s in self.scored if s.result.valid]

    def values(self, scored: Scored) -> list[float]:
        """The metric of each valid run of an idea: its own, then its confirmations'."""
        runs = [scored.result, *self.replicates.get(scored.idea.id, [])]
        return [float(r.metric) for r in runs if r.valid]  # type: ignore[arg-type]

    def estimate(self, scored: Scored) -> Estimate:
        return Estimate.of(self.values(scored))

    def confirmed(self, scored: Scored) -> bool:
        return len(self.replicates.get(scored.idea.id, [])) >= self.confirm_seeds

    def ranked(self) -> list[Scored]:
        """Valid results, best first (by the mean over runs), respecting the metric's direction."""
        sign = 1.0 if self.metric.direction == "minimize" else -1.0
        return sorted(self.valid(), key=lambda s: sign * self.estimate(s).mean)

    @property
    def baseline_mean(self) -> float | None:
        if self.baseline_values:
            return sum(self.baseline_values) / len(self.baseline_values)
        return float(self.baseline.metric) if self.baseline is not None and self.baseline.valid else None  # type: ignore[arg-type]

    def gain(self, scored: Scored) -> float:
        """Improvement of an idea's mean over the baseline's mean (positive is better)."""
        base = self.baseline_mean
        assert base is not None
        diff = base - self.estimate(scored).mean
        return diff if self.metric.direction == "minimize" else -diff

    def beating_baseline(self) -> list[Scored]:
        """The exploit pool: ideas whose gain is more than the noise (when it is measured),
        and, with confirmations on, only once their re-runs are in."""
        if self.baseline_mean is None:
            return []
        pool = []
        for s in self.ranked():
            if not self.confirmed(s):
                continue
            margin = 0.0
            if self.noise_std is not None:
                margin = noise_margin(self.noise_std, len(self.values(s)), max(1, len(self.baseline_values)))
            if self.gain(s) > margin:
                pool.append(s)
        return pool


@dataclass(frozen=True)
class IdeationRequest:
    """One prompt's worth of work for an ideator, decided by the search strategy."""

    kind: PromptKind
    count: int
    epoch: int
    parents: list[Scored] = field(default_factory=list)  # exploit: ideas to refine or combine
    tried: list[Scored] = field(default_factory=list)  # explore: what was tried, failures included
    seed: int = 0


@dataclass(frozen=True)
class IdeaDraft:
    """An idea as an ideator writes it, before the run store gives it an id."""

    title: str
    text: str
    category: str = "other"
    parents: list[str] = field(default_factory=list)
    thinking: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PatchAttempt:
    """One try of an implementer at turning an idea into a diff."""

    diff: str
    applied: bool
    error: str = ""
    files: list[str] = field(default_factory=list)
    codebase_hash: str = ""
    cost_usd: float = 0.0  # model calls that produced this attempt
    model: str = ""
    tokens: int = 0
    implementer: str = ""  # who wrote it, when not the implementer's own label (a portfolio's model)


@dataclass(frozen=True)
class FailedRun:
    """A patch that applied but whose run failed, as an implementer is shown it to repair."""

    diff: str
    failure: str  # the failure category, e.g. "crashed"
    detail: str
    log_tail: str  # the end of the job's log, the error line kept
    round: int  # the repair round this is for, from 1


@runtime_checkable
class Ideator(Protocol):
    label: str  # shown wherever its ideas are, e.g. "catalog (no LLM)"

    def propose(self, request: IdeationRequest, history: SearchHistory) -> list[IdeaDraft]: ...


@runtime_checkable
class Implementer(Protocol):
    label: str

    def implement(self, idea: Idea, codebase: Path) -> list[PatchAttempt]:
        """Attempts in order; the last one applied, or none did."""
        ...


@runtime_checkable
class Repairer(Protocol):
    """An implementer that can also correct a patch whose run failed (optional)."""

    def repair(self, idea: Idea, codebase: Path, failed: FailedRun) -> list[PatchAttempt]:
        """Attempts of a corrected diff against `codebase`, in order, as `implement`'s."""
        ...


@runtime_checkable
class SearchStrategy(Protocol):
    name: str
    epochs: int

    def plan_epoch(self, epoch: int, history: SearchHistory, count: int | None = None) -> list[IdeationRequest]:
        """Requests for epoch `epoch` (in steady-state search: a batch) of `count` ideas
        (None: the strategy's ideas per epoch)."""
        ...


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one job, serialisable to JSON."""

    job_id: str
    attempt: int
    job_dir: str  # absolute; the runner writes only below it
    baseline_dir: str  # pristine codebase snapshot of the run
    diff_path: str  # absolute path of the unified diff ("" for the baseline)
    codebase_hash: str  # expected hash of the patched codebase
    locked_hashes: dict[str, str]
    train_command: list[str]
    eval_command: list[str]
    time_budget_s: float  # training's seconds: the time budget, or a compute budget's kill limit
    grace_s: float
    eval_timeout_s: float
    env: dict[str, str]
    metric_name: str
    result_file: str
    plausible_range: tuple[float, float]
    slot: int
    threads: int
    gpu_ids: list[int]
    gpus: int = 0  # GPUs the job asks for: cluster backends place it by this
    sandbox: str = "auto"  # "auto": bubblewrap where it can run; "required": refuse without it; "off"
    memory_limit_mb: float | None = 0  # resident memory of the job's processes; 0: no limit; None: 80% of the worker's
    log_limit_mb: float = 50  # output kept in job.log per phase; the rest is dropped
    budget: str = "time"  # "compute": the code stops at its compute budget; time_budget_s only kills it
    # For a worker that lacks the prepared data (a cluster node without a shared cache): the
    # environment, its prepare command ({python}, {data_dir} filled in there, run in the
    # codebase) and the files training may see. Empty: the data must already be there.
    environment: str = ""
    prepare_command: list[str] = field(default_factory=list)
    training_files: list[str] | None = None
    pass_env: list[str] = field(default_factory=list)  # the controller's variables the manifest passes to jobs
    # Early abort: an `execution.early_abort.AbortRule` as a dict; None: the job runs its budget.
    abort_rule: dict[str, Any] | None = None
    # Codebase files training must not see (the hidden evaluation): the runner puts them in
    # the work folder, from the pristine baseline, only for the evaluation.
    hidden_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LostJob:
    """A job whose worker disappeared without reporting (killed, node lost)."""

    job_id: str
    attempt: int
    reason: str


@runtime_checkable
class Backend(Protocol):
    """Runs jobs on `slots` slots. Optional members the scheduler uses when present:
    `wakeup` (an event set when a job ends), `capacity()` and `capacity_grace_s` (resources
    of a cluster that may grow), and `prepare(count, resources)`: jobs asking for
    `resources` are about to be queued, get `count` slots ready for them (Ray starts its
    worker processes ahead)."""

    name: str
    slots: int

    def start(self, spec: JobSpec) -> str:
        """Start a job; return a worker description (e.g. pid and host)."""
        ...

    def poll(self) -> list[JobOutcome | LostJob]:
        """Outcomes of jobs that ended since the last poll (lost workers included)."""
        ...

    def reattach(self, spec: JobSpec) -> bool:
        """After a controller restart: adopt a job that may still be running.
        False when its worker is gone and it never reported (the job must be re-queued)."""
        ...

    def cancel(self, job_id: str) -> None: ...

    def shutdown(self) -> None: ...
