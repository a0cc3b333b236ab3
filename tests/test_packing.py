"""Resource packing (which queued jobs start now) and the scheduler's wake-up on job exit."""

from __future__ import annotations

import time

from groundwork.execution.local import LocalBackend
from groundwork.execution.packing import demand, pack
from groundwork.execution.scheduler import Scheduler
from groundwork.records import JobState
from job_queue import queue_jobs, spec_factory

CLUSTER = {"slots": 16.0, "gpus": 8.0, "cpus": 64.0}


def _need(gpus: int) -> dict[str, float]:
    return demand({"gpus": gpus, "cpus": 1}, CLUSTER)


def test_jobs_start_in_queue_order_while_they_fit():
    free = {"slots": 16.0, "gpus": 3.0, "cpus": 64.0}
    placed = pack([("a", _need(1)), ("b", _need(1)), ("c", _need(1)), ("d", _need(1))], free, CLUSTER)
    assert placed.start == ["a", "b", "c"] and not placed.impossible


def test_a_waiting_8_gpu_job_reserves_gpus_so_later_1_gpu_jobs_cannot_starve_it():
    free = {"slots": 16.0, "gpus": 4.0, "cpus": 64.0}  # four 1-GPU jobs are running
    queue = [("big", _need(8)), ("t1", _need(1)), ("t2", _need(1))]
    assert pack(queue, free, CLUSTER).start == []  # the free GPUs are held for `big`
    assert pack(queue, dict(CLUSTER), CLUSTER).start == ["big"]  # once they ended, it starts first


def test_jobs_that_do_not_need_the_reserved_resource_still_start():
    free = {"slots": 16.0, "gpus": 4.0, "cpus": 64.0}
    placed = pack([("big", _need(8)), ("cpu-only", _need(0))], free, CLUSTER)
    assert placed.start == ["cpu-only"]


def test_a_job_larger_than_the_whole_backend_is_refused_with_the_reason():
    placed = pack([("huge", _need(16)), ("ok", _need(1))], dict(CLUSTER), CLUSTER)
    assert placed.start == ["ok"]
    assert placed.impossible == {"huge": "needs 16 gpus but the backend has 8 gpus in all"}


def test_slots_bound_what_starts():
    placed = pack([(f"j{i}", _need(0)) for i in range(5)], {"slots": 2.0, "gpus": 8.0, "cpus": 64.0}, CLUSTER)
    assert placed.start == ["j0", "j1"]


def test_local_backend_wakes_the_scheduler_when_a_job_exits(tmp_path, toy_env):
    store = queue_jobs(tmp_path / "run", {"a": {}, "b": {}})
    backend = LocalBackend(1)
    scheduler = Scheduler(store, backend, spec_factory(store.run_dir, toy_env, 0.3), poll_interval_s=3600)
    scheduler.tick()  # starts `a`; `b` waits for the only slot
    assert backend.wakeup.wait(timeout=60)  # set by `a`'s exit, not by a poll timer
    started = time.monotonic()
    scheduler.drain()  # with an hour-long poll interval, only wake-ups can finish this
    assert time.monotonic() - started < 120
    assert [j.state for j in store.jobs()] == [JobState.DONE, JobState.DONE]


def test_a_batch_of_local_jobs_starts_together_each_leased_before_its_process(tmp_path, toy_env):
    store = queue_jobs(tmp_path / "run", {name: {} for name in ("a", "b", "c", "d")})
    backend = LocalBackend(4)
    make_spec = spec_factory(store.run_dir, toy_env, 0.3)
    leased_at_start = {}

    def spec_checking_the_lease(job):  # the scheduler makes a job's spec right before starting it
        leased_at_start[job.id] = store.job(job.id).state
        return make_spec(job)

    scheduler = Scheduler(store, backend, spec_checking_the_lease, poll_interval_s=0.05)
    scheduler.tick()  # all four start in this round, from several threads
    running = store.jobs({JobState.RUNNING})
    assert len(running) == 4 and len({j.worker for j in running}) == 4
    assert leased_at_start == {name: JobState.LEASED for name in ("a", "b", "c", "d")}
    scheduler.drain()
    assert all(r.valid for r in store.results().values()) and len(store.results()) == 4
