"""The seams of the loop. Each stage is a Protocol; swapping a strategy, an ideator, an
implementer or a backend is one new class that satisfies it. Only plain data crosses.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from groundwork.comparison import Comparison, Estimate
from groundwork.records import Idea, JobOutcome, PromptKind, Result

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
    diff_lines: dict[str, int] = field(default_factory=dict)  # lines changed by each idea's applied diff (archive)
    # Island migrations so far, as stored: {"round", "epoch", "moves": [[idea_id, from, to], ...]}.
    migrations: list[dict] = field(default_factory=list)

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

    @property
    def comparison(self) -> Comparison:
        """Ideas against the baseline's seeds (its one run's when only that one ran)."""
        single = self.baseline is not None and self.baseline.valid
        values = self.baseline_values or ([float(self.baseline.metric)] if single else [])  # type: ignore[union-attr,arg-type]
        return Comparison(self.metric, values, self.noise_std)

    def ranked(self) -> list[Scored]:
        """Valid results, best first (by the mean over runs), respecting the metric's direction."""
        return self.comparison.ranked(self.valid(), self.values)

    @property
    def baseline_mean(self) -> float | None:
        return self.comparison.baseline_mean

    def gain(self, scored: Scored) -> float:
        """Improvement of an idea's mean over the baseline's mean (positive is better)."""
        gain = self.comparison.gain(self.values(scored))
        assert gain is not None
        return gain

    def beating_baseline(self) -> list[Scored]:
        """The exploit pool: ideas whose gain is more than the noise (when it is measured),
        and, with confirmations on, only once their re-runs are in."""
        comparison = self.comparison
        ranked = comparison.ranked(self.valid(), self.values)
        return [s for s in ranked if self.confirmed(s) and comparison.beats(self.values(s))]


def ideation_call_key(epoch: int, kind: str, island: int | None = None) -> str:
    """An ideation call's name: one per epoch, kind and island (islands ask for one kind each)."""
    return f"ideate:e{epoch}:{kind}" + ("" if island is None else f":island{island}")


@dataclass(frozen=True)
class IdeationRequest:
    """One prompt's worth of work for an ideator, decided by the search strategy."""

    kind: PromptKind
    count: int
    epoch: int
    parents: list[Scored] = field(default_factory=list)  # exploit: ideas to refine or combine
    tried: list[Scored] = field(default_factory=list)  # explore: what was tried, failures included
    seed: int = 0
    island: int | None = None  # the sub-population its ideas join (island search only)

    @property
    def call_key(self) -> str:
        return ideation_call_key(self.epoch, self.kind, self.island)


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


@runtime_checkable
class Migrating(Protocol):
    """A strategy with sub-populations that exchange ideas (islands): before proposing, the
    loop asks it for the migrations now due and stores them, so a resumed run replays them."""

    def due_migrations(self, epoch: int, history: SearchHistory) -> list[dict]:
        """New migration rounds ({"round", "epoch", "moves": [[idea_id, from, to], ...]}), given
        those already stored in `history.migrations`."""
        ...


class ParentSelector(Protocol):
    """Which scored ideas an exploit request refines or combines."""

    def select(self, history: SearchHistory, epoch: int, k: int) -> list[Scored]: ...


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
    # `{python}` of the commands: the environment's own interpreter ("": the runner's), and
    # the request it was built from (an `InterpreterRequest` as a dict), so a worker builds its own.
    python: str = ""
    interpreter: dict[str, Any] | None = None
    # Pre-flight: the patched codebase first runs at this short profile in job_dir/preflight
    # (keys: profile, train_command, eval_command, env, time_budget_s, grace_s, eval_timeout_s,
    # budget, threads, training_files, prepare_command, gpus); a failure there ends the job.
    # None: no pre-flight.
    preflight: dict[str, Any] | None = None


@dataclass(frozen=True)
class LostJob:
    """A job whose worker disappeared without reporting (killed, node lost)."""

    job_id: str
    attempt: int
    reason: str


@runtime_checkable
class Backend(Protocol):
    """Runs jobs on `slots` slots. `BackendBase` gives every member after `slots` a default;
    a backend states only where it differs (the local, Ray and Slurm backends inherit it)."""

    name: str
    slots: int
    # Set when a job ends, so the scheduler refills its slot at once; None: the scheduler polls.
    wakeup: threading.Event | None
    # Jobs run as processes of this machine: they die in a power cut with anything unsynced,
    # so their leases are committed without waiting for a disk sync.
    runs_here: bool
    # `start` may be called from several threads at once: a batch's jobs start together.
    concurrent_starts: bool
    # A job larger than `capacity()` waits this long for the cluster to grow before it is
    # refused (0: refused at once, for a backend that cannot grow).
    capacity_grace_s: float

    def capacity(self) -> dict[str, float]:
        """What the backend has in all: "slots", and "gpus" and "cpus" where it knows them."""
        ...

    def prepare(self, count: int, resources: Mapping[str, object]) -> int:
        """Jobs asking for `resources` are about to be queued: get `count` slots ready for
        them (Ray starts its worker processes ahead). Returns how many it got ready."""
        ...

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


class BackendBase:
    """The defaults of `Backend`'s optional members (documented there): polled, jobs off
    this machine, one start at a time, a fixed size, nothing to prepare."""

    name: str
    slots: int
    wakeup: threading.Event | None = None
    runs_here: bool = False
    concurrent_starts: bool = False
    capacity_grace_s: float = 0.0

    def capacity(self) -> dict[str, float]:
        return {"slots": float(self.slots)}

    def prepare(self, count: int, resources: Mapping[str, object]) -> int:
        return 0  # its jobs start at once: nothing to get ready
