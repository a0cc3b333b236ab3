"""A run's state in plain numbers, computed from its store: the one source for live
progress, `status` and the final table."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from groundwork.comparison import Comparison, Estimate, Verdict, run_noise_std
from groundwork.config import RunConfig
from groundwork.environments.manifest import Objective
from groundwork.llm.portfolio import ArmStats, arm_stats, gain_unit
from groundwork.noise_floor import load_noise_floor, write_noise_floor
from groundwork.records import TERMINAL_JOB_STATES, FailureCategory, IdeaState, PromptKind, Result, RunStatus, StrEnum
from groundwork.redaction import redact
from groundwork.runs import run_environment
from groundwork.search.budget import active_hours, device_hours, devices_per_job
from groundwork.store import RunStore

RAN = frozenset({None, FailureCategory.NO_METRIC, FailureCategory.METRIC_IMPLAUSIBLE, FailureCategory.EVAL_TAMPERED})

FLOOR_SD = 3.0  # a run's baseline this many floor sd from the floor's mean: the floor is stale


class RowStatus(StrEnum):
    """Where an idea stands in the views: ok (a valid metric), its result's failure
    category, or where it is in the pipeline (its job's state, else its idea's). The values
    are those of FailureCategory, JobState and IdeaState, so `RowStatus(str(x))` maps any."""

    OK = "ok"
    PROPOSED = "proposed"
    IMPLEMENTING = "implementing"  # proposed, its patch not made yet
    IMPLEMENTED = "implemented"
    QUEUED = "queued"
    LEASED = "leased"
    RUNNING = "running"
    REPAIRING = "repairing"  # its job failed and waits for a repair round
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PATCH_FAILED = "patch_failed"
    CRASHED = "crashed"
    TIMED_OUT = "timed_out"
    NO_METRIC = "no_metric"
    EVAL_TAMPERED = "eval_tampered"
    METRIC_IMPLAUSIBLE = "metric_implausible"
    ABORTED_TRAILING = "aborted_trailing"
    DIVERGED = "diverged"

    @classmethod
    def of_result(cls, result: Result) -> RowStatus:
        return cls.OK if result.valid else cls(str(result.failure))


PENDING = frozenset({RowStatus.IMPLEMENTING, RowStatus.QUEUED, RowStatus.LEASED, RowStatus.RUNNING})


@dataclass(frozen=True)
class IdeaRow:
    id: str
    epoch: int
    title: str
    kind: str
    origin: str
    status: RowStatus
    metric: float | None
    detail: str = ""
    cost_usd: float = 0.0  # its share of the ideation call plus its implementation calls
    implementer: str = ""
    replicates: tuple[float, ...] = ()  # metrics of its confirmation re-runs (fresh seeds) that ran
    replicates_pending: int = 0  # confirmation re-runs not finished yet

    @property
    def values(self) -> list[float]:
        return ([self.metric] if self.metric is not None else []) + list(self.replicates)

    @property
    def estimate(self) -> Estimate | None:
        """Mean over its runs, with a 95% confidence interval once it has two or more."""
        return Estimate.of(self.values) if self.values else None


@dataclass(frozen=True)
class Funnel:
    """Of the ideas whose fate is known: how far each got."""

    proposed: int = 0
    applied: int = 0
    preflight_passed: int = 0  # applied, and passed the pre-flight or ran without one
    ran: int = 0
    valid: int = 0
    repaired: int = 0  # of the valid: valid only thanks to a repair round (their first run failed)
    preflight_caught: int = 0  # stopped at pre-flight at least once (then repaired or not)

    @property
    def execution_rate(self) -> float | None:
        return self.valid / self.proposed if self.proposed else None


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: RunStatus
    environment: str
    profile: str
    metric: str
    direction: str
    origins: list[str]
    baseline: IdeaRow | None
    rows: list[IdeaRow]
    funnel: Funnel
    jobs: dict[str, int] = field(default_factory=dict)
    ideas_total: int = 0
    ideas_implemented: int = 0
    epoch: int = 0
    epochs: int = 0
    funnels: dict[str, Funnel] = field(default_factory=dict)  # per "ideator -> implementer"
    llm_spent_usd: float = 0.0  # paid to providers
    llm_replayed_usd: float = 0.0  # recorded cost of answers served from a recording
    llm_tokens: int = 0
    cost_by_epoch: dict[int, float] = field(default_factory=dict)
    max_dollars: float | None = None
    unpriced_calls: int = 0  # calls made to models missing from the price table (replays excluded)
    replayed_calls: int = 0  # answers served from a recording: no call made, nothing paid
    baseline_metrics: list[float] = field(default_factory=list)  # one per baseline seed that ran

    stored_noise_std: float | None = None  # from `groundwork env baseline`, when measured
    stored_noise: dict | None = None  # that floor as saved: mean, std, seeds, values, run
    search: str = "evolution"
    projection: Projection | None = None  # cost of the rest of the run, while it is not finished
    aborted_shares: list[float] = field(default_factory=list)  # early-aborted jobs: share of the compute they used
    portfolio: dict[str, list[ArmStats]] = field(default_factory=dict)  # per role with two or more models
    portfolio_unit: str = ""  # what an ideator's reward is counted in

    @property
    def compute_saved(self) -> float:
        """Early abort: job budgets not spent (one per job run to the end)."""
        return sum(1.0 - share for share in self.aborted_shares)

    @property
    def noise(self) -> tuple[float, float] | None:
        """Mean and sample standard deviation of the baseline over seeds (two or more)."""
        values = self.baseline_metrics
        if len(values) < 2:
            return None
        return statistics.fmean(values), statistics.stdev(values)

    def floor_warning(self) -> str | None:
        """A sentence when this run's own baselines fall outside the stored noise floor's
        mean +- FLOOR_SD sd: the floor then no longer describes this machine, data or code
        (under a compute budget the floor is seed variance only, so it should hold)."""
        floor = self.stored_noise
        if not floor or not self.baseline_metrics or not floor.get("std"):
            return None
        mean, std = float(floor["mean"]), float(floor["std"])
        outside = [v for v in self.baseline_metrics if abs(v - mean) > FLOOR_SD * std]
        if not outside:
            return None
        shown = ", ".join(f"{v:.4f}" for v in outside)
        return (
            f"this run's baseline {self.metric} ({shown}) lies outside the stored noise floor "
            f"{mean:.4f} +- {FLOOR_SD:g} x {std:.4f} ({floor.get('seeds', '?')} seeds, run {floor.get('run', '?')}): "
            f"the machine, the data or the code differ from when the floor was measured; "
            f"measure it again with `groundwork env baseline {self.environment} --profile {self.profile}`"
        )

    @property
    def noise_std(self) -> float | None:
        return run_noise_std(self.baseline_metrics, self.stored_noise_std)

    @property
    def noise_seeds(self) -> int | None:
        """How many seeds `noise_std` comes from (None: unknown)."""
        if self.noise:
            return len(self.baseline_metrics)
        seeds = (self.stored_noise or {}).get("seeds")
        return int(seeds) if isinstance(seeds, int) and self.stored_noise_std else None

    @cached_property
    def objective(self) -> Objective:
        return Objective(name=self.metric, direction=self.direction)

    @property
    def comparison(self) -> Comparison:
        """Rows against the baseline's seeds (its first run's when no seed's metric is in)."""
        single = [self.baseline.metric] if self.baseline is not None and self.baseline.metric is not None else []
        return Comparison(self.objective, self.baseline_metrics or single, self.noise_std)

    def margin(self, row: IdeaRow) -> float | None:
        """Two standard deviations of the difference between the row's mean and the
        baseline's, from the environment's noise (None while the noise is unknown)."""
        return self.comparison.margin(len(row.values))

    def portfolio_payoff_unit(self, role: str) -> str:
        """What a portfolio model's payoff counts per dollar: an ideator's gain, an implementer's valid runs."""
        return f"{self.portfolio_unit} gained/$" if role == "ideator" else "valid runs/$"

    def portfolio_share(self, role: str, arm: ArmStats) -> str:
        """A model's proposals among its role's, as `pulls/total = percent`."""
        total = sum(a.pulls for a in self.portfolio[role]) or 1
        return f"{arm.pulls}/{total} = {arm.pulls / total:.0%}"

    def verdict(self, row: IdeaRow) -> Verdict:
        """Better or worse only outside two standard deviations of the noise on the
        difference of the means; a gain inside it is never called an improvement."""
        return self.comparison.verdict(row.values)

    @property
    def best(self) -> IdeaRow | None:
        valid = [r for r in self.rows if r.status == RowStatus.OK and r.metric is not None]
        return self.comparison.best(valid, lambda r: r.values)

    @property
    def baseline_mean(self) -> float | None:
        return self.comparison.baseline_mean

    def improvement(self, row: IdeaRow) -> float | None:
        """Signed gain of the row's mean over the baseline's mean (positive is better)."""
        return self.comparison.gain(row.values)


