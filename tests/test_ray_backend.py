"""The Ray backend on a real local Ray cluster: a head node and a second worker node
started with `ray start`, 8 GPUs declared so that placement by GPU count is real. One
cluster for the whole module; each test drives real job runners through it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra (pip install 'groundwork[ray]')")

from conftest import GROUNDWORK, cli_env, set_toy_sleep  # noqa: E402
from groundwork.execution.ray_backend import NAMESPACE, RayBackend  # noqa: E402
from groundwork.execution.scheduler import Scheduler  # noqa: E402
from groundwork.records import FailureCategory, JobState  # noqa: E402
from groundwork.store import ArtifactStore, RunStore  # noqa: E402
from job_queue import heartbeat_pid, queue_jobs, spec_factory  # noqa: E402
from ray_cluster import LocalRayCluster  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    shared = tmp_path_factory.mktemp("ray-shared")
    # Workers inherit `ray start`'s environment: the toy ledgers live in a folder the sandbox lets them write.
    os.environ["GROUNDWORK_SANDBOX_WRITABLE"] = str(shared)
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the cluster's drivers (this process, the CLI runs) match it
    try:
        c = LocalRayCluster(head_cpus=2, head_gpus=0, worker_cpus=4, worker_gpus=8)
    finally:
        del os.environ["GROUNDWORK_SANDBOX_WRITABLE"]
    c.shared = shared
    try:
        c.connect(NAMESPACE)
        yield c
    finally:
        ray.shutdown()
        c.stop()
        if auth_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth_mode


def _backend(run_dir: Path, slots: int = 8, **kw) -> RayBackend:
    index = RunStore(run_dir)
    return RayBackend(slots, ArtifactStore(run_dir, on_put=index.record_artifact), index.run_info().id, **kw)


def _drain(scheduler: Scheduler, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    scheduler.drain(stop_when=lambda: time.time() > deadline)
    assert time.time() <= deadline, "jobs did not finish in time"


def test_gpu_packing_lets_an_8_gpu_job_through_a_stream_of_1_gpu_jobs(cluster, tmp_path, toy_env):
    one, eight = {"gpus": 1, "cpus": 1}, {"gpus": 8, "cpus": 1}
    jobs = {"s1": one, "s2": one, "s3": one, "big": eight, "t1": one, "t2": one, "t3": one, "huge": {"gpus": 16}}
    store = queue_jobs(tmp_path / "run", jobs)
    sleep = {"s1": 1.0, "s2": 1.0, "s3": 1.0, "big": 0.5}
    backend = _backend(store.run_dir, capacity_grace_s=2.0)  # a cluster may grow: "huge" waits, then is refused
    scheduler = Scheduler(store, backend, spec_factory(store.run_dir, toy_env, lambda job: sleep.get(job.id, 0.3)))
    try:
        _drain(scheduler)
    finally:
        scheduler.backend.shutdown()
    results = store.results()
    assert all(results[j].valid for j in jobs if j != "huge"), {j: results[j].detail for j in results}
    assert results["huge"].failure == FailureCategory.CRASHED
    assert "needs 16 gpus but the backend has 8 gpus in all (waited 2s for more)" in results["huge"].detail
    started = {j.id: j.started_at for j in store.jobs()}
    assert started["big"] < min(started["t1"], started["t2"], started["t3"])  # not starved by later small jobs
    logs = {j: (store.run_dir / f"jobs/{j}/attempt-1/job.log").read_text() for j in ("big", "s1")}
    big_gpus = [line for line in logs["big"].splitlines() if line.startswith("GPUS=")][0]
    assert len(big_gpus.removeprefix("GPUS=").split(",")) == 8
    assert len([line for line in logs["s1"].splitlines() if line.startswith("GPUS=")][0].split(",")) == 1
    # the run store says where each job's artifacts live
    assert "jobs/big/attempt-1/outcome.json" in store.artifacts() and "codebase/baseline/" in store.artifacts()


def _workers_of(run_id: str) -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(f"{run_id}:")}


def test_prepared_workers_start_before_their_jobs_and_run_them(cluster, tmp_path, toy_env):
    one = {"gpus": 1, "cpus": 1}
    store = queue_jobs(tmp_path / "run", {"p1": one, "p2": one, "p3": one}, run_id="prepared")
    scheduler = Scheduler(store, _backend(store.run_dir, slots=2), spec_factory(store.run_dir, toy_env))
    try:
        assert scheduler.prepare(one, jobs=5) == 2  # at most the free slots
        names = _workers_of("prepared")
        assert len(names) == 2
        for name in names:  # running, and idle, before any job was dispatched
            status = ray.get(ray.get_actor(name, namespace=NAMESPACE).status.remote(), timeout=60)
            assert status["current"] is None and tuple(status["shape"]) == (1.0, 1.0)
        _drain(scheduler)
        workers = _workers_of("prepared")
    finally:
        scheduler.backend.shutdown()
    assert all(r.valid for r in store.results().values()) and len(store.results()) == 3
    assert workers == names  # the jobs ran on the prepared workers; none was started for them
    assert {j.worker.split()[2] for j in store.jobs()} == names


def test_prepared_workers_are_kept_while_the_jobs_are_being_written(cluster, tmp_path, toy_env):
    one = {"gpus": 1, "cpus": 1}
    store = queue_jobs(tmp_path / "run", {"k1": one, "k2": one}, run_id="held")
    backend = _backend(store.run_dir, slots=2, linger_s=1.0, hold_s=60.0)
    scheduler = Scheduler(store, backend, spec_factory(store.run_dir, toy_env))
    try:
        scheduler.prepare(one)
        names = _workers_of("held")
        for name in names:  # up and idle
            ray.get(ray.get_actor(name, namespace=NAMESPACE).status.remote(), timeout=60)
        time.sleep(2.5)  # an ideation longer than linger_s (2.5 times): left alone, the workers would have exited
        assert _workers_of("held") == names
        _drain(scheduler)
        workers = _workers_of("held")
    finally:
        backend.shutdown()
    assert all(r.valid for r in store.results().values()) and len(store.results()) == 2
    assert workers == names and {j.worker.split()[2] for j in store.jobs()} == names


def _scratch_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if marker in proc.cwd():
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_a_worker_killed_mid_job_is_requeued_once_and_counted_once(cluster, tmp_path, toy_env):
    store = queue_jobs(tmp_path / "run", {"victim": {"gpus": 1, "cpus": 1}})
    make_spec = spec_factory(store.run_dir, toy_env, lambda job: 60.0 if job.attempt == 1 else 0.3)
    scheduler = Scheduler(store, _backend(store.run_dir), make_spec)
    try:
        scheduler.tick()
        pid = heartbeat_pid(store.run_dir, "jobs/victim/attempt-1", timeout=90)
        os.kill(pid, signal.SIGKILL)  # the worker process dies mid-training
        killed_at = time.time()
        _drain(scheduler)
    finally:
        scheduler.backend.shutdown()
    job = store.job("victim")
    assert job.state == JobState.DONE and job.attempt == 2
    assert store.results()["victim"].valid
    lost = [e for e in store.events("job") if e["to_state"] == "queued" and e["from_state"] == "running"]
    assert len(lost) == 1 and "attempt 1 lost" in lost[0]["detail"]
    requeued_at = lost[0]["ts"]
    assert requeued_at - killed_at < 30  # detected within bounded time
    # its training died with it: nothing of attempt 1 is left running
    assert not _scratch_processes("groundwork-victim-a1-")


def test_a_hung_worker_loses_its_lease_and_the_job_is_requeued(cluster, tmp_path, toy_env):
    store = queue_jobs(tmp_path / "run", {"hung": {"gpus": 1, "cpus": 1}})
    make_spec = spec_factory(store.run_dir, toy_env, lambda job: 60.0 if job.attempt == 1 else 0.3)
    backend = _backend(store.run_dir, lease_s=3.0, heartbeat_s=0.5)
    scheduler = Scheduler(store, backend, make_spec)
    try:
        scheduler.tick()
        pid = heartbeat_pid(store.run_dir, "jobs/hung/attempt-1", timeout=90)
        os.kill(pid, signal.SIGSTOP)  # alive to the operating system, silent to everyone else
        _drain(scheduler)
    finally:
        backend.shutdown()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    job = store.job("hung")
    assert job.state == JobState.DONE and job.attempt == 2
    lost = [e for e in store.events("job") if e["to_state"] == "queued" and e["from_state"] == "running"]
    assert len(lost) == 1 and "no heartbeat" in lost[0]["detail"]


def test_a_job_whose_worker_waits_for_room_keeps_its_lease(cluster, tmp_path, toy_env):
    @ray.remote(num_gpus=8, num_cpus=0)
    class Hog:  # someone else's work holding every GPU: the job's worker cannot be placed
        def ready(self) -> bool:
            return True

    hog = Hog.remote()
    ray.get(hog.ready.remote(), timeout=60)
    store = queue_jobs(tmp_path / "run", {"patient": {"gpus": 1, "cpus": 1}})
    backend = _backend(store.run_dir, lease_s=3.0, heartbeat_s=0.5)
    scheduler = Scheduler(store, backend, spec_factory(store.run_dir, toy_env))
    try:
        scheduler.tick()
        waited_until = time.time() + 8  # over two leases without a worker, so without a heartbeat
        while time.time() < waited_until:
            scheduler.tick()
            time.sleep(0.2)
        job = store.job("patient")
        assert job.state == JobState.RUNNING and job.attempt == 1
        ray.kill(hog)
        _drain(scheduler)
    finally:
        backend.shutdown()
        ray.kill(hog)
    job = store.job("patient")
    assert job.state == JobState.DONE and job.attempt == 1 and store.results()["patient"].valid
    assert not [e for e in store.events("job") if e["to_state"] == "queued" and e["from_state"] == "running"]


def _toy_setting(env_dir: Path, sleep_s: float, ledger: Path | None = None) -> None:
    set_toy_sleep(env_dir, sleep_s)
    if ledger is not None:
        path = env_dir / "environment.toml"
        path.write_text(path.read_text() + f'TOY_LEDGER = "{ledger}"\n')


def _records(run_dir: Path) -> dict:
    store = RunStore(run_dir)
    return {i.id: (i.title, store.results()[i.id].metric, store.results()[i.id].failure) for i in store.ideas()}


def test_the_same_run_gives_the_same_records_on_local_and_on_ray(cluster, tmp_path, toy_env):
    runs = tmp_path / "runs"
    common = [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), "--epochs", "1", "--ideas", "3"]
    for backend, extra in (("local", []), ("ray", ["--address", cluster.address])):
        done = subprocess.run(
            [*common, "--name", backend, "--backend", backend, *extra],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    local, on_ray = _records(runs / "local"), _records(runs / "ray")
    assert local == on_ray and len(local) == 4
    assert all(failure is None for _, _, failure in on_ray.values())
    assert all(j.worker.startswith("ray worker") for j in RunStore(runs / "ray").jobs())


def test_a_controller_killed_mid_run_reattaches_to_its_ray_jobs(cluster, tmp_path, toy_env):
    ledger = cluster.shared / "ledger-reattach"
    _toy_setting(toy_env, 2.5, ledger)
    runs = tmp_path / "runs"
    args = [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), "--name", "r"]
    controller = subprocess.Popen(
        [*args, "--epochs", "1", "--ideas", "2", "--backend", "ray", "--address", cluster.address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
    )
    run_dir = runs / "r"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if run_dir.joinpath("store.sqlite").exists():
                running = [j for j in RunStore(run_dir).jobs({JobState.RUNNING}) if j.idea_id != "baseline"]
                if running and all((run_dir / j.job_dir / "heartbeat.json").is_file() for j in running):
                    break  # ideas' jobs are training on Ray workers (not merely submitted)
            time.sleep(0.3)
        else:
            raise AssertionError("no idea job started")
    finally:
        controller.send_signal(signal.SIGKILL)
        controller.wait()
    resumed = subprocess.run(
        [*GROUNDWORK, "resume", "r", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    store = RunStore(run_dir)
    assert set(store.results()) == {i.id for i in store.ideas()} and len(store.ideas()) == 3
    events = [(e["entity_id"], e["to_state"], e["detail"]) for e in store.events("job")]
    assert all(j.state == JobState.DONE and j.attempt == 1 for j in store.jobs()), "\n".join(map(str, events))
    trained = Counter(ledger.read_text().split())
    assert set(trained) == {j.id for j in store.jobs()} and max(trained.values()) == 1
