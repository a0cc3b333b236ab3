"""Search strategies and noise-aware selection as plain functions: the exploit schedule,
the steady-state share, the ranked database with re-runs, confidence intervals, the
exploit pool that never takes a gain inside the noise, and the joint budget's arithmetic."""

from __future__ import annotations

import math

import pytest

from groundwork.comparison import Estimate, noise_margin
from groundwork.config import RunConfig
from groundwork.environments.manifest import Metric
from groundwork.protocols import Scored, SearchHistory
from groundwork.records import Idea, PromptKind, Result
from groundwork.search.budget import Usage, active_hours, cap_reached, device_hours
from groundwork.search.evolution import (
    BestOfNStrategy,
    EvolutionStrategy,
    ExploitSchedule,
    SteadyStateStrategy,
    exploit_share,
)

LOSS = Metric(name="loss", direction="minimize", plausible_range=(0.0, 100.0))
ACCURACY = Metric(name="acc", direction="maximize", plausible_range=(0.0, 1.0))


def _scored(idea_id: str, metric: float | None, epoch: int = 1) -> Scored:
    idea = Idea(id=idea_id, epoch=epoch, index=1, title=idea_id, text="t", prompt_kind=PromptKind.SIMPLE, origin="x")
    return Scored(idea, Result(idea_id=idea_id, metric=metric))


def _history(scored: list[Scored], baseline: list[float], metric: Metric = LOSS, **kw) -> SearchHistory:
    return SearchHistory(
        metric=metric,
        baseline=Result(idea_id="baseline", metric=baseline[0]),
        scored=scored,
        proposed=[s.idea for s in scored],
        baseline_values=baseline,
        **kw,
    )


def test_the_exploit_schedule_is_the_papers_by_default_and_configurable():
    assert [exploit_share(e) for e in (1, 2, 4, 6, 20)] == [0.5, 0.6, 0.7, 0.8, 0.8]
    fast = ExploitSchedule(start=0.2, step=0.3, every=1, cap=0.9)
    assert [round(fast.share(e), 6) for e in (0, 1, 2, 5)] == [0.2, 0.5, 0.8, 0.9]
    with pytest.raises(ValueError, match="every"):
        ExploitSchedule(every=0)
    history = _history([_scored("a", 2.0), _scored("b", 2.5)], [3.0])
    requests = EvolutionStrategy(3, 10, schedule=fast).plan_epoch(2, history)
    assert [(str(r.kind), r.count) for r in requests] == [("exploit", 8), ("explore", 2)]


def test_explore_prompts_see_a_seeded_sample_of_what_was_tried():
    tried = [_scored(f"e1-{i:02d}", 3.0 + i) for i in range(30)]
    strategy = EvolutionStrategy(3, 4, explore_sample=5, seed=7)
    history = _history(tried, [1.0])  # nothing beats the baseline: explore only
    [request] = strategy.plan_epoch(2, history)
    assert request.kind == PromptKind.EXPLORE and request.count == 4 and len(request.tried) == 5
    assert [s.idea.id for s in strategy.plan_epoch(2, history)[0].tried] == [s.idea.id for s in request.tried]


def test_a_batch_takes_its_count_and_steady_state_follows_finished_ideas():
    history = _history([_scored(f"i{k}", 2.0) for k in range(8)], [3.0])  # 8 finished, all winners
    steady = SteadyStateStrategy(epochs=5, ideas_per_epoch=4)
    # 8 finished ideas at 4 per epoch: the share of epoch 3, 0.6; a batch of 5 asks 3 exploit, 2 explore
    assert [(str(r.kind), r.count) for r in steady.plan_epoch(17, history, count=5)] == [
        ("exploit", 3),
        ("explore", 2),
    ]
    assert all(r.epoch == 17 for r in steady.plan_epoch(17, history, count=5))
    assert BestOfNStrategy(2, 4).plan_epoch(1, history, count=1)[0].count == 1


def test_confidence_interval_and_noise_margin():
    one = Estimate.of([2.0])
    assert one.mean == 2.0 and one.half_width is None and str(one) == "2.0000"
    three = Estimate.of([1.0, 2.0, 3.0])  # sd 1, t(2) = 4.303
    assert three.mean == 2.0 and math.isclose(three.half_width, 4.303 / math.sqrt(3))
    assert str(three) == "2.0000 ± 2.4843 (n=3)"
    assert math.isclose(noise_margin(0.1, 1, 1), 2 * 0.1 * math.sqrt(2))
    assert noise_margin(0.1, 4, 4) < noise_margin(0.1, 1, 4)  # re-runs shrink the margin
    with pytest.raises(ValueError):
        Estimate.of([])


