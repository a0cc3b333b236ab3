"""The built-in `quadratic` environment (the quick offline RL example's): its jobs, run by
the real job runner, score the loss that gradient descent at the idea's knobs reaches;
a learning rate that diverges, or weights that are not finite numbers, score nothing."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import patched_job
from groundwork.environments import load_environment
from groundwork.execution.runner import JobRunner
from groundwork.records import FailureCategory

ENV = load_environment("quadratic")
TRAIN = (ENV.codebase_dir / "train.py").read_text()


def _loss(lr: float, warmup: int, steps: int = 100) -> float:
    """The same gradient descent as train.py, computed here: the figure a job must report."""
    w, curvatures = [0.0, 0.0, 0.0], [1.0, 0.1, 0.01]
    for step in range(steps):
        rate = lr * min(1.0, (step + 1) / warmup) if warmup > 0 else lr
        w = [wi - rate * h * (wi - 3.0) for wi, h in zip(w, curvatures, strict=True)]
    return sum(0.5 * h * (wi - 3.0) ** 2 for wi, h in zip(w, curvatures, strict=True))


def _run(tmp_path, train: str | None):
    data = ENV.prepare(ENV.profile(), quiet=True)
    spec = patched_job(ENV, data, tmp_path, train and {"train.py": train}, job_id="job-q", seed=0)
    return JobRunner(dataclasses.replace(spec, sandbox="off")).run()


@pytest.mark.parametrize("lr, warmup", [(None, None), ("1e-1", "1")], ids=["baseline", "tuned"])
def test_a_job_scores_the_loss_its_knobs_reach(tmp_path, lr, warmup):
    train = TRAIN
    if lr:
        train = train.replace("lr = 1e-2", f"lr = {lr}").replace("warmup = 10", f"warmup = {warmup}")
    outcome = _run(tmp_path, train if lr else None)
    assert outcome.failure is None, outcome.detail
    expected = _loss(float(lr or 1e-2), int(warmup or 10))
    assert outcome.metric == pytest.approx(expected, rel=1e-9)
    assert _loss(0.1, 1) < _loss(0.01, 10) / 5  # the tuned knobs are far better: there is something to learn


def test_a_diverging_learning_rate_scores_nothing(tmp_path):
    outcome = _run(tmp_path, TRAIN.replace("lr = 1e-2", "lr = 3"))
    assert outcome.failure == FailureCategory.METRIC_IMPLAUSIBLE and outcome.metric is None


def test_weights_that_are_not_finite_numbers_are_refused(tmp_path):
    forged = TRAIN.replace("json.dump(w, fh)", 'fh.write("[NaN, 3.0, 3.0]")')
    outcome = _run(tmp_path, forged)
    assert outcome.failure == FailureCategory.CRASHED and outcome.metric is None
    assert "weight 0 is nan, not a finite number" in outcome.detail