def summarize(store: RunStore) -> RunSummary:
    info = store.run_info()
    config, meta = info.config, info.info
    ideas = store.ideas()
    results = store.results()
    all_jobs = store.jobs()
    jobs = {j.idea_id: j for j in all_jobs}
    patches: dict[str, list] = {}
    for patch in store.patches():
        patches.setdefault(patch.idea_id, []).append(patch)
    rows = []
    for idea in ideas:
        result = results.get(idea.id)
        job = jobs.get(idea.id)
        if result is not None:
            status = RowStatus.of_result(result)
            detail = _headline(result.detail)
        elif job is not None:
            status, detail = (RowStatus.REPAIRING if job.awaiting_repair else RowStatus(str(job.state))), ""
        else:
            proposed = idea.state == IdeaState.PROPOSED
            status, detail = (RowStatus.IMPLEMENTING if proposed else RowStatus(str(idea.state))), ""
        own = patches.get(idea.id, [])
        cost = float(idea.payload.get("ideation_cost_usd", 0.0)) + sum(p.cost_usd for p in own)
        rows.append(
            IdeaRow(
                idea.id,
                idea.epoch,
                idea.title,
                str(idea.prompt_kind),
                idea.origin,
                status,
                result.metric if result is not None and result.valid else None,
                detail,
                cost,
                own[-1].implementer if own else "",
            )
        )
    baselines = [r for r in rows if r.kind == PromptKind.BASELINE]
    baseline = baselines[0] if baselines else None
    others = _with_replicates(ideas, rows)
    searched = [i for i in ideas if i.prompt_kind not in (PromptKind.BASELINE, PromptKind.CONFIRM)]
    settled = [i for i in searched if i.id in results]
    funnel = _funnel([results[i.id] for i in settled])
    by_pair: dict[str, list] = {}
    for row in others:
        if row.id in results:
            by_pair.setdefault(f"{row.origin} -> {row.implementer}", []).append(results[row.id])
    calls = store.llm_calls()
    cost_by_epoch: dict[int, float] = {}
    for call in calls:
        cost_by_epoch[call["epoch"] or 0] = cost_by_epoch.get(call["epoch"] or 0, 0.0) + (call["cost_usd"] or 0.0)
    counts: dict[str, int] = {}
    for job in jobs.values():
        counts[str(job.state)] = counts.get(str(job.state), 0) + 1
    manifest = run_environment(store).manifest
    stored_floor = load_noise_floor(meta["environment"], meta["profile"], config.get("budget"))
    portfolio = {
        role: arm_stats(store, role, arms, manifest.metric, (stored_floor or {}).get("std"))
        for role, arms in (("ideator", config.get("ideator_llms")), ("implementer", config.get("implementer_llms")))
        if arms
    }
    baseline_values = [r.metric for r in rows if r.kind == PromptKind.BASELINE and r.metric is not None]
    unit = gain_unit(baseline_values, (stored_floor or {}).get("std"))
    return RunSummary(
        run_id=info.id,
        status=info.status,
        environment=meta["environment"],
        profile=meta["profile"],
        metric=manifest.metric.name,
        direction=manifest.metric.direction,
        origins=sorted({r.origin for r in others}),
        baseline=baseline,
        rows=others,
        funnel=funnel,
        jobs=counts,
        ideas_total=len(others),
        ideas_implemented=sum(1 for i in searched if i.state != IdeaState.PROPOSED),
        epoch=max((i.epoch for i in ideas), default=0),
        epochs=int(config.get("epochs", 0)),
        funnels={pair: _funnel(rs) for pair, rs in by_pair.items()},
        llm_spent_usd=sum(c["cost_usd"] or 0.0 for c in calls if not c["replayed"]),
        llm_replayed_usd=sum(c["cost_usd"] or 0.0 for c in calls if c["replayed"]),
        llm_tokens=sum(sum(json.loads(c["usage"]).values()) for c in calls),
        cost_by_epoch=cost_by_epoch,
        max_dollars=config.get("max_dollars"),
        unpriced_calls=sum(1 for c in calls if c["cost_usd"] is None and not c["replayed"]),
        replayed_calls=sum(1 for c in calls if c["replayed"]),
        baseline_metrics=[r.metric for r in baselines if r.metric is not None],
        stored_noise_std=(stored_floor or {}).get("std"),
        stored_noise=stored_floor,
        search=str(config.get("search", "evolution")),
        projection=None if info.status == RunStatus.FINISHED else project(store, config, all_jobs, searched, calls),
        aborted_shares=[
            float(results[i.id].flags.get("aborted_at", 0.0))
            for i in settled
            if results[i.id].failure == FailureCategory.ABORTED_TRAILING
        ],
        portfolio=portfolio,
        portfolio_unit=f"noise sd ({unit:.4g})" if unit else f"{manifest.metric.name} (noise unknown)",
    )


