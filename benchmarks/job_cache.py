"""A memo of executed jobs for benchmarks that run many research runs on one environment.

Under a compute budget (training paced by tokens or steps, never by the clock) a job's
metric is a function of what it runs: the patched codebase, the locked files, the
profile's settings (its env: profile name, token or step caps, data folders), the seed and
the budget. Two runs that propose the same edit with the same seed would train the same
model twice; `CachingBackend` runs it once and hands the second run the first one's
outcome, marked `flags.job_cache` (with the job it came from) and given a `job-cache.json`
in its job folder, so every served result can be told from an executed one.

Only valid outcomes are kept: a failure may come from the moment (a timeout on a busy
machine), and a failed job is cheap to run again. A job without a codebase hash is never
served. Nor is one the clock may have paced: unless the job's env says its budget is a
compute budget (GROUNDWORK_BUDGET=compute), an outcome is kept only when training ended
well inside the time budget (`CLOCK_MARGIN`), that is when a token or step cap ended it,
not the clock. Under the clock the metric follows the machine's load, and a memo would
freeze one moment's load into every run that shares the job.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict
from pathlib import Path

from groundwork.execution.runner import OUTCOME_FILE
from groundwork.files import write_atomic
from groundwork.protocols import Backend, BackendBase, JobSpec, LostJob
from groundwork.records import JobOutcome

CLOCK_MARGIN = 0.8  # training that ended before this share of the time budget was not paced by the clock
PROVENANCE_FILE = "job-cache.json"  # in a served job's folder: where its outcome came from
# What decides a job's outcome. Left out: where it runs (job folder, slot, GPU ids), its
# name and attempt, the run's snapshot folder (its content is in the hashes) and the diff's
# path (the patched codebase's hash covers it).
KEY_FIELDS = (
    "environment",
    "codebase_hash",
    "locked_hashes",
    "train_command",
    "eval_command",
    "time_budget_s",
    "grace_s",
    "eval_timeout_s",
    "env",  # profile name, token/step caps, data folders, GROUNDWORK_SEED
    "metric_name",
    "result_file",
    "plausible_range",
    "threads",
    "gpus",
    "training_files",
    "sandbox",
    "memory_limit_mb",
)


def paced_by_compute(outcome: JobOutcome, spec: JobSpec) -> bool:
    """Whether the job's training was ended by compute (tokens, steps), not by the clock."""
    if spec.env.get("GROUNDWORK_BUDGET") == "compute":
        return True
    seconds = outcome.flags.get("train_seconds")
    return isinstance(seconds, (int, float)) and seconds < CLOCK_MARGIN * spec.time_budget_s


def job_key(spec: JobSpec) -> str | None:
    """The memo key of a job; None for a job that names no codebase hash."""
    if not spec.codebase_hash:
        return None
    fields = asdict(spec)
    text = json.dumps({name: fields[name] for name in KEY_FIELDS}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


class JobCache:
    """Valid outcomes by job key, one JSON file each under `root` (atomic writes, so a
    benchmark killed mid-write leaves the old state or the new)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, outcome: JobOutcome, spec: JobSpec) -> None:
        if outcome.failure is not None or not paced_by_compute(outcome, spec) or self._path(key).is_file():
            return
        entry = {"key": key, "job_id": spec.job_id, "job_dir": spec.job_dir, "outcome": outcome.model_dump(mode="json")}
        write_atomic(self._path(key), json.dumps(entry, indent=1), sync=False)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.json")) if self.root.is_dir() else 0


class CachingBackend(BackendBase):
    """A backend that serves a job from the memo when an identical one already ran, and
    otherwise runs it on `inner` and memoises its valid outcome."""

    def __init__(self, inner: Backend, cache: JobCache):
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.slots = inner.slots
        self.runs_here = inner.runs_here
        self.concurrent_starts = inner.concurrent_starts
        self.wakeup = inner.wakeup or threading.Event()
        self.served = 0  # jobs this backend served from the memo
        self._lock = threading.Lock()
        self._ready: list[JobOutcome] = []  # served outcomes, reported by the next poll
        self._specs: dict[str, JobSpec] = {}  # jobs running on `inner`, to memoise their outcome

    def start(self, spec: JobSpec) -> str:
        key = job_key(spec)
        entry = self.cache.get(key) if key else None
        if entry is None:
            with self._lock:
                self._specs[spec.job_id] = spec
            return self.inner.start(spec)
        now = time.time()
        source = {"key": key, "job_id": entry["job_id"], "job_dir": entry["job_dir"]}
        cached = JobOutcome.model_validate(entry["outcome"])
        outcome = cached.model_copy(
            update={
                "job_id": spec.job_id,
                "attempt": spec.attempt,
                "started_at": now,
                "ended_at": now,
                "flags": {**cached.flags, "job_cache": source},
            }
        )
        # The job folder holds its outcome like an executed job's: a controller restarted
        # before it was recorded adopts it through the inner backend's `reattach`.
        job_dir = Path(spec.job_dir)
        write_atomic(job_dir / PROVENANCE_FILE, json.dumps(source, indent=1), sync=False)
        write_atomic(job_dir / OUTCOME_FILE, outcome.model_dump_json(), sync=False)
        with self._lock:
            self._ready.append(outcome)
            self.served += 1
        self.wakeup.set()
        return f"served from the job cache (as {entry['job_id']})"

    def poll(self) -> list[JobOutcome | LostJob]:
        reports = self.inner.poll()
        with self._lock:
            served, self._ready = self._ready, []
            for report in reports:
                spec = self._specs.pop(report.job_id, None)
                key = job_key(spec) if spec is not None else None
                if key and isinstance(report, JobOutcome) and report.attempt == spec.attempt:
                    self.cache.put(key, report, spec)
        return [*reports, *served]

    def reattach(self, spec: JobSpec) -> bool:
        adopted = self.inner.reattach(spec)
        if adopted and not (Path(spec.job_dir) / PROVENANCE_FILE).is_file():
            with self._lock:
                self._specs[spec.job_id] = spec
        return adopted

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._specs.pop(job_id, None)
            self._ready = [o for o in self._ready if o.job_id != job_id]
        self.inner.cancel(job_id)

    def shutdown(self) -> None:
        self.inner.shutdown()


def served_jobs(run_dir: Path) -> int:
    """How many of a run's jobs were served from a job cache (from their folders, so it
    counts across resumes)."""
    return sum(1 for _ in (Path(run_dir) / "jobs").glob(f"*/attempt-*/{PROVENANCE_FILE}"))
