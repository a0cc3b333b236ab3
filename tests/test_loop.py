"""The whole loop on the seconds-fast toy environment, through the real CLI: runs,
resume after a real SIGKILL of the controller, a lost worker, and the catalog search."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from conftest import GROUNDWORK, cli_env, gated_toy, set_toy_sleep
from groundwork.records import IdeaState, JobState
from groundwork.store import RunStore


def _run_args(env_dir: Path, runs: Path, *extra: str) -> list[str]:
    return [*GROUNDWORK, "run", "--env", str(env_dir), "--runs-dir", str(runs), "--name", "r", *extra]


def _query(run_dir: Path, sql: str) -> list[tuple]:
    db = run_dir / "store.sqlite"
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _assert_complete(run_dir: Path, ledger: Path) -> None:
    store = RunStore(run_dir)
    ideas = store.ideas()
    results = store.results()
    assert len(ideas) == 1 + 2 * 2 and set(results) == {i.id for i in ideas}  # each idea: exactly one result
    assert all(j.state in {JobState.DONE, JobState.FAILED, JobState.TIMED_OUT} for j in store.jobs())
    runs_per_job = Counter(ledger.read_text().split())
    assert runs_per_job and max(runs_per_job.values()) == 1, runs_per_job  # nothing trained twice
    assert set(runs_per_job) == {j.id for j in store.jobs()}
    assert store.run_info().status == "finished"


@pytest.mark.slow
@pytest.mark.e2e
def test_toy_run_end_to_end_prints_the_table(toy_env, tmp_path):
    proc = subprocess.run(
        _run_args(toy_env, tmp_path / "runs", "--epochs", "2", "--ideas", "3"),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "catalog (no LLM)" in out and "execution rate:" in out and "baseline" in out
    assert re.search(r"best loss \d\.\d{4} by e\d-\d\d", out), out
    store = RunStore(tmp_path / "runs" / "r")
    results = store.results()
    assert results["baseline"].valid and abs(results["baseline"].metric - 1.56) < 1e-9
    epoch2 = store.ideas(epoch=2)
    # the second epoch exploits winners of the first: refinements or combinations of them
    assert any(i.prompt_kind == "exploit" and i.parents for i in epoch2), [i.title for i in epoch2]
    status = subprocess.run(
        [*GROUNDWORK, "status", "r", "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert status.returncode == 0 and "execution rate:" in status.stdout


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("kill_when", ["first_job_running", "first_result"])
def test_resume_after_sigkill_loses_and_repeats_nothing(toy_env, tmp_path, kill_when):
    set_toy_sleep(toy_env, 0.6)  # long enough to catch a job running at a 0.1 s look, kill mid-job
    runs, ledger = tmp_path / "runs", tmp_path / "ledger"
    env = cli_env({"TOY_LEDGER": str(ledger)})
    controller = subprocess.Popen(
        _run_args(toy_env, runs, "--epochs", "2", "--ideas", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    run_dir = runs / "r"
    try:
        if kill_when == "first_job_running":
            _wait_for(lambda: _query(run_dir, "SELECT 1 FROM jobs WHERE state = 'running' AND idea_id != 'baseline'"))
        else:
            _wait_for(lambda: _query(run_dir, "SELECT 1 FROM results WHERE idea_id != 'baseline'"))
    finally:
        controller.send_signal(signal.SIGKILL)
        controller.wait()
    assert _query(run_dir, "SELECT status FROM run") == [("running",)]
    resumed = subprocess.run(
        [*GROUNDWORK, "resume", "r", "--runs-dir", str(runs)], capture_output=True, text=True, env=env, timeout=240
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _assert_complete(run_dir, ledger)


@pytest.mark.slow
def test_a_killed_worker_is_requeued_and_its_idea_gets_one_result(toy_env, tmp_path):
    runs, ledger, gate = tmp_path / "runs", tmp_path / "ledger", tmp_path / "gate"
    env = gated_toy(toy_env, gate, {"TOY_LEDGER": str(ledger)})  # the baseline trains until the kill
    proc = subprocess.Popen(
        _run_args(toy_env, runs, "--epochs", "1", "--ideas", "2", "--slots", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    run_dir = runs / "r"
    _wait_for(
        lambda: (
            _query(run_dir, "SELECT 1 FROM jobs WHERE id = 'job-baseline' AND state = 'running'")
            and (run_dir / "jobs" / "job-baseline" / "attempt-1" / "phase.pid").exists()
        )
    )
    runner_pid = None
    for p in psutil.process_iter(["cmdline"]):
        if any("attempt-1/spec.json" in part and "job-baseline" in part for part in (p.info["cmdline"] or [])):
            runner_pid = p.pid
    assert runner_pid is not None
    os.killpg(runner_pid, signal.SIGKILL)  # the worker dies mid-job; its training is orphaned
    (gate / "open").touch()
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    store = RunStore(run_dir)
    job = store.job("job-baseline")
    assert job.attempt == 2 and job.state == JobState.DONE
    assert store.results()["baseline"].valid
    events = [e for e in store.events("job") if e["entity_id"] == "job-baseline"]
    assert any(e["to_state"] == "queued" and "lost" in e["detail"] for e in events)


@pytest.mark.slow
@pytest.mark.e2e
def test_ctrl_c_stops_jobs_cleanly_and_resume_finishes(toy_env, tmp_path):
    runs, ledger, gate = tmp_path / "runs", tmp_path / "ledger", tmp_path / "gate"
    env = gated_toy(toy_env, gate, {"TOY_LEDGER": str(ledger)})  # the baseline trains until Ctrl+C
    proc = subprocess.Popen(
        _run_args(toy_env, runs, "--epochs", "1", "--ideas", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    run_dir = runs / "r"
    _wait_for(lambda: (run_dir / "jobs" / "job-baseline" / "attempt-1" / "phase.pid").exists())
    phase_pid = int((run_dir / "jobs" / "job-baseline" / "attempt-1" / "phase.pid").read_text())
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "groundwork resume" in out
    assert not psutil.pid_exists(phase_pid) or psutil.Process(phase_pid).status() == psutil.STATUS_ZOMBIE
    store = RunStore(run_dir)
    assert store.run_info().status == "interrupted"
    assert store.job("job-baseline").state == JobState.QUEUED and store.job("job-baseline").attempt == 2
    (gate / "open").touch()
    resumed = subprocess.run(
        [*GROUNDWORK, "resume", str(run_dir)], capture_output=True, text=True, env=env, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert set(RunStore(run_dir).results()) == {"baseline", "e1-01"}


def test_env_baseline_measures_and_stores_the_noise_floor(toy_env, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [*GROUNDWORK, "env", "baseline", str(toy_env), "--seeds", "3", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "noise floor of toy (quick): loss = 1.5600 +- 0.0000 over 3 seeds" in proc.stdout
    [run_dir] = list(runs.iterdir())
    store = RunStore(run_dir)
    seeds = sorted(
        json.loads((run_dir / j.job_dir / "spec.json").read_text())["env"]["GROUNDWORK_SEED"] for j in store.jobs()
    )
    assert seeds == ["0", "1", "2"]
    from groundwork.noise_floor import load_noise_floor

    floor = load_noise_floor("toy", "quick")
    assert floor["seeds"] == 3 and abs(floor["mean"] - 1.56) < 1e-9 and floor["std"] == 0.0


@pytest.mark.slow
def test_best_of_n_run_asks_only_simple_prompts(toy_env, tmp_path):
    runs = tmp_path / "runs"
    args = _run_args(toy_env, runs, "--search", "best-of-n", "--epochs", "2", "--ideas", "2", "--baseline-seeds", "2")
    proc = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(runs / "r")
    ideas = [i for i in store.ideas() if i.epoch > 0]
    assert len(ideas) == 4 and {str(i.prompt_kind) for i in ideas} == {"simple"}
    assert "baseline 1.5600 ± 0.0000 (sd over 2 seeds)" in proc.stdout and "; over 2 seeds" not in proc.stdout


def test_a_job_starts_while_the_epochs_other_ideas_are_still_being_implemented(toy_env, tmp_path):
    """Implementation and running overlap: the first idea's job is running before the
    second idea's (slow) implementation ends."""
    import dataclasses

    from groundwork.config import RunConfig
    from groundwork.environments import load_environment
    from groundwork.loop import ResearchLoop
    from groundwork.runs import create_run, run_config
    from groundwork.wiring import build_components

    store = create_run(RunConfig(environment=str(toy_env), epochs=1, ideas_per_epoch=2, slots=2), tmp_path / "runs")
    env = load_environment(store.run_dir / "environment")
    parts = build_components(env, env.profile(), run_config(store), store.run_dir)
    seen_running: list[bool] = []

    class SlowSecondImplementer:  # test-only: waits, on the second idea, for the first idea's job to start
        label = parts.implementer.label

        def implement(self, idea, codebase):
            if idea.index == 2:
                watcher = RunStore(store.run_dir)

                def first_job_started() -> bool:
                    return any(j.idea_id == "e1-01" and j.state != JobState.QUEUED for j in watcher.jobs())

                deadline = time.time() + 30
                while not first_job_started() and time.time() < deadline:
                    time.sleep(0.1)
                seen_running.append(first_job_started())
            return parts.implementer.implement(idea, codebase)

    ResearchLoop(store, dataclasses.replace(parts, implementer=SlowSecondImplementer())).run()
    assert seen_running == [True]
    assert store.run_info().status == "finished" and len(store.results()) == 3