def _with_replicates(ideas: list, rows: list[IdeaRow]) -> list[IdeaRow]:
    """The search's rows, each with the metrics of its confirmation re-runs folded in."""
    kinds = {i.id: i for i in ideas}
    replicates: dict[str, list[IdeaRow]] = {}
    for row in rows:
        if row.kind == PromptKind.CONFIRM:
            replicates.setdefault(kinds[row.id].parents[0], []).append(row)
    out = []
    for row in rows:
        if row.kind in (PromptKind.BASELINE, PromptKind.CONFIRM):
            continue
        reps = replicates.get(row.id, [])
        values = tuple(r.metric for r in reps if r.metric is not None)
        pending = sum(1 for r in reps if r.status in PENDING)
        out.append(replace(row, replicates=values, replicates_pending=pending))
    return out


@dataclass(frozen=True)
class Projection:
    """What the rest of a run will cost, from what it has cost so far."""

    jobs_left: int  # ideas not run yet, plus expected confirmation re-runs
    ideas_left: int
    gpu_hours_used: float
    gpu_hours_left: float
    hours_used: float  # the controller's wall-clock time so far
    hours_left: float
    dollars_left: float | None  # None: no model calls so far
    seconds_per_job: float
    caps: dict[str, float]  # the caps in force: max_dollars, max_gpu_hours, max_hours
    models: bool = False  # ideas or diffs come from models: their calls are still to come


