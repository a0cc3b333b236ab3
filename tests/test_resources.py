from __future__ import annotations

import pytest

from groundwork.execution.resources import plan_slots
from groundwork.run_lock import RunBusy, controller_lock


def test_cpu_slots_share_the_cores():
    plan = plan_slots(2, gpus_per_job=0, cpu_count=2)
    assert plan.slots == 2 and plan.threads == 1 and plan.gpus == {0: [], 1: []}
    assert plan_slots(1, gpus_per_job=0, cpu_count=8).threads == 8


def test_gpu_slots_get_disjoint_devices():
    plan = plan_slots(8, gpus_per_job=2, cpu_count=16, gpus=[0, 1, 2, 3, 4])
    assert plan.slots == 2 and plan.gpus == {0: [0, 1], 1: [2, 3]} and plan.threads == 8


def test_gpu_profile_without_gpus_is_a_clear_error():
    with pytest.raises(RuntimeError, match="needs 1 GPU.*0 are visible.*--profile tiny"):
        plan_slots(2, gpus_per_job=1, cpu_count=2, gpus=[])


def test_one_controller_per_run(tmp_path):
    with controller_lock(tmp_path):
        with pytest.raises(RunBusy, match=r"already being driven by pid \d+"):
            with controller_lock(tmp_path):
                pass
    with controller_lock(tmp_path):  # released when the first one ends
        pass


# ---- the default memory cap --------------------------------------------------------------


def test_the_memory_cap_is_the_one_asked_for_else_the_declared_one_else_a_share_of_the_machine():
    from groundwork.execution.resources import MEMORY_SHARE, job_memory_cap_mb, total_memory_mb

    assert job_memory_cap_mb(512, declared=2048, slots=4, local=True) == 512
    assert job_memory_cap_mb(0, declared=2048, slots=4, local=True) == 0  # asked for: no limit
    assert job_memory_cap_mb(None, declared=2048, slots=4, local=False) == 2048
    share = job_memory_cap_mb(None, declared=None, slots=4, local=True)
    assert share == pytest.approx(MEMORY_SHARE * total_memory_mb() / 4, abs=1)
    assert job_memory_cap_mb(None, declared=None, slots=4, local=False) is None  # the worker's own share


def test_a_spec_that_leaves_the_cap_open_runs_under_a_share_of_the_worker_and_says_so(toy_env, tmp_path):
    from groundwork.execution.resources import MEMORY_SHARE, total_memory_mb
    from groundwork.execution.runner import JobRunner
    from test_runner import _spec

    outcome = JobRunner(_spec(toy_env, tmp_path / "job", memory_limit_mb=None)).run()
    assert outcome.failure is None, outcome.detail
    assert outcome.flags["memory_limit_mb"] == pytest.approx(MEMORY_SHARE * total_memory_mb(), abs=1)


def test_a_profiles_declared_memory_caps_its_jobs_by_default(toy_env, tmp_path):
    """The whole chain: the manifest's [resources] memory_mb, the run's default, the job's
    spec, the runner's kill and the recorded flag."""
    import subprocess

    from conftest import GROUNDWORK, cli_env
    from groundwork.store import RunStore

    manifest = toy_env / "environment.toml"
    manifest.write_text(
        manifest.read_text().replace("[profiles.quick]", "[resources]\nmemory_mb = 120\n\n[profiles.quick]")
    )
    train = toy_env / "baseline" / "train.py"
    train.write_text(
        train.read_text().replace("    time.sleep(sleep_s)\n", "    held = b'x' * (300 * 2**20)\n    time.sleep(5)\n")
    )
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), "--name", "r", "--epochs", "0"],
        capture_output=True, text=True, env=cli_env(), timeout=240,
    )  # fmt: skip
    # the baseline is killed at the cap (twice: a failed baseline is retried once), so the run stops
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the baseline failed twice" in proc.stdout and "memory limit of 120 MB" in proc.stdout
    baseline = RunStore(runs / "r").results()["baseline"]
    assert "memory limit of 120 MB" in baseline.detail
    assert baseline.flags["memory_limit_mb"] == 120
