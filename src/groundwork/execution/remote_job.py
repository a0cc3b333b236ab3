"""The job contract on a machine that shares nothing with the controller but the
artifact store (a Ray worker, a Slurm node).

The worker fetches the baseline snapshot and the diff from the store into a scratch
folder, runs the ordinary job runner there (same phases, checks and limits as locally),
writes a heartbeat to the store while it runs, and uploads the job's log and outcome to
the job's folder in the store. Only a spec and small JSON cross the wire, never a codebase.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from groundwork.execution.processes import die_with_parent
from groundwork.execution.runner import LOG_FILE, OUTCOME_FILE, SPEC_FILE, save_spec
from groundwork.execution.worker_data import WorkerDataError, ensure_data, worker_interpreter
from groundwork.protocols import JobSpec
from groundwork.records import FailureCategory, JobOutcome
from groundwork.store.artifacts import ArtifactStore, RemoteArtifacts, write_atomic

BASELINE_REL = "codebase/baseline"
HEARTBEAT_FILE = "heartbeat.json"
PREPARE_LOG = "prepare.log"
UPLOADED = (LOG_FILE, OUTCOME_FILE, SPEC_FILE, "runner.err", PREPARE_LOG)


@dataclasses.dataclass(frozen=True)
class RemoteJob:
    """A job as it travels to a worker: its spec plus where its inputs and outputs live
    in the artifact store (paths relative to the store's URL)."""

    spec: JobSpec
    store: RemoteArtifacts
    job_rel: str  # e.g. jobs/job-e1-01/attempt-1
    diff_rel: str  # "" for the baseline
    heartbeat_s: float = 5.0


def job_rel(spec: JobSpec, run_dir: Path) -> str:
    return Path(spec.job_dir).resolve().relative_to(Path(run_dir).resolve()).as_posix()


def describe(run_dir: Path, spec: JobSpec, store: RemoteArtifacts, heartbeat_s: float) -> RemoteJob:
    run_dir = Path(run_dir).resolve()
    diff_rel = Path(spec.diff_path).resolve().relative_to(run_dir).as_posix() if spec.diff_path else ""
    return RemoteJob(spec, store, job_rel(spec, run_dir), diff_rel, heartbeat_s)


def fetch_outcome(artifacts: ArtifactStore, job_rel: str) -> JobOutcome | None:
    """The controller's side of a finished remote job: its uploaded files, copied into the
    run folder, and its outcome; None while the worker has not uploaded it (it goes last)."""
    rel = f"{job_rel}/{OUTCOME_FILE}"
    if not artifacts.remote.exists(rel):
        return None
    for name in UPLOADED:
        if name != OUTCOME_FILE and artifacts.remote.exists(f"{job_rel}/{name}"):
            artifacts.fetch(f"{job_rel}/{name}")
    return JobOutcome.model_validate_json(artifacts.fetch(rel).read_text())


def ensure_baseline(artifacts: ArtifactStore, baseline_dir: Path) -> None:
    """Upload the pristine codebase once per run (a marker says the upload finished)."""
    marker = f"{BASELINE_REL}/.groundwork-complete"
    if not artifacts.remote.exists(marker):
        artifacts.put_tree(BASELINE_REL, baseline_dir)
        artifacts.remote.put_bytes(marker, b"ok")


def _heartbeat(job: RemoteJob, stop: threading.Event) -> None:
    """Beat every `heartbeat_s` while the job runs; the last beat says when it finished."""
    beat, started = 0, time.time()
    while True:
        beat += 1
        finished = stop.is_set()
        payload = {"beat": beat, "pid": os.getpid(), "host": os.uname().nodename, "started": started}
        payload.update({"finished": time.time()} if finished else {"time": time.time()})
        try:  # not synced to disk: a liveness signal, not a record
            job.store.put_bytes(f"{job.job_rel}/{HEARTBEAT_FILE}", json.dumps(payload).encode(), sync=False)
        except Exception as exc:  # a store hiccup must not kill the job; the lease notices if it lasts
            print(f"groundwork: heartbeat not written: {exc}", file=sys.stderr)
        if finished:
            return
        stop.wait(job.heartbeat_s)


def run_remote_job(
    job: RemoteJob,
    gpu_ids: list[int] | None = None,
    scratch_root: str | None = None,
    clean_up: Callable[[Path], None] = lambda path: shutil.rmtree(path, ignore_errors=True),
) -> str | None:
    """Run one job here; return its outcome as JSON (also uploaded), or None if the
    runner ended without one. `gpu_ids`: the GPUs this worker was given; `clean_up`
    removes the scratch folder (a long-lived worker does it off the critical path)."""
    root = scratch_root or os.environ.get("GROUNDWORK_SCRATCH") or tempfile.gettempdir()
    Path(root).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"groundwork-{job.spec.job_id}-a{job.spec.attempt}-", dir=root))
    stop = threading.Event()
    beater = threading.Thread(target=_heartbeat, args=(job, stop), daemon=True)
    beater.start()
    try:
        baseline = scratch / "baseline"
        job.store.get_tree(BASELINE_REL, baseline)
        (baseline / ".groundwork-complete").unlink(missing_ok=True)
        diff_path = ""
        if job.diff_rel:
            diff_path = str(scratch / "patch.diff")
            job.store.get_file(job.diff_rel, Path(diff_path))
        job_dir = scratch / "job"
        job_dir.mkdir()
        spec = dataclasses.replace(
            job.spec,
            job_dir=str(job_dir),
            baseline_dir=str(baseline),
            diff_path=diff_path,
            gpu_ids=list(job.spec.gpu_ids if gpu_ids is None else gpu_ids),
        )
        save_spec(spec)
        try:
            spec = worker_interpreter(spec)  # before the data: preparation runs with it too
            ensure_data(spec, baseline, job_dir / PREPARE_LOG)
        except WorkerDataError as exc:  # the job cannot run here: say why, as its outcome
            now = time.time()
            outcome = JobOutcome(
                job_id=spec.job_id, attempt=spec.attempt, failure=FailureCategory.CRASHED, detail=str(exc),
                flags={"worker_data_missing": True}, started_at=now, ended_at=now,
            )  # fmt: skip
            write_atomic(job_dir / OUTCOME_FILE, outcome.model_dump_json(indent=2))
        else:
            spec_path = save_spec(spec)
            with open(job_dir / "runner.err", "ab") as err:
                subprocess.run(
                    [sys.executable, "-m", "groundwork.execution.runner", str(spec_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    preexec_fn=die_with_parent,
                    check=False,
                )
        for name in UPLOADED:  # the outcome last, synced: its presence means the rest is there
            if (job_dir / name).is_file():
                job.store.put_file(f"{job.job_rel}/{name}", job_dir / name, sync=name == OUTCOME_FILE)
        outcome = job_dir / OUTCOME_FILE
        return outcome.read_text() if outcome.is_file() else None
    finally:
        stop.set()
        beater.join(timeout=10)
        clean_up(scratch)
