"""Verdicts respect the baseline's noise: a gain inside it is never called an improvement."""

from __future__ import annotations

from groundwork.analysis.summary import Funnel, IdeaRow, RunSummary


def _summary(baselines: list[float], stored: float | None = None) -> RunSummary:
    base = IdeaRow("baseline", 0, "Baseline", "baseline", "environment", "ok", baselines[0])
    return RunSummary(
        run_id="r",
        status="finished",
        environment="nanogpt",
        profile="tiny",
        metric="val_bpb",
        direction="minimize",
        origins=[],
        baseline=base,
        rows=[],
        funnel=Funnel(),
        baseline_metrics=baselines,
        stored_noise_std=stored,
    )


def _row(metric: float) -> IdeaRow:
    return IdeaRow("e1-01", 1, "idea", "simple", "x", "ok", metric)


def test_gain_inside_two_sd_is_within_noise():
    summary = _summary([3.00, 3.02, 2.98])  # sd 0.02
    assert summary.noise is not None and abs(summary.noise[1] - 0.02) < 1e-9
    assert summary.verdict(_row(2.97)) == "within noise"
    assert summary.verdict(_row(2.90)) == "better"
    assert summary.verdict(_row(3.10)) == "worse"


def test_stored_noise_floor_is_used_when_the_run_has_one_baseline():
    assert _summary([3.0], stored=0.1).verdict(_row(2.85)) == "within noise"
    assert _summary([3.0], stored=0.01).verdict(_row(2.85)) == "better"
    assert _summary([3.0]).verdict(_row(2.85)) == "better, noise unknown"