def test_the_ranked_database_uses_the_mean_over_re_runs_and_the_metric_direction():
    lucky, steady = _scored("lucky", 2.0), _scored("steady", 2.2)
    replicates = {"lucky": [Result(idea_id="lucky-seed1", metric=2.8), Result(idea_id="lucky-seed2", metric=2.9)]}
    history = _history([lucky, steady], [3.0], replicates=replicates)
    assert [s.idea.id for s in history.ranked()] == ["steady", "lucky"]  # lucky's mean is 2.567
    assert history.values(lucky) == [2.0, 2.8, 2.9]
    up = _history([_scored("a", 0.6), _scored("b", 0.7)], [0.5], metric=ACCURACY)
    assert [s.idea.id for s in up.ranked()] == ["b", "a"] and [s.idea.id for s in up.beating_baseline()] == ["b", "a"]


def test_a_gain_inside_the_noise_never_enters_the_exploit_pool():
    scored = [_scored("big", 2.0), _scored("small", 2.95)]
    history = _history(scored, [3.0, 3.1, 2.9], noise_std=0.1)  # margin 2*0.1*sqrt(1+1/3) = 0.23
    assert [s.idea.id for s in history.beating_baseline()] == ["big"]
    unknown = _history(scored, [3.0])  # noise not measured: any gain counts
    assert [s.idea.id for s in unknown.beating_baseline()] == ["big", "small"]
    requests = EvolutionStrategy(2, 4).plan_epoch(2, _history([_scored("small", 2.95)], [3.0, 3.1, 2.9], noise_std=0.1))
    assert {str(r.kind) for r in requests} == {"explore"}


def test_with_confirmations_on_an_idea_is_exploited_only_after_its_re_runs():
    big = _scored("big", 2.0)
    waiting = _history([big], [3.0], noise_std=0.1, confirm_seeds=2)
    assert waiting.beating_baseline() == []
    confirmed = _history(
        [big],
        [3.0],
        noise_std=0.1,
        confirm_seeds=2,
        replicates={"big": [Result(idea_id="big-seed1", metric=2.1), Result(idea_id="big-seed2", metric=1.9)]},
    )
    assert [s.idea.id for s in confirmed.beating_baseline()] == ["big"]
    fluke = _history(
        [big],
        [3.0],
        noise_std=0.1,
        confirm_seeds=2,
        replicates={"big": [Result(idea_id="big-seed1", metric=3.6), Result(idea_id="big-seed2", metric=3.5)]},
    )
    assert fluke.beating_baseline() == []  # its mean (3.03) does not beat the baseline


def test_device_hours_and_active_hours():
    def event(i: int, ts: float, entity: str, to: str, entity_id: str = "r") -> dict:
        return {"id": i, "ts": ts, "entity": entity, "entity_id": entity_id, "to_state": to}

    jobs = [
        event(1, 100.0, "job", "running", "a"),
        event(2, 460.0, "job", "done", "a"),  # 360 s
        event(3, 100.0, "job", "running", "b"),
        event(4, 200.0, "job", "queued", "b"),  # stopped at a cap: its 100 s count
        event(5, 300.0, "job", "running", "b"),  # still running: 520 s up to now
        event(6, 300.0, "job", "queued", "c"),
    ]
    assert math.isclose(device_hours(jobs, gpus=0, at=820.0), (360 + 100 + 520) / 3600)
    assert math.isclose(device_hours(jobs, gpus=4, at=820.0), 4 * (360 + 100 + 520) / 3600)

    events = [
        event(1, 0.0, "run", "running"),
        event(2, 3600.0, "run", "budget_exhausted"),  # 1 h
        event(3, 90000.0, "run", "config"),  # a cap raised a day later: not counted
        event(4, 90000.0, "run", "running"),
        event(5, 91800.0, "job", "done"),  # then killed without a word (0.5 h)
        event(6, 99999.0, "run", "running"),  # resumed
    ]
    assert math.isclose(active_hours(events, at=99999.0 + 1800.0), 1.0 + 0.5 + 0.5)


def test_caps_name_the_option_that_raises_them():
    config = RunConfig(max_gpu_hours=2.0, max_hours=1.0)
    assert cap_reached(config, Usage(gpu_hours=1.9, hours=0.9)) is None
    gpu = cap_reached(config, Usage(gpu_hours=2.0, hours=0.1))
    assert gpu is not None and gpu.flag == "--max-gpu-hours" and "2.000 GPU-hours" in str(gpu)
    wall = cap_reached(config, Usage(gpu_hours=0.0, hours=1.5))
    assert wall is not None and wall.flag == "--max-hours"
    assert cap_reached(RunConfig(), Usage(gpu_hours=1e9, hours=1e9)) is None
