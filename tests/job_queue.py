"""Test helper: a real run store with jobs queued directly (no ideator or implementer),
and the JobSpec factory a scheduler needs to run them on the toy environment."""

from __future__ import annotations

import json
import time
from pathlib import Path

from groundwork.patch.codebase import file_sha256
from groundwork.protocols import JobSpec
from groundwork.records import Idea, Job, Patch, PatchStatus, PromptKind
from groundwork.store import RunStore

# Training that says which GPUs it was given, then runs the toy environment's train.py.
SHOW_GPUS = (
    "import os, runpy; print('GPUS=' + os.environ['CUDA_VISIBLE_DEVICES'], flush=True); "
    "runpy.run_path('train.py', run_name='__main__')"
)


def queue_jobs(run_dir: Path, resources: dict[str, dict], run_id: str = "r") -> RunStore:
    """One idea and one queued job per entry of `resources` (job id -> {"gpus": .., "cpus": ..}), in order."""
    store = RunStore.create(run_dir, run_id, {}, {})
    ideas = [
        Idea(id=name, epoch=1, index=i, title=name, text="t", prompt_kind=PromptKind.SIMPLE, origin="test")
        for i, name in enumerate(resources, start=1)
    ]
    store.add_epoch(1, ideas)
    for name, res in resources.items():
        patch = Patch(
            id=f"{name}.p1", idea_id=name, attempt=1, implementer="test", status=PatchStatus.APPLIED,
            diff_path="", diff_sha256="",
        )  # fmt: skip
        store.record_implementation(
            name, [patch], Job(id=name, idea_id=name, patch_id=patch.id, backend="test", resources=res), None
        )
    return store


def spec_factory(run_dir: Path, env_dir: Path, sleep_s=0.3, **overrides):
    """`sleep_s`: seconds of toy training, or a function of the job giving them."""
    run_dir = Path(run_dir).resolve()
    baseline = Path(env_dir).resolve() / "baseline"

    def make(job: Job) -> JobSpec:
        sleep = sleep_s(job) if callable(sleep_s) else sleep_s
        values = dict(
            job_id=job.id,
            attempt=job.attempt,
            job_dir=str(run_dir / job.job_dir),
            baseline_dir=str(baseline),
            diff_path="",
            codebase_hash="",
            locked_hashes={"evaluate.py": file_sha256(baseline / "evaluate.py")},
            train_command=["{python}", "-c", SHOW_GPUS],
            eval_command=["{python}", "evaluate.py"],
            time_budget_s=60.0,
            grace_s=2.0,
            eval_timeout_s=30.0,
            env={"TOY_SLEEP_S": str(sleep)},
            metric_name="loss",
            result_file="result.json",
            plausible_range=(0.0, 100.0),
            slot=job.slot or 0,
            threads=int(job.resources.get("cpus", 1)),
            gpu_ids=[],
            gpus=int(job.resources.get("gpus", 0)),
        )
        values.update(overrides)
        return JobSpec(**values)

    return make


def heartbeat_pid(run_dir: Path, job_rel: str, timeout: float) -> int:
    """The pid of a remote job's runner, from its first heartbeat (the job is running)."""
    path = run_dir / job_rel / "heartbeat.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file():
            try:
                return json.loads(path.read_text())["pid"]
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.2)
    raise AssertionError(f"no heartbeat from {job_rel}")