def project(store: RunStore, config: dict, jobs: list, searched: list, calls: list[dict]) -> Projection:
    """Project from the mean job time and the mean LLM spend per idea so far."""
    profile = run_environment(store).profile(config.get("profile"))
    gpus = profile.resources.gpus
    ideas_planned = int(config.get("epochs", 0)) * int(config.get("ideas_per_epoch", 1))
    ideas_left = max(0, ideas_planned - len(searched))
    unfinished = sum(1 for j in jobs if j.state not in TERMINAL_JOB_STATES)
    confirm_seeds = int(config.get("confirm_seeds", 0))
    epochs_left = math.ceil(ideas_left / max(1, int(config.get("ideas_per_epoch", 1))))
    confirmations = confirm_seeds * int(config.get("confirm_top", 2)) * epochs_left if confirm_seeds else 0
    jobs_left = ideas_left + unfinished + confirmations
    times = [j.ended_at - j.started_at for j in jobs if j.started_at is not None and j.ended_at is not None]
    per_job = statistics.fmean(times) if times else profile.time_budget_s + profile.grace_s
    slots = max(1, int(config.get("slots", 1)))
    spent = sum(c["cost_usd"] or 0.0 for c in calls if not c["replayed"])
    dollars_left = (spent / len(searched) * ideas_left if searched else 0.0) if calls else None
    caps = {k: float(config[k]) for k in ("max_dollars", "max_gpu_hours", "max_hours") if config.get(k) is not None}
    events = store.events()
    return Projection(
        jobs_left=jobs_left,
        ideas_left=ideas_left,
        gpu_hours_used=device_hours(events, gpus),
        gpu_hours_left=jobs_left * per_job * devices_per_job(gpus) / 3600.0,
        hours_used=active_hours(events),
        hours_left=math.ceil(jobs_left / slots) * per_job / 3600.0,
        dollars_left=dollars_left,
        seconds_per_job=per_job,
        caps=caps,
        models=RunConfig.model_validate(config).calls_models,
    )


def _funnel(results: list[Result]) -> Funnel:
    return Funnel(
        proposed=len(results),
        applied=sum(1 for r in results if r.failure != FailureCategory.PATCH_FAILED),
        preflight_passed=sum(
            1 for r in results if r.failure != FailureCategory.PATCH_FAILED and r.flags.get("stage") != "preflight"
        ),
        ran=sum(1 for r in results if r.failure in RAN and r.flags.get("stage") != "preflight"),
        valid=sum(1 for r in results if r.valid),
        repaired=sum(1 for r in results if r.valid and r.repair_rounds > 0),
        preflight_caught=sum(1 for r in results if r.preflight_stops > 0),
    )


def _headline(detail: str) -> str:
    """A failure in one line: its first line, and its last (for a crash, the exception)."""
    lines = [line.strip() for line in redact(detail).strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} ... {lines[-1]}"


def save_noise_floor(summary: RunSummary, budget: str | None = None) -> Path:
    """Store the baseline's spread over seeds where reports and search can find it, with
    the budget it was measured under (a time budget's floor includes the machine's load)."""
    mean, std = summary.noise or (None, None)
    if mean is None:
        raise ValueError("the noise floor needs at least two baseline runs that produced a metric")
    return write_noise_floor(
        {
            "environment": summary.environment,
            "profile": summary.profile,
            "metric": summary.metric,
            "seeds": len(summary.baseline_metrics),
            "mean": mean,
            "std": std,
            "values": summary.baseline_metrics,
            "run": summary.run_id,
            "budget": budget or "time",
        }
    )