@pytest.mark.slow
def test_a_failing_baseline_is_retried_once_then_stops_the_run_and_resume_tries_again(toy_env, tmp_path):
    """No idea runs without its reference: a baseline that crashes runs once more, then the
    run stops with the failure, the job log and what to do; once the cause is gone,
    resume runs the baseline again and the run goes on."""
    broken = tmp_path / "broken"
    broken.write_text("")
    train = toy_env / "baseline" / "train.py"
    train.write_text(
        train.read_text().replace(
            'if __name__ == "__main__":\n',
            'if __name__ == "__main__":\n'
            f'    if os.path.exists({str(broken)!r}):\n        raise SystemExit("toy: broken")\n',
        )
    )
    runs = tmp_path / "runs"
    args = _run_args(toy_env, runs, "--epochs", "1", "--ideas", "2", "--sandbox", "off")
    proc = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "the baseline failed twice (crashed: training exited with code 1" in output.replace("\n", " ")
    assert "job.log" in output and "groundwork resume" in output
    store = RunStore(runs / "r")
    assert store.run_info().status == "baseline_failed"
    # Epoch 1's ideas were proposed while the baseline ran, but none was implemented or ran.
    assert {i.id: i.state for i in store.ideas() if i.id != "baseline"} == {
        "e1-01": IdeaState.PROPOSED,
        "e1-02": IdeaState.PROPOSED,
    }
    assert [j.id for j in store.jobs()] == ["job-baseline"]
    assert {p.idea_id for p in store.patches()} == {"baseline"}
    job = store.job("job-baseline")
    assert job.attempt == 2 and job.state == JobState.FAILED
    assert (runs / "r" / job.job_dir / "job.log").is_file()
    assert any("baseline retried once" in e["detail"] for e in store.events("job"))

    broken.unlink()
    resumed = subprocess.run(
        [*GROUNDWORK, "resume", str(runs / "r")], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    store = RunStore(runs / "r")
    results = store.results()
    assert store.run_info().status == "finished" and results["baseline"].valid
    assert store.job("job-baseline").attempt == 3 and len(results) == 3
