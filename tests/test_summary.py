"""Verdicts respect the baseline's noise: a gain inside it is never called an improvement."""

from __future__ import annotations

import dataclasses

from groundwork.analysis.summary import Funnel, IdeaRow, RowStatus, RunSummary
from groundwork.comparison import Verdict
from groundwork.records import FailureCategory, IdeaState, JobState, Result


def _summary(baselines: list[float], stored: float | None = None) -> RunSummary:
    base = IdeaRow("baseline", 0, "Baseline", "baseline", "environment", RowStatus.OK, baselines[0])
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
    return IdeaRow("e1-01", 1, "idea", "simple", "x", RowStatus.OK, metric)


def test_gain_inside_two_sd_is_within_noise():
    summary = _summary([3.00, 3.02, 2.98])  # sd 0.02
    assert summary.noise is not None and abs(summary.noise[1] - 0.02) < 1e-9
    assert summary.verdict(_row(2.97)) is Verdict.WITHIN_NOISE
    assert summary.verdict(_row(2.90)) is Verdict.BETTER
    assert summary.verdict(_row(3.10)) is Verdict.WORSE


def test_stored_noise_floor_is_used_when_the_run_has_one_baseline():
    assert _summary([3.0], stored=0.1).verdict(_row(2.85)) is Verdict.WITHIN_NOISE
    assert _summary([3.0], stored=0.01).verdict(_row(2.85)) is Verdict.BETTER
    assert _summary([3.0]).verdict(_row(2.85)) is Verdict.BETTER_NOISE_UNKNOWN
    assert _summary([3.0]).verdict(_row(3.15)) is Verdict.NOT_BETTER


def test_verdicts_and_row_statuses_print_as_the_text_views_and_stores_hold():
    """Enums whose values are the text printed, exported and compared before they were enums."""
    assert [str(v) for v in Verdict] == [
        "better", "worse", "within noise", "better, noise unknown", "not better", "unknown"
    ]  # fmt: skip
    assert f"{Verdict.BETTER_NOISE_UNKNOWN}" == "better, noise unknown" and Verdict.WITHIN_NOISE == "within noise"
    assert f"[{RowStatus.OK}]" == "[ok]" and str(RowStatus.REPAIRING) == "repairing"
    assert RowStatus.of_result(Result(idea_id="a", metric=1.0)) is RowStatus.OK
    crashed = Result(idea_id="a", metric=None, failure=FailureCategory.CRASHED)
    assert RowStatus.of_result(crashed) is RowStatus.CRASHED


def test_every_failure_job_and_idea_state_is_a_row_status():
    """A row's status is its result's failure, its job's state or its idea's: a new member
    of any of those needs its row status too."""
    for member in [*FailureCategory, *JobState, *IdeaState]:
        assert RowStatus(str(member)) == member


def test_a_baseline_outside_the_stored_floor_is_noted_with_both_numbers():
    floor = {"mean": 3.90, "std": 0.035, "seeds": 4, "run": "floor-run"}
    inside = dataclasses.replace(_summary([3.95, 3.85]), stored_noise=floor)
    assert inside.floor_warning() is None  # within mean +- 3 sd
    outside = dataclasses.replace(_summary([3.95, 4.65]), stored_noise=floor)
    warning = outside.floor_warning()
    assert warning is not None and "4.6500" in warning and "3.95" not in warning
    assert "3.9000 +- 3 x 0.0350" in warning and "4 seeds" in warning
    assert "groundwork env baseline nanogpt --profile tiny" in warning
    assert _summary([4.65]).floor_warning() is None  # no stored floor: nothing to compare


def test_a_floor_measured_under_another_budget_is_not_used(tmp_path, monkeypatch):
    from groundwork.analysis.summary import save_noise_floor
    from groundwork.noise_floor import load_noise_floor

    monkeypatch.setenv("GROUNDWORK_CACHE", str(tmp_path))
    save_noise_floor(_summary([3.0, 3.1]), "compute")
    assert load_noise_floor("nanogpt", "tiny", "compute")["std"] > 0
    assert load_noise_floor("nanogpt", "tiny", "time") is None
    assert load_noise_floor("nanogpt", "tiny")["budget"] == "compute"


