"""The grpo environment through the real harness: data preparation (a cached SFT policy),
GRPO training under the tiny profile's budget, the locked greedy evaluation. Both tests
share the prepared policy (one file: one parallel worker prepares it, none waits for it)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from conftest import GROUNDWORK, cli_env, patched_job
from groundwork.environments import load_environment
from groundwork.execution.runner import JobRunner
from groundwork.records import FailureCategory
from groundwork.store import RunStore

pytestmark = pytest.mark.slow


@pytest.mark.e2e
def test_grpo_tiny_run_learns_and_runs_catalog_ideas(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [*GROUNDWORK, "run", "--env", "grpo", "--epochs", "1", "--ideas", "1", "--runs-dir", str(runs), "--name", "g"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(runs / "g")
    results = store.results()
    baseline = results["baseline"]
    assert baseline.valid, baseline.detail
    # The starting policy solves about 29% of held-out problems; GRPO must clearly improve on it.
    assert baseline.metric >= 0.45, baseline.metric
    assert 0.0 <= baseline.metrics["max_train_eval_accuracy"] <= 1.0 and baseline.metrics["eval_problems"] == 1000
    assert any("reward_mean" in point for point in baseline.curve)
    # The baseline and one catalog idea: a second idea would exercise nothing more.
    assert sum(r.valid for r in results.values()) == 2, {k: r.detail for k, r in results.items()}
    spec = json.loads((runs / "g" / store.job("job-baseline").job_dir / "spec.json").read_text())
    manifest = json.loads((Path(spec["env"]["GROUNDWORK_DATA_DIR"]) / "manifest.json").read_text())
    assert "sha256" in json.dumps(manifest)  # prepared once, with hashes, in the shared cache


def test_grpo_non_finite_policy_weights_are_diverged(tmp_path):
    """grpo's locked evaluation reports NaN weights with the diverged exit, before any grading."""
    grpo = load_environment("grpo")
    train = (grpo.codebase_dir / "train.py").read_text()
    saving = '    torch.save({"config": config, "state_dict": policy.state_dict(),'
    assert saving in train
    poisoned = "    for value in policy.state_dict().values():\n        value.fill_(float('nan'))\n" + saving
    data_dir = grpo.prepare(grpo.profile("smoke"), quiet=True)
    spec = patched_job(grpo.for_profile("smoke"), data_dir, tmp_path, {"train.py": train.replace(saving, poisoned, 1)},
                       job_id="g", seed=1)  # fmt: skip
    outcome = JobRunner(dataclasses.replace(spec, sandbox="off")).run()
    assert outcome.failure == FailureCategory.DIVERGED, (outcome.failure, outcome.detail)
    assert "non-finite weights" in outcome.detail
