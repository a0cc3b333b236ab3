"""Under a compute budget one seed gives one number, whatever else the machine is doing:
the same smoke job of nanogpt and of grpo, once on a quiet machine and once beside
processes that burn every core, ends with exactly the same metric."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from groundwork.environments import load_environment
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.runner import JobRunner

pytestmark = pytest.mark.slow

BURN = [sys.executable, "-c", "while True: pass"]


def _metric(env_name: str, tmp_path: Path, name: str, *, burners: int) -> tuple[float, dict]:
    env = load_environment(env_name, profile="smoke")
    profile = env.profile()
    assert profile.budget == "compute"
    data = env.prepare(profile, quiet=True)
    job_dir = tmp_path / name
    job_dir.mkdir()
    # threads=2 is what a 2-core machine would hand one slot; a compute budget overrides it.
    spec = environment_job_spec(env, profile, data, job_dir, job_id=name, seed=5, threads=2, sandbox="off")
    assert spec.threads == profile.resources.cpus == 1
    procs = [subprocess.Popen(BURN) for _ in range(burners)]
    try:
        outcome = JobRunner(spec).run()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert outcome.failure is None, outcome.detail
    return outcome.metric, outcome.metrics


@pytest.mark.parametrize("env_name", ["nanogpt", "grpo"])
def test_one_seed_one_number_on_a_quiet_and_a_saturated_machine(env_name, tmp_path):
    burners = max(2, min(3, os.cpu_count() or 2))
    quiet, quiet_metrics = _metric(env_name, tmp_path, "quiet", burners=0)
    busy, busy_metrics = _metric(env_name, tmp_path, "busy", burners=burners)
    assert busy == quiet  # exactly: nothing in training or evaluation depends on the clock
    assert busy_metrics.get("steps") == quiet_metrics.get("steps")
