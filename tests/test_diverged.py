"""A training that diverges is reported as `diverged` (repairable), never as a crash or as
a failed integrity guard: a NaN training loss is read from the curve, and NaN logits are
seen by the locked evaluation before its causality guard (NaN fails every comparison, so
the guard would blame causality). Real job runner, nanogpt's smoke profile."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import patched_job
from groundwork.environments import load_environment
from groundwork.execution.runner import JobRunner, first_non_finite_loss
from groundwork.implementation.repair import repairable
from groundwork.records import FailureCategory

NANOGPT = load_environment("nanogpt")
TRAIN = (NANOGPT.codebase_dir / "train.py").read_text()


@pytest.fixture(scope="module")
def nanogpt_data() -> Path:
    return NANOGPT.prepare(NANOGPT.profile("smoke"), quiet=True)


def _run(tmp_path: Path, data_dir: Path, train: str):
    spec = patched_job(NANOGPT.for_profile("smoke"), data_dir, tmp_path, {"train.py": train}, job_id="j", seed=1)
    return JobRunner(dataclasses.replace(spec, grace_s=30.0, eval_timeout_s=90.0, sandbox="off")).run()


def test_a_knob_edit_that_blows_up_the_loss_is_diverged(tmp_path, nanogpt_data):
    assert "learning_rate = 2e-3" in TRAIN
    outcome = _run(tmp_path, nanogpt_data, TRAIN.replace("learning_rate = 2e-3", "learning_rate = 1e12", 1))
    assert outcome.failure == FailureCategory.DIVERGED, (outcome.failure, outcome.detail)
    assert "diverged" in outcome.detail and "causal" not in outcome.detail
    assert repairable(outcome)


def test_a_nan_loss_in_the_curve_is_diverged_even_when_training_then_crashes(tmp_path, toy_env):
    train = (
        "import json, os\n"
        "os.makedirs('out', exist_ok=True)\n"
        "with open('out/train_log.jsonl', 'w') as log:\n"
        "    log.write(json.dumps({'step': 1, 'loss': 2.5}) + '\\n')\n"
        "    log.write(json.dumps({'step': 2, 'loss': float('nan')}) + '\\n')\n"
        "raise SystemExit('optimizer state is NaN')\n"
    )
    env = load_environment(toy_env)
    spec = patched_job(env, tmp_path / "data", tmp_path, {"train.py": train}, job_id="toy", seed=1)
    outcome = JobRunner(spec).run()
    assert outcome.failure == FailureCategory.DIVERGED, (outcome.failure, outcome.detail)
    assert outcome.detail == "training diverged: loss nan at step 2 of train_log.jsonl"
    assert [point["step"] for point in outcome.curve] == [1, 2]  # the curve is kept


def test_nan_logits_are_diverged_not_a_causality_failure(tmp_path, nanogpt_data):
    """Training's loss stays finite; the weights it saves are NaN."""
    saving = '    torch.save(ckpt, os.path.join(OUT_DIR, "ckpt.pt"))'
    assert saving in TRAIN
    poisoned = "    for value in ckpt['state_dict'].values():\n        value.fill_(float('nan'))\n" + saving
    outcome = _run(tmp_path, nanogpt_data, TRAIN.replace(saving, poisoned, 1))
    assert outcome.failure == FailureCategory.DIVERGED, (outcome.failure, outcome.detail)
    assert "logits hold NaN" in outcome.detail and "not causal" not in outcome.detail


def test_the_first_non_finite_loss_is_named_with_its_step():
    curve = [{"step": 1, "loss": 5.0}, {"step": 5, "loss": float("inf")}, {"step": 9, "loss": float("nan")}]
    assert first_non_finite_loss(curve) == "loss inf at step 5 of train_log.jsonl"
    assert first_non_finite_loss([{"step": 1, "loss": 2.0, "lr": float("nan")}]) == ""