def test_the_search_and_the_summary_judge_ideas_by_one_comparison():
    """The same runs give the same baseline mean, gain, margin and best idea in the search's
    history as in the summary, for either direction of the metric."""
    from groundwork.environments.manifest import Metric
    from groundwork.protocols import Scored, SearchHistory
    from groundwork.records import Idea, PromptKind

    for direction, values in (("minimize", {"a": 2.9, "b": 2.5, "c": 3.2}), ("maximize", {"a": 3.1, "b": 3.5})):
        metric = Metric(name="score", direction=direction, plausible_range=(0.0, 10.0))
        baselines = [3.0, 3.02, 2.98]
        summary = dataclasses.replace(
            _summary(baselines),
            direction=direction,
            rows=[IdeaRow(i, 1, i, "simple", "x", RowStatus.OK, v) for i, v in values.items()],
        )
        ideas = {
            i: Idea(id=i, epoch=1, index=1, title=i, text="t", prompt_kind=PromptKind.SIMPLE, origin="x")
            for i in values
        }
        history = SearchHistory(
            metric=metric,
            baseline=Result(idea_id="baseline", metric=baselines[0]),
            scored=[Scored(ideas[i], Result(idea_id=i, metric=v)) for i, v in values.items()],
            baseline_values=baselines,
            noise_std=summary.noise_std,
        )
        assert history.baseline_mean == summary.baseline_mean
        assert summary.best is not None and summary.best.id == history.ranked()[0].idea.id == "b"
        for row, scored in zip(summary.rows, history.scored, strict=True):
            assert history.gain(scored) == summary.improvement(row)
            assert (scored in history.beating_baseline()) == (summary.verdict(row) is Verdict.BETTER)
        assert metric.signed_gain(2.5, 3.0) == (0.5 if direction == "minimize" else -0.5)
        assert metric.better(2.5, 3.0) is (direction == "minimize")


def test_headline_before_the_first_idea_says_so():
    from rich.console import Console

    from groundwork.console import headline

    console = Console(width=200, record=True)
    console.print(headline(_summary([3.0])))
    assert "(profile tiny); no ideas yet" in console.export_text()
    console.print(headline(dataclasses.replace(_summary([3.0]), origins=["catalog"])))
    assert "(profile tiny); ideas by catalog" in console.export_text()


def _projection(dollars_left: float | None, models: bool):
    from groundwork.analysis.summary import Projection

    return Projection(
        jobs_left=8, ideas_left=8, gpu_hours_used=0.0, gpu_hours_left=0.5, hours_used=0.0, hours_left=0.5,
        dollars_left=dollars_left, seconds_per_job=60.0, caps={"max_dollars": 5.0}, models=models,
    )  # fmt: skip


def test_a_model_run_before_its_first_call_expects_model_calls():
    from groundwork.console import projection_text

    def text(projection) -> str:
        return projection_text(dataclasses.replace(_summary([3.0]), projection=projection))

    before = text(_projection(None, models=True))
    assert "model calls to come, their cost known after the first (cap 5 $)" in before
    assert "no model calls" not in before
    assert text(_projection(None, models=False)).endswith("no model calls (catalog ideas)")
    assert text(_projection(1.5, models=True)).endswith("LLM $1.50 (cap 5 $)")


def test_a_run_uses_models_when_its_ideator_or_implementer_is_one(toy_env, tmp_path):
    from groundwork.analysis.summary import summarize
    from groundwork.config import RunConfig
    from groundwork.console import projection_text
    from groundwork.runs import create_run

    local = "openai-compatible:m@http://127.0.0.1:9/v1"
    assert not RunConfig().calls_models
    assert RunConfig(ideator_llm=local).calls_models
    assert RunConfig(implementer_llm=local).calls_models  # catalog ideas, model-written diffs
    assert RunConfig(ideator_llms=[local, "openai-compatible:n@http://127.0.0.1:9/v1"]).calls_models
    assert not RunConfig(ideator_llm="rl:tiny", implementer_llm="knobs").calls_models  # an RL run's own policy
    for name, spec, expected in (("llm", local, "model calls to come"), ("catalog", "catalog", "no model calls")):
        store = create_run(RunConfig(environment=str(toy_env), ideator_llm=spec), tmp_path / "runs", name)
        summary = summarize(store)  # a fresh run: no call made yet
        assert summary.projection is not None and summary.projection.dollars_left is None
        assert expected in projection_text(summary)
