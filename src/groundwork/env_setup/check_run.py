"""`groundwork env check --run`: the baseline run once at a short budget, training and
evaluation, with what each stage did and how long it took, so that the first real test of
a new environment is not a full baseline."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from groundwork.environments.registry import Environment, ResolvedProfile
from groundwork.records import FailureCategory


@dataclass
class Stage:
    name: str
    seconds: float
    detail: str
    ok: bool = True


@dataclass
class CheckReport:
    stages: list[Stage] = field(default_factory=list)
    metric: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def folder_size(path: Path) -> tuple[int, int]:
    """(files, bytes) under a folder."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def _size_text(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def interpreter_stage(env: Environment) -> Stage | None:
    """The environment's own interpreter, built (or found in the cache); None: it has none."""
    request = env.interpreter_request()
    if request is None:
        return None
    started = time.monotonic()
    try:
        built = env.interpreter()
    except RuntimeError as exc:
        return Stage("interpreter", time.monotonic() - started, str(exc), ok=False)
    locked = len([line for line in built.lock.splitlines() if line and not line.startswith("#")])
    layered = "; Groundwork's own packages inherited" if request.inherit_packages else ""
    return Stage("interpreter", time.monotonic() - started, f"{built.python} ({built.tool}, {locked} locked{layered})")


def prepare_stage(env: Environment, profile: ResolvedProfile) -> tuple[Path | None, Stage]:
    started = time.monotonic()
    where = env.data_dir(profile)
    try:
        data = env.prepare(profile, quiet=True)
    except RuntimeError as exc:
        return None, Stage("prepare", time.monotonic() - started, f"into {where}: {exc}", ok=False)
    files, size = folder_size(data)
    view = env.training_data_dir(data)
    seen = f"; training sees {folder_size(view)[0]} of them" if view != data else ""
    return data, Stage("prepare", time.monotonic() - started, f"{data}: {files} files, {_size_text(size)}{seen}")


def _written_keys(job_dir: Path, result_file: str) -> list[str]:
    """The keys the evaluation wrote, when it wrote a result file (to name the right metric)."""
    try:
        result = json.loads((job_dir / "work" / result_file).read_text())
    except (OSError, ValueError):
        return []
    return sorted(k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool))


def check_run(env: Environment, profile: ResolvedProfile, budget_s: float, job_dir: Path | None = None) -> CheckReport:
    """Prepare the data, then train and evaluate the unmodified baseline once under a time
    budget of `budget_s` seconds; report each stage and every problem found."""
    from groundwork.execution.job_spec import environment_job_spec
    from groundwork.execution.runner import LOG_FILE, JobRunner

    report = CheckReport()
    built = interpreter_stage(env)
    if built is not None:
        report.stages.append(built)
        if not built.ok:
            report.problems.append(f"the environment's interpreter cannot be built: {built.detail}")
            return report
    data, stage = prepare_stage(env, profile)
    report.stages.append(stage)
    if data is None:
        report.problems.append(f"data preparation failed: {stage.detail}")
        return report
    job_dir = job_dir or Path(tempfile.mkdtemp(prefix=f"groundwork-check-{env.name}-"))
    job_dir.mkdir(parents=True, exist_ok=True)
    spec = environment_job_spec(
        env, profile, data, job_dir, job_id="check", seed=0, time_budget_s=budget_s, memory_limit_mb=0
    )
    outcome = JobRunner(spec).run()
    total = outcome.ended_at - outcome.started_at
    train_s = float(outcome.flags.get("train_seconds", total))
    metric = env.manifest.metric
    failure = outcome.failure.value if outcome.failure else None
    trained = "train_seconds" in outcome.flags and not outcome.detail.startswith("training")
    report.stages.append(
        Stage("train", train_s, f"{' '.join(env.manifest.run.train)} (budget {budget_s:g} s)", trained)
    )
    if failure is None:
        report.metric = outcome.metric
        report.stages.append(
            Stage("evaluate", max(0.0, total - train_s), f"{metric.name} = {outcome.metric:.6g}, in the plausible "
                  f"range {list(metric.plausible_range)}")
        )  # fmt: skip
        return report
    keys = _written_keys(job_dir, metric.result_file)
    if outcome.failure == FailureCategory.NO_METRIC and keys:
        report.problems.append(
            f"the evaluation wrote {', '.join(keys)} but not {metric.name!r}: set [metric] name to the key it writes"
        )
    report.problems.append(f"{failure}: {outcome.detail.strip()}\n(log: {job_dir / LOG_FILE})")
    return report
