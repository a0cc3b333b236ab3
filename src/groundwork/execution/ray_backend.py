"""Ray backend: each job runs on a Ray cluster in its own actor, which asks the cluster
for the GPUs and CPUs the environment's manifest declares.

The actor is detached and named after the run, the job and the attempt, so it outlives a
controller that dies: a restarted controller finds it by name and reattaches. Inputs and
outputs travel through the artifact store (see `remote_job`), never through the driver.
A job whose actor dies is reported lost at once; one whose heartbeat stops (a hung or
unreachable node) is reported lost when its lease runs out.

    groundwork run --backend ray                           # a local Ray cluster, started here
    groundwork run --backend ray --address auto            # the cluster `ray start` runs on this machine
    groundwork run --backend ray --address ray://head:10001
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from groundwork.execution.leases import Leases
from groundwork.execution.remote_job import OUTCOME_FILE, RemoteJob, describe, ensure_baseline, run_remote_job
from groundwork.protocols import JobSpec, LostJob
from groundwork.records import JobOutcome
from groundwork.store.artifacts import ArtifactStore

NAMESPACE = "groundwork"
CAPACITY_REFRESH_S = 5.0


def _ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("the Ray backend needs Ray: pip install 'groundwork[ray]'") from None
    return ray


class JobActor:
    """Runs one job in a thread; `wait` answers when it ended. If nobody collects the
    result within `linger_s` (the controller is gone), the actor exits and frees its GPUs:
    the outcome is in the artifact store for a later controller."""

    def __init__(self, job: RemoteJob, linger_s: float = 120.0):
        ray = _ray()
        self.done = threading.Event()
        self.collected = threading.Event()
        self.outcome: str | None = None
        self.error = ""
        gpu_ids = [int(g) for g in ray.get_gpu_ids()]
        threading.Thread(target=self._run, args=(job, gpu_ids, linger_s), daemon=True).start()

    def _run(self, job: RemoteJob, gpu_ids: list[int], linger_s: float) -> None:
        try:
            self.outcome = run_remote_job(job, gpu_ids)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        self.done.set()
        if not self.collected.wait(linger_s):
            os._exit(0)

    def where(self) -> str:
        return f"ray actor pid {os.getpid()} on {socket.gethostname()}"

    def wait(self) -> tuple[str | None, str]:
        self.done.wait()
        return self.outcome, self.error

    def collect(self) -> None:
        self.collected.set()


@dataclass
class _Tracked:
    spec: JobSpec
    job_rel: str
    actor: object | None  # None: ended before a controller restart, outcome in the store
    ref: object | None


class RayBackend:
    name = "ray"

    def __init__(
        self,
        slots: int,
        artifacts: ArtifactStore,
        run_id: str,
        *,
        address: str | None = None,
        lease_s: float = 60.0,
        heartbeat_s: float = 5.0,
        linger_s: float = 120.0,
        init_options: dict | None = None,
    ):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        ray = _ray()
        self.slots = slots
        self.artifacts = artifacts
        self.run_id = run_id
        self.heartbeat_s = heartbeat_s
        self.linger_s = linger_s
        self.leases = Leases(artifacts.remote, lease_s=lease_s, check_every_s=max(heartbeat_s / 2, 0.5))
        self._jobs: dict[str, _Tracked] = {}
        self._capacity: dict[str, float] = {}
        self._capacity_at = 0.0
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            options = {"namespace": NAMESPACE, "log_to_driver": False, **(init_options or {})}
            try:
                ray.init(address=address, **options)
            except ConnectionError as exc:
                raise RuntimeError(
                    f"could not connect to the Ray cluster at {address!r}: {exc}. Start one with "
                    "`ray start --head` (then --address auto), give its client address as ray://HOST:10001, "
                    "or leave --address out to start a local cluster"
                ) from None
        self._actor_class = ray.remote(JobActor)
        self._baseline_ready = False
        self.wakeup = threading.Event()

    # ---- capacity ---------------------------------------------------------------------

    def capacity(self) -> dict[str, float]:
        """What the cluster has in all, refreshed every few seconds (nodes come and go)."""
        if time.monotonic() - self._capacity_at > CAPACITY_REFRESH_S:
            total = _ray().cluster_resources()
            self._capacity = {"gpus": float(total.get("GPU", 0)), "cpus": float(total.get("CPU", 0))}
            self._capacity_at = time.monotonic()
        return {"slots": float(self.slots), **self._capacity}

    # ---- Backend ----------------------------------------------------------------------

    def actor_name(self, spec: JobSpec) -> str:
        return f"{self.run_id}:{spec.job_id}:attempt-{spec.attempt}"

    def start(self, spec: JobSpec) -> str:
        if not self._baseline_ready:
            ensure_baseline(self.artifacts.remote, Path(spec.baseline_dir))
            self._baseline_ready = True
        job = describe(self.artifacts.root, spec, self.artifacts.remote, self.heartbeat_s)
        resources = self._resources(spec)
        actor = self._actor_class.options(
            name=self.actor_name(spec),
            namespace=NAMESPACE,
            lifetime="detached",
            max_restarts=0,
            max_concurrency=4,
            **resources,
        ).remote(job, self.linger_s)
        self._track(spec, job.job_rel, actor)
        return f"ray actor {self.actor_name(spec)} ({resources['num_gpus']:g} GPU, {resources['num_cpus']:g} CPU)"

    def _resources(self, spec: JobSpec) -> dict[str, float]:
        return {"num_gpus": float(spec.gpus or len(spec.gpu_ids)), "num_cpus": float(spec.threads)}

    def _track(self, spec: JobSpec, job_rel: str, actor) -> None:
        ref = actor.wait.remote() if actor is not None else None
        self._jobs[spec.job_id] = _Tracked(spec, job_rel, actor, ref)
        self.leases.grant(spec.job_id, job_rel)

    def poll(self) -> list[JobOutcome | LostJob]:
        ray = _ray()
        reports: list[JobOutcome | LostJob] = []
        waiting = {t.ref: job_id for job_id, t in self._jobs.items() if t.ref is not None}
        ready = []
        if waiting:
            ready, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=0)
        ended = {waiting[ref]: ref for ref in ready}
        ended.update({job_id: None for job_id, t in self._jobs.items() if t.ref is None})
        for job_id, ref in ended.items():
            tracked = self._jobs.pop(job_id)
            self.leases.release(job_id)
            error = ""
            if ref is not None:
                try:
                    _, error = ray.get(ref)
                except Exception as exc:  # the actor died: killed, out of memory, node lost
                    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                self._release(tracked)
            outcome = self._stored_outcome(tracked)
            if outcome is not None:
                reports.append(outcome)
            else:
                reports.append(LostJob(job_id, tracked.spec.attempt, f"ray worker ended without an outcome: {error}"))
        for job_id, reason in self.leases.expired():
            tracked = self._jobs.pop(job_id, None)
            if tracked is not None:
                self._release(tracked, kill=True)
                reports.append(LostJob(job_id, tracked.spec.attempt, reason))
        return reports

    def _stored_outcome(self, tracked: _Tracked) -> JobOutcome | None:
        rel = f"{tracked.job_rel}/{OUTCOME_FILE}"
        if not self.artifacts.remote.exists(rel):
            return None
        for name in ("job.log", "runner.err", "spec.json"):
            if self.artifacts.remote.exists(f"{tracked.job_rel}/{name}"):
                self.artifacts.fetch(f"{tracked.job_rel}/{name}")
        return JobOutcome.model_validate_json(self.artifacts.fetch(rel).read_text())

    def _release(self, tracked: _Tracked, kill: bool = False) -> None:
        ray = _ray()
        if tracked.actor is None:
            return
        if not kill:
            try:
                tracked.actor.collect.remote()
            except Exception:
                pass
        try:
            ray.kill(tracked.actor, no_restart=True)
        except Exception:
            pass

    def reattach(self, spec: JobSpec) -> bool:
        ray = _ray()
        job_rel = describe(self.artifacts.root, spec, self.artifacts.remote, self.heartbeat_s).job_rel
        try:
            actor = ray.get_actor(self.actor_name(spec), namespace=NAMESPACE)
        except ValueError:
            actor = None
        if actor is not None:
            self._track(spec, job_rel, actor)
            return True
        if self.artifacts.remote.exists(f"{job_rel}/{OUTCOME_FILE}"):
            self._track(spec, job_rel, None)  # ended while no controller watched: reported at the next poll
            return True
        return False

    def cancel(self, job_id: str) -> None:
        tracked = self._jobs.pop(job_id, None)
        self.leases.release(job_id)
        if tracked is not None:
            self._release(tracked, kill=True)

    def shutdown(self) -> None:
        for job_id in list(self._jobs):
            self.cancel(job_id)
        if self._connected_here:
            _ray().shutdown()
