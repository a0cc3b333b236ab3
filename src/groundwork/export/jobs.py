"""What a tracker receives for one job, as plain data: its parameters, final metrics,
training curve, tags, and the files to attach (the idea, its diff, the job's log)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from groundwork.analysis.details import IdeaDetail, RunDetails
from groundwork.redaction import redact


@dataclass
class JobRecord:
    job_id: str
    name: str  # "<run id>/<idea id>"
    group: str  # the run id: a tracker groups a run's jobs by it
    params: dict[str, str | int | float]
    metrics: dict[str, float]  # final values
    curve: list[tuple[int, dict[str, float]]]  # (step, values) in order
    tags: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # artifact name -> text


def _numbers(values: dict) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def job_records(details: RunDetails) -> list[JobRecord]:
    """One record per job of the run (ideas whose patch never applied have no job)."""
    return [_record(details, d) for d in details.all if d.job is not None]


def _record(details: RunDetails, d: IdeaDetail) -> JobRecord:
    s = details.summary
    job, result = d.job, d.result
    assert job is not None
    params: dict[str, str | int | float] = {
        "run_id": s.run_id,
        "environment": s.environment,
        "profile": s.profile,
        "idea_id": d.idea.id,
        "title": d.idea.title,
        "epoch": d.idea.epoch,
        "prompt_kind": d.row.kind,
        "category": d.category if d in details.ideas else "baseline",
        "origin": d.idea.origin,
        "implementer": d.row.implementer or "-",
        "parents": ",".join(d.idea.parents) or "-",
        "job_attempt": job.attempt,
        "backend": job.backend,
        "gpus": d.gpus,
        "cpus": d.cpus,
        "seed": job.seed if job.seed is not None else "run seed",
    }
    metrics = _numbers(result.metrics) if result else {}
    if result is not None and result.metric is not None:
        metrics[s.metric] = float(result.metric)
    is_baseline = d is details.baseline or d in details.extra_baselines
    gain = None if is_baseline else s.improvement(d.row)
    if gain is not None:
        metrics["gain_vs_baseline"] = gain
    if d.wall_seconds:
        metrics["wall_seconds"] = d.wall_seconds
    curve = []
    for n, point in enumerate(result.curve if result else []):
        values = _numbers({k: v for k, v in point.items() if k != "step"})
        step = point.get("step", n)
        if values:
            curve.append((int(step) if isinstance(step, (int, float)) else n, values))
    curve.sort(key=lambda p: p[0])
    tags = {
        "groundwork.run": s.run_id,
        "groundwork.status": str(d.row.status),
        "groundwork.job_state": str(job.state),
        "groundwork.verdict": str(s.verdict(d.row)) if result is not None and result.valid and not is_baseline else "-",
        "groundwork.flags": "; ".join(d.flags) or "none",
    }
    files = {
        "idea.md": f"# {d.idea.title}\n\n{d.idea.text}\n"
        + (f"\n## Thinking\n\n{d.idea.thinking}\n" if d.idea.thinking else ""),
        "patch.diff": d.diff,
        "result.json": redact(json.dumps(result.model_dump(mode="json") if result else {}, indent=2)),
    }
    log = details.run_dir / job.job_dir / "job.log" if job.job_dir else None
    if log is not None and log.is_file():  # secrets a job printed never leave for a tracker
        files["job.log"] = redact(log.read_text(encoding="utf-8", errors="replace"))
    return JobRecord(
        job.id,
        f"{s.run_id}/{d.idea.id}",
        s.run_id,
        params,
        metrics,
        curve,
        tags,
        files,
    )
