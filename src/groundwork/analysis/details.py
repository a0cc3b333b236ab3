"""Everything the report, the dashboard and the tracker export show about a run, read
once from its store: the summary plus, per idea, its text, thinking, diff, curve,
integrity flags, category and compute."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from groundwork.analysis.categories import IdeaText, label_ideas
from groundwork.analysis.integrity import integrity_flags
from groundwork.analysis.summary import IdeaRow, RowStatus, RunSummary, summarize
from groundwork.llm.base import LLM
from groundwork.protocols import ideation_call_key
from groundwork.records import Idea, Job, Patch, PatchStatus, PromptKind, Result
from groundwork.store import RunStore


@dataclass
class IdeaDetail:
    row: IdeaRow
    idea: Idea
    result: Result | None
    job: Job | None
    patches: list[Patch]
    diff: str = ""  # the applied patch (or the last attempt when none applied)
    category: str = "other"
    flags: list[str] = field(default_factory=list)  # reward-hacking / integrity flags
    order: int | None = None  # position among results in the order they arrived
    thinking_tokens: int = 0  # of the ideation call that proposed it (reasoning models may hide the text)

    @property
    def settled(self) -> bool:
        return self.result is not None

    @property
    def valid(self) -> bool:
        return self.result is not None and self.result.valid

    @property
    def idea_words(self) -> int:
        return len(self.idea.text.split())

    @property
    def thinking_words(self) -> int:
        return len(self.idea.thinking.split())

    @property
    def wall_seconds(self) -> float:
        """Time the job held its resources (all attempts' last start to end)."""
        job = self.job
        if job is None or job.started_at is None or job.ended_at is None:
            return 0.0
        return max(0.0, job.ended_at - job.started_at)

    @property
    def gpus(self) -> int:
        return int((self.job.resources if self.job else {}).get("gpus", 0) or 0)

    @property
    def cpus(self) -> int:
        return int((self.job.resources if self.job else {}).get("cpus", 1) or 1)


@dataclass
class RunDetails:
    summary: RunSummary
    run_dir: Path
    baseline: IdeaDetail | None
    ideas: list[IdeaDetail]  # non-baseline ideas, in epoch order
    categories_by: str = "keywords"
    extra_baselines: list[IdeaDetail] = field(default_factory=list)  # further seeds

    @property
    def all(self) -> list[IdeaDetail]:
        return ([self.baseline] if self.baseline else []) + self.extra_baselines + self.ideas

    @property
    def gpu_hours(self) -> float:
        return sum(d.wall_seconds * d.gpus for d in self.all) / 3600

    @property
    def cpu_hours(self) -> float:
        """Hours of CPU-only jobs (jobs with GPUs count as GPU-hours instead)."""
        return sum(d.wall_seconds * d.cpus for d in self.all if d.gpus == 0) / 3600

    def top(self, k: int = 5) -> list[IdeaDetail]:
        valid = [d for d in self.ideas if d.valid]
        return sorted(valid, key=lambda d: self.summary.objective.rank_key(d.result.metric))[:k]  # type: ignore[union-attr,arg-type]


def load_details(store: RunStore, labeller: LLM | None = None) -> RunDetails:
    summary = summarize(store)
    results = store.results()
    jobs = {j.idea_id: j for j in store.jobs()}
    patches: dict[str, list[Patch]] = {}
    for patch in store.patches():
        patches.setdefault(patch.idea_id, []).append(patch)
    rows = {r.id: r for r in ([summary.baseline] if summary.baseline else []) + summary.rows}
    order = {idea_id: n for n, idea_id in enumerate(sorted(results, key=lambda i: results[i].created_at))}
    details = []
    for idea in store.ideas():
        row = rows.get(idea.id) or _extra_row(idea, results.get(idea.id), jobs.get(idea.id))
        own = patches.get(idea.id, [])
        # The last applied patch is the one that ran last (a repair round's supersedes the first).
        chosen = next((p for p in reversed(own) if p.status == PatchStatus.APPLIED), own[-1] if own else None)
        details.append(
            IdeaDetail(row, idea, results.get(idea.id), jobs.get(idea.id), own, _read_diff(store.run_dir, chosen))
        )
        details[-1].order = order.get(idea.id)
    thinking = _ideation_thinking_tokens(store)
    for d in details:
        key = ideation_call_key(d.idea.epoch, d.idea.prompt_kind, d.idea.payload.get("island"))
        d.thinking_tokens = thinking.get(key, 0)
    baselines = [d for d in details if d.idea.prompt_kind == PromptKind.BASELINE]
    ideas = [d for d in details if d.idea.prompt_kind != PromptKind.BASELINE]
    baseline = next((d for d in baselines if d.row is summary.baseline), baselines[0] if baselines else None)
    labels, source = label_ideas([IdeaText(d.idea.id, d.idea.title, d.idea.text) for d in ideas], labeller)
    for d in ideas:
        d.category = labels.get(d.idea.id, "other")
    base_result = baseline.result if baseline else None
    for d in details:
        if d.result is not None and d is not baseline:
            d.flags = integrity_flags(
                d.result, summary.metric, summary.direction, base_result, summary.noise_std, summary.noise_seeds
            )
        elif d.result is not None:
            d.flags = integrity_flags(d.result, summary.metric, summary.direction)
    return RunDetails(summary, store.run_dir, baseline, ideas, source, [d for d in baselines if d is not baseline])


def _extra_row(idea: Idea, result: Result | None, job: Job | None) -> IdeaRow:
    """A row for a further baseline seed (the summary keeps only the first baseline's)."""
    if result is not None:
        status = RowStatus.of_result(result)
    else:
        status = RowStatus(str(job.state) if job is not None else str(idea.state))
    metric = result.metric if result is not None and result.valid else None
    return IdeaRow(idea.id, idea.epoch, idea.title, str(idea.prompt_kind), idea.origin, status, metric)


def _ideation_thinking_tokens(store: RunStore) -> dict[str, int]:
    """Thinking tokens of each ideation call, by its call key (the ideas of one call share it)."""
    tokens: dict[str, int] = {}
    for call in store.llm_calls("ideator"):
        usage = json.loads(call["usage"] or "{}")
        tokens[call["call_key"]] = tokens.get(call["call_key"], 0) + int(usage.get("thinking_tokens", 0))
    return tokens


def _read_diff(run_dir: Path, patch: Patch | None) -> str:
    if patch is None or not patch.diff_path:
        return ""
    path = run_dir / patch.diff_path
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
