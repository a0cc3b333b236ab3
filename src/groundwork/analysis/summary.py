"""A run's state in plain numbers, computed from its store: the one source for live
progress, `status` and the final table."""

from __future__ import annotations

from dataclasses import dataclass, field

from groundwork.records import FailureCategory, IdeaState, JobState, PromptKind
from groundwork.runs import run_environment
from groundwork.store import RunStore

RAN = frozenset({None, FailureCategory.NO_METRIC, FailureCategory.METRIC_IMPLAUSIBLE, FailureCategory.EVAL_TAMPERED})


@dataclass(frozen=True)
class IdeaRow:
    id: str
    epoch: int
    title: str
    kind: str
    origin: str
    status: str             # ok, a failure category, or where it is in the pipeline
    metric: float | None
    detail: str = ""


@dataclass(frozen=True)
class Funnel:
    """Of the ideas whose fate is known: how far each got."""

    proposed: int = 0
    applied: int = 0
    ran: int = 0
    valid: int = 0

    @property
    def execution_rate(self) -> float | None:
        return self.valid / self.proposed if self.proposed else None


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str
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

    @property
    def best(self) -> IdeaRow | None:
        valid = [r for r in self.rows if r.status == "ok" and r.metric is not None]
        if not valid:
            return None
        sign = 1 if self.direction == "minimize" else -1
        return min(valid, key=lambda r: sign * r.metric)  # type: ignore[operator]

    def improvement(self, row: IdeaRow) -> float | None:
        """Signed gain of `row` over the baseline (positive is better)."""
        if row.metric is None or self.baseline is None or self.baseline.metric is None:
            return None
        gain = self.baseline.metric - row.metric
        return gain if self.direction == "minimize" else -gain


def summarize(store: RunStore) -> RunSummary:
    info = store.run_info()
    config, meta = info["config"], info["info"]
    ideas = store.ideas()
    results = store.results()
    jobs = {j.idea_id: j for j in store.jobs()}
    rows = []
    for idea in ideas:
        result = results.get(idea.id)
        job = jobs.get(idea.id)
        if result is not None:
            status = "ok" if result.valid else str(result.failure)
            detail = result.detail.strip().splitlines()[0] if result.detail.strip() else ""
        elif job is not None:
            status, detail = str(job.state), ""
        else:
            status, detail = ("implementing" if idea.state == IdeaState.PROPOSED else str(idea.state)), ""
        rows.append(IdeaRow(idea.id, idea.epoch, idea.title, str(idea.prompt_kind), idea.origin, status,
                            result.metric if result is not None and result.valid else None, detail))
    baseline = next((r for r in rows if r.kind == PromptKind.BASELINE), None)
    others = [r for r in rows if r.kind != PromptKind.BASELINE]
    settled = [i for i in ideas if i.id in results and i.prompt_kind != PromptKind.BASELINE]
    funnel = Funnel(
        proposed=len(settled),
        applied=sum(1 for i in settled if results[i.id].failure != FailureCategory.PATCH_FAILED),
        ran=sum(1 for i in settled if results[i.id].failure in RAN),
        valid=sum(1 for i in settled if results[i.id].valid),
    )
    counts: dict[str, int] = {}
    for job in jobs.values():
        counts[str(job.state)] = counts.get(str(job.state), 0) + 1
    manifest = run_environment(store).manifest
    return RunSummary(
        run_id=info["id"], status=info["status"], environment=meta["environment"], profile=meta["profile"],
        metric=manifest.metric.name, direction=manifest.metric.direction,
        origins=sorted({r.origin for r in others}), baseline=baseline, rows=others, funnel=funnel, jobs=counts,
        ideas_total=len(others),
        ideas_implemented=sum(1 for i in ideas if i.state != IdeaState.PROPOSED and i.prompt_kind != PromptKind.BASELINE),
        epoch=max((i.epoch for i in ideas), default=0), epochs=int(config.get("epochs", 0)),
    )
