"""Ray backend: jobs run on a Ray cluster in worker actors that ask the cluster for the
GPUs and CPUs the environment's manifest declares.

A worker actor runs one job at a time and is reused for the next job of the same shape
(same GPUs and CPUs), so a freed slot is refilled with a method call, not a new process.
Workers are detached and named after the run, so they outlive a controller that dies: a
restarted controller finds them by name and reattaches to the jobs they run. A worker
left idle for `linger_s` exits and frees its GPUs. `prepare` starts workers before their
jobs are queued (a worker's start-up is a Python process importing Ray: seconds), at most
one per free slot; they hold their GPUs and CPUs while they wait. Idle workers are kept
(told to stay) until `hold_s` after the last `prepare`; past it, one that waits
`linger_s / 2` without a job is let go. Inputs and outputs travel through the
artifact store (see `remote_job`), never through the driver. A job whose worker dies is
reported lost at once; one whose heartbeat stops (a hung or unreachable node) is
reported lost when its lease runs out.

    groundwork run --backend ray                           # a local Ray cluster, started here
    groundwork run --backend ray --address auto            # the cluster `ray start` runs on this machine
    groundwork run --backend ray --address ray://head:10001
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from groundwork.execution.leases import Leases
from groundwork.execution.remote_job import (
    OUTCOME_FILE,
    RemoteJob,
    describe,
    ensure_baseline,
    fetch_outcome,
    run_remote_job,
)
from groundwork.protocols import BackendBase, JobSpec, LostJob
from groundwork.records import JobOutcome
from groundwork.store.artifacts import ArtifactStore

NAMESPACE = "groundwork"
CAPACITY_REFRESH_S = 5.0

Shape = tuple[float, float]  # (GPUs, CPUs) a worker holds


def _ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("the Ray backend needs Ray: pip install 'groundwork[ray]'") from None
    return ray


def job_key(spec: JobSpec) -> str:
    return f"{spec.job_id}:attempt-{spec.attempt}"


def _remove_later(path: Path) -> None:
    threading.Thread(target=shutil.rmtree, args=(path,), kwargs={"ignore_errors": True}, daemon=True).start()


class JobWorker:
    """Runs jobs one at a time, each in a thread; `wait` answers when one ended. Exits by
    itself after `linger_s` without a job (its controller may be gone)."""

    def __init__(self, shape: Shape, linger_s: float = 120.0):
        self.shape = shape
        self.gpu_ids = [int(g) for g in _ray().get_gpu_ids()]
        self.jobs: dict[str, dict] = {}
        self.current: str | None = None
        self.idle_since = time.monotonic()
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        threading.Thread(target=self._reap_when_idle, args=(linger_s,), daemon=True).start()

    def _reap_when_idle(self, linger_s: float) -> None:
        while True:
            time.sleep(min(1.0, linger_s / 4))
            with self.lock:
                if self.current is None and time.monotonic() - self.idle_since > linger_s:
                    os._exit(0)

    def touch(self) -> None:
        """The controller still wants this idle worker: restart its idle clock."""
        with self.lock:
            if self.current is None:
                self.idle_since = time.monotonic()

    def run(self, key: str, job: RemoteJob) -> str:
        with self.lock:
            if self.current is not None:
                raise RuntimeError(f"worker busy with {self.current}")
            self.current = key
            for old in list(self.jobs)[: max(0, len(self.jobs) - 20)]:  # keep the recent ones for a new controller
                self.jobs.pop(old)
            self.jobs[key] = {"done": threading.Event(), "outcome": None, "error": ""}
            self.arrived.notify_all()
        threading.Thread(target=self._run, args=(key, job), daemon=True).start()
        return self.where()

    def _run(self, key: str, job: RemoteJob) -> None:
        record = self.jobs[key]
        try:
            record["outcome"] = run_remote_job(job, self.gpu_ids, clean_up=_remove_later)
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.current = None
            self.idle_since = time.monotonic()
        record["done"].set()

    def wait(self, key: str, arrival_s: float = 120.0) -> tuple[str | None, str]:
        # Calls to a threaded actor may run out of order: `wait` can come before its `run`.
        with self.arrived:
            if not self.arrived.wait_for(lambda: key in self.jobs, timeout=arrival_s):
                return None, f"this worker never ran {key}"
            record = self.jobs[key]
        record["done"].wait()
        return record["outcome"], record["error"]

    def status(self) -> dict:
        with self.lock:
            return {"current": self.current, "jobs": list(self.jobs), "shape": self.shape}

    def where(self) -> str:
        return f"pid {os.getpid()} on {socket.gethostname()}"


@dataclass
class _Tracked:
    spec: JobSpec
    job_rel: str
    worker: object | None  # an actor handle; None: ended while no controller watched
    name: str
    shape: Shape
    ref: object | None
    # `run`'s answer: the worker took the job; until then (the worker being placed or
    # started) the job keeps its lease. None: known to be on its worker already.
    taken: object | None = None


class RayBackend(BackendBase):
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
        hold_s: float = 600.0,
        capacity_grace_s: float = 300.0,
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
        self.hold_s = hold_s  # idle workers are kept this long after a `prepare` (ideation may take minutes)
        self._held_until = 0.0
        self._touched_at = 0.0  # when the idle workers were last told to stay (see `_keep_idle_workers`)
        self.capacity_grace_s = capacity_grace_s  # a job larger than the cluster waits this long for nodes
        self.leases = Leases(artifacts.remote, lease_s=lease_s, check_every_s=max(heartbeat_s / 2, 0.5))
        self._jobs: dict[str, _Tracked] = {}
        self._idle: dict[Shape, list[tuple[object, str, float]]] = {}  # shape -> (worker, name, idle since)
        self._discovered: dict[str, tuple[object, str]] | None = None  # job key -> (worker, name), after a restart
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
        self._worker_class = ray.remote(JobWorker)
        self._baseline_ready = False
        self.wakeup = threading.Event()  # set when a job's wait answers: the scheduler refills at once
        self._closing = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        """Block on the running jobs' answers and wake the scheduler when one comes."""
        ray = _ray()
        while not self._closing.is_set():
            self._keep_idle_workers()
            refs = [t.ref for t in list(self._jobs.values()) if t.ref is not None]
            if not refs:
                self._closing.wait(0.05)
                continue
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=0.5)
            except Exception:  # disconnected while shutting down
                return
            if ready:
                self.wakeup.set()
                self._closing.wait(0.01)  # the scheduler collects it; do not spin on the same answer

    def _keep_idle_workers(self) -> None:
        """Until `hold_s` after the last `prepare`, tell every idle worker to stay, often
        enough that none reaches `linger_s` alone. Runs in the watcher thread: it only reads
        a copy of the pool, and `_touched_at` is set once all in it were told."""
        t = time.monotonic()
        if t >= self._held_until or t - self._touched_at < self.linger_s / 4:
            return
        for workers in list(self._idle.values()):
            for worker, _, _ in list(workers):
                try:
                    worker.touch.remote()
                except Exception:  # gone, or disconnected while shutting down
                    pass
        self._touched_at = t

    # ---- capacity ---------------------------------------------------------------------

    def capacity(self) -> dict[str, float]:
        """What the cluster has in all, refreshed every few seconds (nodes come and go)."""
        if time.monotonic() - self._capacity_at > CAPACITY_REFRESH_S:
            total = _ray().cluster_resources()
            self._capacity = {"gpus": float(total.get("GPU", 0)), "cpus": float(total.get("CPU", 0))}
            self._capacity_at = time.monotonic()
        return {"slots": float(self.slots), **self._capacity}

    # ---- workers ----------------------------------------------------------------------

    @staticmethod
    def shape(spec: JobSpec) -> Shape:
        return (float(spec.gpus or len(spec.gpu_ids)), float(max(1, spec.threads)))

    @staticmethod
    def shape_of(resources: Mapping[str, object]) -> Shape:
        """The shape of a job asking for these resources (its `Job.resources`): on a cluster
        its spec gets the profile's GPUs, and its CPUs as threads."""
        return (float(resources.get("gpus", 0) or 0), float(max(1, int(resources.get("cpus", 1) or 1))))

    def prepare(self, count: int, resources: Mapping[str, object]) -> int:
        """Jobs of this shape are about to be queued: have `count` workers of it running
        (idle ones are kept, their idle clock restarted; the rest are started now, without
        waiting for them). Idle workers of other shapes are let go: they hold resources."""
        shape = self.shape_of(resources)
        self._held_until = time.monotonic() + self.hold_s
        for other in [s for s in self._idle if s != shape]:
            for worker, _, _ in self._idle.pop(other):
                self._kill(worker)
        t = time.monotonic()
        fresh = self._fresh_idle(shape)
        kept, spare = fresh[:count], fresh[count:]
        for worker, _, _ in kept:
            worker.touch.remote()
        started = [self._new_worker(shape) for _ in range(count - len(kept))]
        # Taken from the end (see `_worker_for`): the running ones before those still starting.
        self._idle[shape] = spare + [(w, n, t) for w, n in started] + [(w, n, t) for w, n, _ in kept]
        return count

    def _fresh_idle(self, shape: Shape) -> list[tuple[object, str, float]]:
        """Idle workers of this shape that are surely still alive; the others are let go
        (a worker exits by itself after `linger_s` without a job: half of it is the margin)."""
        fresh, stale = [], []
        for w in self._idle.pop(shape, []):
            # In the pool at the last touch (idle since before it): its idle clock restarted then.
            idle_since = max(w[2], self._touched_at)
            (fresh if time.monotonic() - idle_since < self.linger_s / 2 else stale).append(w)
        for worker, _, _ in stale:
            self._kill(worker)
        return fresh

    def _worker_for(self, shape: Shape) -> tuple[object, str]:
        """An idle worker of this shape, or a new one. Idle workers of other shapes are
        let go first: they hold resources a new worker may need."""
        fresh = self._fresh_idle(shape)
        if fresh:
            worker, name, _ = fresh.pop()  # the last idled: unneeded ones at the front go stale and are let go
            if fresh:
                self._idle[shape] = fresh
            return worker, name
        for other in list(self._idle):
            for worker, _, _ in self._idle.pop(other):
                self._kill(worker)
        return self._new_worker(shape)

    def _new_worker(self, shape: Shape) -> tuple[object, str]:
        name = f"{self.run_id}:worker-{uuid.uuid4().hex[:8]}"
        worker = self._worker_class.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            max_restarts=0,
            max_concurrency=8,
            num_gpus=shape[0],
            num_cpus=shape[1],
        ).remote(shape, self.linger_s)
        return worker, name

    @staticmethod
    def _kill(worker) -> None:
        try:
            _ray().kill(worker, no_restart=True)
        except Exception:
            pass

    # ---- Backend ----------------------------------------------------------------------

    def start(self, spec: JobSpec) -> str:
        if not self._baseline_ready:
            ensure_baseline(self.artifacts, Path(spec.baseline_dir))
            self._baseline_ready = True
        job = describe(self.artifacts.root, spec, self.artifacts.remote, self.heartbeat_s)
        shape = self.shape(spec)
        worker, name = self._worker_for(shape)
        taken = worker.run.remote(job_key(spec), job)  # not awaited: its answer is the job's `wait`
        self._track(spec, job.job_rel, worker, name, shape, taken)
        return f"ray worker {name} ({shape[0]:g} GPU, {shape[1]:g} CPU)"

    def _track(self, spec: JobSpec, job_rel: str, worker, name: str, shape: Shape, taken=None) -> None:
        ref = worker.wait.remote(job_key(spec)) if worker is not None else None
        self._jobs[spec.job_id] = _Tracked(spec, job_rel, worker, name, shape, ref, taken)
        self.leases.grant(spec.job_id, job_rel)

    def _waiting(self, job_id: str) -> bool:
        """The job's worker has not taken it yet (still being placed or started)."""
        tracked = self._jobs.get(job_id)
        if tracked is None or tracked.taken is None:
            return False
        ready, _ = _ray().wait([tracked.taken], timeout=0)
        if ready:
            tracked.taken = None
        return not ready

    def poll(self) -> list[JobOutcome | LostJob]:
        ray = _ray()
        reports: list[JobOutcome | LostJob] = []
        waiting = {t.ref: job_id for job_id, t in self._jobs.items() if t.ref is not None}
        ready = []
        if waiting:
            ready, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=0)
        ended = {waiting[ref]: ref for ref in ready}
        ended.update({job_id: None for job_id, t in self._jobs.items() if t.worker is None})
        for job_id, ref in ended.items():
            tracked = self._jobs.pop(job_id)
            self.leases.release(job_id)
            error, worker_alive = "", ref is not None
            if ref is not None:
                try:
                    _, error = ray.get(ref)
                except Exception as exc:  # the worker died: killed, out of memory, node lost
                    worker_alive = False
                    text = str(exc).strip()
                    error = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
            if worker_alive and not error:
                self._idle.setdefault(tracked.shape, []).append((tracked.worker, tracked.name, time.monotonic()))
            elif tracked.worker is not None:
                self._kill(tracked.worker)
            outcome = fetch_outcome(self.artifacts, tracked.job_rel)
            if outcome is not None:
                reports.append(outcome)
            else:
                reports.append(LostJob(job_id, tracked.spec.attempt, f"ray worker ended without an outcome: {error}"))
        for job_id, reason in self.leases.expired(self._waiting):
            tracked = self._jobs.pop(job_id, None)
            if tracked is not None:
                self._kill(tracked.worker)
                reports.append(LostJob(job_id, tracked.spec.attempt, reason))
        return reports

    def _discover(self) -> dict[str, tuple[object, str]]:
        """After a restart: this run's live workers, by the job each runs or holds; idle
        ones join the pool."""
        if self._discovered is not None:
            return self._discovered
        ray = _ray()
        self._discovered = {}
        prefix = f"{self.run_id}:worker-"
        names = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == NAMESPACE and a["name"].startswith(prefix)
        ]
        for name in names:
            try:
                worker = ray.get_actor(name, namespace=NAMESPACE)
                status = ray.get(worker.status.remote(), timeout=30)
            except Exception:  # gone between listing and asking
                continue
            for key in status["jobs"]:
                self._discovered[key] = (worker, name)
            if status["current"] is None:
                shape = tuple(status["shape"])
                self._idle.setdefault(shape, []).append((worker, name, time.monotonic()))
        return self._discovered

    def reattach(self, spec: JobSpec) -> bool:
        job_rel = describe(self.artifacts.root, spec, self.artifacts.remote, self.heartbeat_s).job_rel
        found = self._discover().get(job_key(spec))
        if found is not None:
            worker, name = found
            self._idle = {s: [w for w in ws if w[1] != name] for s, ws in self._idle.items()}
            self._track(spec, job_rel, worker, name, self.shape(spec))
            return True
        if self.artifacts.remote.exists(f"{job_rel}/{OUTCOME_FILE}"):
            self._track(spec, job_rel, None, "", self.shape(spec))  # ended unwatched: reported at the next poll
            return True
        return False

    def cancel(self, job_id: str) -> None:
        tracked = self._jobs.pop(job_id, None)
        self.leases.release(job_id)
        if tracked is not None and tracked.worker is not None:
            self._kill(tracked.worker)

    def shutdown(self) -> None:
        self._closing.set()
        for job_id in list(self._jobs):
            self.cancel(job_id)
        for workers in self._idle.values():
            for worker, _, _ in workers:
                self._kill(worker)
        self._idle.clear()
        if self._connected_here:
            _ray().shutdown()
