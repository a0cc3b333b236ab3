"""The Slurm backend. Without a Slurm cluster here, jobs go through submitit's local
executor, which runs the very same submission path (pickled job, submitit's own job
process, our remote-job contract through the artifact store); the sbatch script a real
cluster would get is checked for the resources the job asks for."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit", reason="the Slurm backend needs the slurm extra")

from groundwork.execution.scheduler import Scheduler  # noqa: E402
from groundwork.execution.slurm_backend import SlurmBackend  # noqa: E402
from groundwork.protocols import LostJob  # noqa: E402
from groundwork.records import JobState  # noqa: E402
from groundwork.store import ArtifactStore, RunStore  # noqa: E402
from job_queue import heartbeat_pid, queue_jobs, spec_factory  # noqa: E402


def _backend(run_dir: Path, **kw) -> SlurmBackend:
    index = RunStore(run_dir)
    artifacts = ArtifactStore(run_dir, on_put=index.record_artifact)
    return SlurmBackend(2, artifacts, run_dir / "slurm", cluster=kw.pop("cluster", "local"), **kw)


def test_without_slurm_the_backend_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    store = queue_jobs(tmp_path / "run", {"a": {}})
    with pytest.raises(RuntimeError, match="no Slurm here"):
        _backend(store.run_dir, cluster="slurm")


def test_the_sbatch_script_asks_for_the_jobs_resources(tmp_path, toy_env, monkeypatch):
    # A stub `srun` on PATH only passes submitit's "is this a Slurm machine" check; the
    # sbatch script below is the one submitit really writes.
    stub_bin = tmp_path / "stub-bin"
    stub_bin.mkdir()
    (stub_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (stub_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub_bin}{os.pathsep}{os.environ['PATH']}")
    store = queue_jobs(tmp_path / "run", {"big": {"gpus": 8, "cpus": 4}})
    backend = _backend(store.run_dir, cluster="slurm", partition="gpu", account="lab", extra={"qos": "high"}, mem_gb=64)
    job = store.transition_job("big", JobState.LEASED, slot=0, job_dir="jobs/big/attempt-1")
    spec = spec_factory(store.run_dir, toy_env, time_budget_s=600.0, grace_s=30.0, eval_timeout_s=120.0)(job)
    backend.executor.update_parameters(**backend.parameters(spec))
    script = backend.executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in (
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --qos=high",
        "#SBATCH --mem=64GB",
        "#SBATCH --job-name=groundwork-big-a1",
        "#SBATCH --time=18",  # ceil((600 + 30 + 120) / 60) + 5 minutes of margin
    ):
        assert line in script, script


def _stub_slurm(tmp_path: Path, monkeypatch, state: str) -> tuple[Path, Path]:
    """Slurm's commands as scripts on PATH: sbatch queues job 4242, sacct reports the state
    written to the returned file, scancel records its arguments in the second one."""
    stub_bin, state_file, cancelled = tmp_path / "slurm-bin", tmp_path / "slurm-state", tmp_path / "scancel-calls"
    stub_bin.mkdir()
    state_file.write_text(state)
    scripts = {
        "srun": "exit 1",
        "sbatch": "echo 'Submitted batch job 4242'",
        "sacct": f"printf 'JobID|State|NodeList\\n4242|%s|node1\\n' \"$(cat {state_file})\"",
        "scancel": f'echo "$@" >> {cancelled}',
    }
    for name, body in scripts.items():
        (stub_bin / name).write_text(f"#!/bin/sh\n{body}\n")
        (stub_bin / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub_bin}{os.pathsep}{os.environ['PATH']}")
    return state_file, cancelled


def test_a_job_waiting_in_the_queue_keeps_its_lease_until_it_starts(tmp_path, toy_env, monkeypatch):
    state, cancelled = _stub_slurm(tmp_path, monkeypatch, "PENDING")
    store = queue_jobs(tmp_path / "run", {"queued": {"cpus": 1}})
    backend = _backend(store.run_dir, cluster="slurm", lease_s=1.0, heartbeat_s=0.5)
    job = store.transition_job("queued", JobState.LEASED, slot=0, job_dir="jobs/queued/attempt-1")
    spec = spec_factory(store.run_dir, toy_env)(job)
    backend.start(spec)
    waited_until = time.time() + 3  # three leases in the queue, never a heartbeat
    while time.time() < waited_until:
        assert backend.poll() == []
        time.sleep(0.2)
    # The controller restarts: the new one finds the job in the queue and waits with it too.
    backend = _backend(store.run_dir, cluster="slurm", lease_s=1.0, heartbeat_s=0.5)
    assert backend.reattach(spec)
    waited_until = time.time() + 2.5
    while time.time() < waited_until:
        assert backend.poll() == []
        time.sleep(0.2)
    assert not cancelled.exists()
    state.write_text("RUNNING")  # started, and silent: nothing runs it here
    deadline, reports = time.time() + 30, []
    while not reports and time.time() < deadline:
        reports = backend.poll()
        time.sleep(0.2)
    assert len(reports) == 1 and isinstance(reports[0], LostJob), reports
    assert reports[0].job_id == "queued" and "no heartbeat" in reports[0].reason
    assert "4242" in cancelled.read_text()


def test_jobs_run_through_submitit_and_their_logs_come_back(tmp_path, toy_env):
    store = queue_jobs(tmp_path / "run", {"a": {"cpus": 1}, "b": {"cpus": 1}})
    scheduler = Scheduler(store, _backend(store.run_dir), spec_factory(store.run_dir, toy_env))
    deadline = time.time() + 180
    try:
        scheduler.drain(stop_when=lambda: time.time() > deadline)
    finally:
        scheduler.backend.shutdown()
    results = store.results()
    assert results["a"].valid and results["b"].valid, {k: r.detail for k, r in results.items()}
    assert all(j.worker.startswith("local job") for j in store.jobs())
    assert "===== groundwork: train" in (store.run_dir / "jobs/a/attempt-1/job.log").read_text()
    assert "jobs/a/attempt-1/outcome.json" in store.artifacts()
    assert store.artifacts()["codebase/baseline/"]["url"] == str(store.run_dir.resolve() / "codebase" / "baseline")


@pytest.mark.slow
def test_a_killed_slurm_job_is_requeued_and_counted_once(tmp_path, toy_env):
    store = queue_jobs(tmp_path / "run", {"victim": {"cpus": 1}})
    make_spec = spec_factory(store.run_dir, toy_env, lambda job: 60.0 if job.attempt == 1 else 0.3)
    scheduler = Scheduler(store, _backend(store.run_dir), make_spec)
    deadline = time.time() + 180
    try:
        scheduler.tick()
        os.kill(heartbeat_pid(store.run_dir, "jobs/victim/attempt-1", timeout=60), signal.SIGKILL)
        scheduler.drain(stop_when=lambda: time.time() > deadline)
    finally:
        scheduler.backend.shutdown()
    job = store.job("victim")
    assert job.state == JobState.DONE and job.attempt == 2 and store.results()["victim"].valid
    lost = [e for e in store.events("job") if e["from_state"] == "running" and e["to_state"] == "queued"]
    assert len(lost) == 1 and "slurm job ended without an outcome" in lost[0]["detail"]


@pytest.mark.slow
def test_a_restarted_controller_adopts_a_job_still_running(tmp_path, toy_env):
    store = queue_jobs(tmp_path / "run", {"long": {"cpus": 1}})
    make_spec = spec_factory(store.run_dir, toy_env, 3.0)
    first = Scheduler(store, _backend(store.run_dir), make_spec)
    first.tick()
    heartbeat_pid(store.run_dir, "jobs/long/attempt-1", timeout=60)
    # A new controller (new backend, new scheduler) takes over while the job runs.
    second = Scheduler(RunStore(store.run_dir), _backend(store.run_dir), make_spec)
    second.recover()
    deadline = time.time() + 120
    second.drain(stop_when=lambda: time.time() > deadline)
    job = RunStore(store.run_dir).job("long")
    assert job.state == JobState.DONE and job.attempt == 1  # adopted, not re-run
