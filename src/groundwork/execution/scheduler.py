"""The scheduler: moves jobs from the queue onto a backend's slots and records what comes
back. Each state change is committed before it is acted on: a job is marked leased
before its process starts, and its result is stored in the same transaction that ends it.

Between rounds the scheduler sleeps until the backend signals that a job ended (its
`wakeup` event, when it has one) or the poll interval passes, so a freed slot is refilled
within milliseconds. Jobs are packed by the resources they ask for (see `packing`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from groundwork.execution.packing import demand, pack, subtract
from groundwork.protocols import Backend, JobSpec, LostJob
from groundwork.records import FailureCategory, Job, JobOutcome, JobState, Result, now
from groundwork.store import RunStore

SpecFactory = Callable[[Job], JobSpec]
Repairable = Callable[[Job, JobOutcome], bool]  # a failed job whose result waits for a repair round


def result_from_outcome(job: Job, outcome: JobOutcome) -> Result:
    return Result(
        idea_id=job.idea_id,
        job_id=job.id,
        metric=outcome.metric if outcome.failure is None else None,
        metrics=outcome.metrics,
        curve=outcome.curve,
        failure=outcome.failure,
        detail=outcome.detail,
        flags=outcome.flags,
        seconds=round(outcome.ended_at - outcome.started_at, 3),
        repair_rounds=job.repairs,
        preflight_stops=job.preflight_stops + (outcome.flags.get("stage") == "preflight"),
    )


class Scheduler:
    def __init__(
        self,
        store: RunStore,
        backend: Backend,
        make_spec: SpecFactory,
        *,
        max_attempts: int = 3,
        poll_interval_s: float = 0.2,
        on_tick: Callable[[], None] | None = None,
        repairable: Repairable | None = None,
    ):
        self.store = store
        self.backend = backend
        self.make_spec = make_spec
        self.max_attempts = max_attempts
        self.poll_interval_s = poll_interval_s
        self.on_tick = on_tick or (lambda: None)
        self.repairable = repairable or (lambda job, outcome: False)
        self._busy_slots: dict[str, int] = {}  # job id -> slot
        self._busy_need: dict[str, dict[str, float]] = {}  # job id -> resources it holds
        self._unplaceable_since: dict[str, float] = {}  # job id -> when it first did not fit the backend
        self._starter: ThreadPoolExecutor | None = None  # starts batches at once (see `_start`)
        # Set by the backend when a job ends; a backend without one is polled.
        self._wakeup: threading.Event = backend.wakeup or threading.Event()

    def recover(self) -> None:
        """After a restart: adopt jobs still running (or already finished) on the backend,
        and send back to the queue those whose worker is gone without a report."""
        for job in self.store.jobs({JobState.LEASED, JobState.RUNNING}):
            if job.job_dir and job.slot is not None and self.backend.reattach(self.make_spec(job)):
                self._busy_slots[job.id] = job.slot
                self._busy_need[job.id] = demand(job.resources, self._capacity())
            else:
                self._lost(job, "its worker was gone when the controller restarted")

    def tick(self) -> bool:
        """One round: start queued jobs on free slots, record what ended. True while any
        job is still queued or running."""
        self._wakeup.clear()  # a job ending from here on wakes the next wait at once
        ended = self._collect()
        self._dispatch()
        # An ended job's outcome is on disk until recorded: a crash here loses nothing. A job
        # that ends while these are recorded gets its slot refilled first: refilling is what waits.
        while ended:
            if self._wakeup.is_set():
                self._wakeup.clear()
                ended += self._collect()
                self._dispatch()
            self._record(ended.pop(0))
        self.on_tick()
        return bool(self._busy_slots) or bool(self.store.jobs({JobState.QUEUED}))

    def _collect(self) -> list[JobOutcome | LostJob]:
        """What ended since the last look, with its slots freed."""
        reports = self.backend.poll()
        for report in reports:
            self._busy_slots.pop(report.job_id, None)
            self._busy_need.pop(report.job_id, None)
        return reports

    def drain(self, stop_when: Callable[[], bool] | None = None) -> None:
        """Run until no job is queued or running, or until `stop_when()` says to stop
        (jobs still running then keep running and are recorded by later ticks)."""
        while self.tick():
            if stop_when is not None and stop_when():
                return
            self.wait()

    def wait(self) -> None:
        """Sleep until a job ends (backends that signal it) or one poll interval passes."""
        self._wakeup.wait(self.poll_interval_s)

    def prepare(self, resources: Mapping[str, object], jobs: int | None = None) -> int:
        """Jobs asking for `resources` are about to be queued: let the backend get ready to
        run them (Ray starts worker processes, which takes seconds), for at most `jobs` of
        them, the free slots, and what the free resources fit. Returns how many."""
        capacity = self._capacity()
        need = demand(resources, capacity)
        free = self._unheld(capacity)
        count = self.free_slots if jobs is None else min(jobs, self.free_slots)
        for kind, amount in need.items():
            if amount > 0:
                count = min(count, int(free.get(kind, 0.0) / amount + 1e-9))
        return self.backend.prepare(count, resources) if count > 0 else 0

    @property
    def free_slots(self) -> int:
        return len(self._free_slots())

    def cancel_running(self, reason: str) -> None:
        """Stop every running job and put it back in the queue (e.g. on Ctrl+C)."""
        for job_id in list(self._busy_slots):
            self.backend.cancel(job_id)
            self._busy_slots.pop(job_id)
            self._busy_need.pop(job_id, None)
            self.store.requeue_job(job_id, reason)

    def _free_slots(self) -> list[int]:
        busy = set(self._busy_slots.values())
        return [s for s in range(self.backend.slots) if s not in busy]

    def _unheld(self, capacity: dict[str, float]) -> dict[str, float]:
        """`capacity` less what the running jobs hold."""
        free = dict(capacity)
        for held in self._busy_need.values():
            free = subtract(free, held)
        return free

    def _capacity(self) -> dict[str, float]:
        return dict(self.backend.capacity())

    def _dispatch(self) -> None:
        queued = self.store.jobs({JobState.QUEUED})
        if not queued:
            return
        free_slots = self._free_slots()
        capacity = self._capacity()
        capacity["slots"] = float(self.backend.slots)
        free = self._unheld(capacity)
        by_id = {job.id: job for job in queued}
        placement = pack([(job.id, demand(job.resources, capacity)) for job in queued], free, capacity)
        # A cluster can grow (nodes joining, autoscaling): there a job that does not fit
        # waits `capacity_grace_s` before it is refused; on a fixed backend it is refused now.
        grace = float(self.backend.capacity_grace_s)
        for job_id, why in placement.impossible.items():
            first = self._unplaceable_since.setdefault(job_id, time.monotonic())
            if time.monotonic() - first >= grace:
                self._unplaceable_since.pop(job_id, None)
                self._refuse(by_id[job_id], f"{why} (waited {grace:g}s for more)" if grace else why)
        chosen = list(zip(placement.start, free_slots, strict=False))
        if not chosen:
            return
        # One transaction marks the batch leased, one marks it running: a disk sync each, not
        # per job. The lease is committed before any process starts. When the jobs run on this
        # machine neither waits for a disk sync: a power cut that loses them kills the jobs
        # too, and a restarted controller settles them from the jobs' folders (lock, outcome).
        sync = not self.backend.runs_here
        leased = self.store.transition_jobs(
            [
                (
                    job_id,
                    JobState.LEASED,
                    f"slot {slot}",
                    {"slot": slot, "job_dir": f"jobs/{job_id}/attempt-{by_id[job_id].attempt}"},
                )
                for job_id, slot in chosen
            ],
            sync=sync,
        )
        for job in leased:
            self._busy_slots[job.id] = job.slot
            self._busy_need[job.id] = demand(job.resources, capacity)
        running: list[tuple[str, JobState, str, dict]] = []
        try:
            self._start(leased, running)
        finally:  # jobs not marked running stay leased: `recover` settles them after a crash
            if running:
                self.store.transition_jobs(running, sync=sync)

    def _start(self, jobs: list[Job], running: list[tuple[str, JobState, str, dict]]) -> None:
        """Start the jobs, adding each started one to `running`. On a backend whose `start`
        may be called from several threads (`concurrent_starts`), a batch starts at once: on
        a busy machine each new process waits for a CPU, and in parallel the waits overlap."""

        def started(job: Job, worker: str) -> None:
            running.append((job.id, JobState.RUNNING, worker, {"worker": worker, "started_at": now()}))

        if len(jobs) < 2 or not self.backend.concurrent_starts:
            for job in jobs:
                started(job, self.backend.start(self.make_spec(job)))
            return
        if self._starter is None:
            self._starter = ThreadPoolExecutor(max_workers=self.backend.slots, thread_name_prefix="job-start")
        futures = [(job, self._starter.submit(self.backend.start, self.make_spec(job))) for job in jobs]
        failure: BaseException | None = None
        for job, future in futures:
            try:
                started(job, future.result())
            except BaseException as exc:  # the others started: they are marked running all the same
                failure = failure or exc
        if failure is not None:
            raise failure

    def _refuse(self, job: Job, why: str) -> None:
        """A job that can never fit this backend ends now, with the reason, instead of waiting forever."""
        job = self.store.transition_job(job.id, JobState.LEASED, why)
        t = now()
        outcome = JobOutcome(
            job_id=job.id,
            attempt=job.attempt,
            failure=FailureCategory.CRASHED,
            detail=f"cannot run on backend {self.backend.name!r}: it {why}; lower the profile's resources "
            "or add machines to the cluster",
            started_at=t,
            ended_at=t,
        )
        self.store.finish_job(outcome, result_from_outcome(job, outcome))

    def _record(self, report: JobOutcome | LostJob) -> None:
        self._busy_slots.pop(report.job_id, None)
        self._busy_need.pop(report.job_id, None)
        job = self.store.job(report.job_id)
        if job.attempt != report.attempt or job.state not in (JobState.LEASED, JobState.RUNNING):
            return  # a stale report of an attempt that was already settled
        if isinstance(report, LostJob):
            self._lost(job, report.reason)
        elif report.failure is not None and self.repairable(job, report):
            self.store.hold_for_repair(report, result_from_outcome(job, report))
        else:
            self.store.finish_job(report, result_from_outcome(job, report))

    def _lost(self, job: Job, reason: str) -> None:
        if job.attempt - job.repairs < self.max_attempts:  # repair rounds are attempts of their own
            self.store.requeue_job(job.id, f"attempt {job.attempt} lost: {reason}")
            return
        t = now()
        outcome = JobOutcome(
            job_id=job.id,
            attempt=job.attempt,
            failure=FailureCategory.CRASHED,
            detail=f"worker lost on all {job.attempt} attempts; last: {reason}",
            started_at=job.started_at or t,
            ended_at=t,
        )
        self.store.finish_job(outcome, result_from_outcome(job, outcome))
