"""Slurm backend through submitit: each job is one Slurm job asking for the GPUs and
CPUs the environment's manifest declares, with a wall-clock limit of the job's time
budget + grace + evaluation + margin. The job contract is the one Ray workers follow
(`remote_job`): inputs from the artifact store, heartbeat and outcome back to it.

    groundwork run --backend slurm --slurm-partition gpu --artifacts-url /shared/groundwork

Compute nodes must reach the artifact store (a shared folder, or s3://...) and the
prepared data folder. submitit's "local" cluster runs the same code path as plain
processes on this machine, which is how the tests exercise it where Slurm is absent.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundwork.execution.leases import Leases
from groundwork.execution.remote_job import OUTCOME_FILE, describe, ensure_baseline, fetch_outcome, run_remote_job
from groundwork.protocols import BackendBase, JobSpec, LostJob
from groundwork.records import JobOutcome
from groundwork.store.artifacts import ArtifactStore

SUBMITIT_JOB_FILE = "submitit_job_id"
MARGIN_MIN = 5  # beyond budget + grace + evaluation: environment set-up, uploads
# sacct states of a job not (or no longer) running: waiting in the queue is not silence.
_QUEUED_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}


def _submitit():
    try:
        import submitit
    except ImportError:
        raise RuntimeError("the Slurm backend needs submitit: pip install 'groundwork[slurm]'") from None
    return submitit


@dataclass
class _Tracked:
    spec: JobSpec
    job_rel: str
    job: Any | None  # a submitit Job; None when adopted after a restart without one


class SlurmBackend(BackendBase):
    name = "slurm"

    def __init__(
        self,
        slots: int,
        artifacts: ArtifactStore,
        folder: Path,
        *,
        cluster: str = "slurm",  # "local": the same path, as processes on this machine
        partition: str | None = None,
        account: str | None = None,
        mem_gb: float | None = None,
        extra: dict[str, Any] | None = None,  # any other sbatch option, e.g. {"qos": "high"}
        lease_s: float = 300.0,
        heartbeat_s: float = 15.0,
    ):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        submitit = _submitit()
        if cluster == "slurm" and shutil.which("srun") is None:
            raise RuntimeError(
                "the Slurm backend found no Slurm here (no `srun` on PATH): start the run on a Slurm login "
                "node, or use --backend local or --backend ray"
            )
        self.slots = slots
        self.artifacts = artifacts
        self.cluster = cluster
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        self.slurm_options = {
            k: v for k, v in {"slurm_partition": partition, "slurm_account": account}.items() if v is not None
        }
        self.slurm_options.update({f"slurm_{k}": v for k, v in (extra or {}).items()})
        self.mem_gb = mem_gb
        self.heartbeat_s = heartbeat_s
        self.leases = Leases(artifacts.remote, lease_s=lease_s, check_every_s=max(heartbeat_s / 2, 0.5))
        self._jobs: dict[str, _Tracked] = {}
        self._baseline_ready = False

    def parameters(self, spec: JobSpec) -> dict[str, Any]:
        """submitit parameters for one job (what ends up in its sbatch script)."""
        minutes = math.ceil((spec.time_budget_s + spec.grace_s + spec.eval_timeout_s) / 60) + MARGIN_MIN
        params: dict[str, Any] = {
            "name": f"groundwork-{spec.job_id}-a{spec.attempt}",
            "timeout_min": minutes,
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": max(1, spec.threads),
            "gpus_per_node": spec.gpus or len(spec.gpu_ids),
        }
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        elif spec.memory_limit_mb:
            params["mem_gb"] = math.ceil(spec.memory_limit_mb / 1024 * 1.25)
        if self.cluster != "local":
            params.update(self.slurm_options)
        return params

    def start(self, spec: JobSpec) -> str:
        if not self._baseline_ready:
            ensure_baseline(self.artifacts, Path(spec.baseline_dir))
            self._baseline_ready = True
        remote = describe(self.artifacts.root, spec, self.artifacts.remote, self.heartbeat_s)
        self.executor.update_parameters(**self.parameters(spec))
        job = self.executor.submit(run_remote_job, remote)
        self.artifacts.remote.put_bytes(f"{remote.job_rel}/{SUBMITIT_JOB_FILE}", str(job.job_id).encode())
        self._jobs[spec.job_id] = _Tracked(spec, remote.job_rel, job)
        self.leases.grant(spec.job_id, remote.job_rel)
        return f"{self.cluster} job {job.job_id} (submitit folder {self.executor.folder})"

    def poll(self) -> list[JobOutcome | LostJob]:
        reports: list[JobOutcome | LostJob] = []
        for job_id, tracked in list(self._jobs.items()):
            ended = tracked.job is None or tracked.job.done()
            if not ended:
                continue
            outcome = fetch_outcome(self.artifacts, tracked.job_rel)
            if outcome is None and tracked.job is None:
                continue  # adopted without a handle: its outcome or its lease decides
            del self._jobs[job_id]
            self.leases.release(job_id)
            if outcome is not None:
                reports.append(outcome)
            else:
                reports.append(
                    LostJob(job_id, tracked.spec.attempt, f"slurm job ended without an outcome: {self._why(tracked)}")
                )
        for job_id, reason in self.leases.expired(self._waiting):
            tracked = self._jobs.pop(job_id, None)
            if tracked is not None:
                self._kill(tracked)
                reports.append(LostJob(job_id, tracked.spec.attempt, reason))
        return reports

    def _waiting(self, job_id: str) -> bool:
        """The job is still in Slurm's queue (or back in it): its lease waits with it."""
        tracked = self._jobs.get(job_id)
        return tracked is not None and tracked.job is not None and tracked.job.state.upper() in _QUEUED_STATES

    def _why(self, tracked: _Tracked) -> str:
        if self.cluster == "local":
            # A local job's folder is on this disk and its process has exited: no file system
            # lag for submitit to wait out (15 s by default) before it says there is no result.
            tracked.job._results_timeout_s = 0
        try:
            error = tracked.job.exception()
        except Exception as exc:  # the job's own result could not be read (killed, node lost)
            error = exc
        return f"state {tracked.job.state}" + (f": {str(error).strip().splitlines()[-1]}" if error else "")

    def reattach(self, spec: JobSpec) -> bool:
        job_rel = describe(self.artifacts.root, spec, self.artifacts.remote, self.heartbeat_s).job_rel
        id_rel = f"{job_rel}/{SUBMITIT_JOB_FILE}"
        if self.artifacts.remote.exists(f"{job_rel}/{OUTCOME_FILE}"):
            self._jobs[spec.job_id] = _Tracked(spec, job_rel, None)
            return True
        if not self.artifacts.remote.exists(id_rel):
            return False
        job = None
        if self.cluster != "local":  # Slurm knows its jobs; a local process has no handle after a restart
            job_id = self.artifacts.remote.get_bytes(id_rel).decode().strip()
            job = self.executor._executor.job_class(self.executor.folder, job_id)
            if job.done():
                return False
        self._jobs[spec.job_id] = _Tracked(spec, job_rel, job)
        self.leases.grant(spec.job_id, job_rel)  # a job that is gone stops beating and is re-queued
        return True

    def _kill(self, tracked: _Tracked) -> None:
        if tracked.job is None:
            return
        process = getattr(tracked.job, "_process", None)
        if process is not None:
            process.kill()  # a local job: SIGKILL; its runner and phases die with it
            process.wait()
        else:
            tracked.job.cancel(check=False)

    def cancel(self, job_id: str) -> None:
        tracked = self._jobs.pop(job_id, None)
        self.leases.release(job_id)
        if tracked is not None:
            self._kill(tracked)

    def shutdown(self) -> None:
        for job_id in list(self._jobs):
            self.cancel(job_id)
