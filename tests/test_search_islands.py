"""Islands and the MAP-Elites archive as plain functions: the ring migration of confirmed
winners only, the allocation of new ideas, one island being plain evolution, the
archive's deterministic cells and its one-parent-per-cell draw; then islands end to end
through the CLI, killed and resumed, migrating exactly as an uninterrupted run does."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from conftest import GROUNDWORK, cli_env, set_toy_sleep
from groundwork.analysis.archive_grid import archive_grid
from groundwork.analysis.details import load_details
from groundwork.config import RunConfig
from groundwork.descriptors import cell_of, changed_lines, diff_bin
from groundwork.environments.manifest import Metric
from groundwork.protocols import Scored, SearchHistory
from groundwork.records import Idea, PromptKind, Result
from groundwork.search.archive import MapElitesArchive
from groundwork.search.evolution import EvolutionStrategy, SteadyStateStrategy
from groundwork.search.islands import IslandStrategy
from groundwork.store import RunStore
from groundwork.wiring import make_strategy

LOSS = Metric(name="loss", direction="minimize", plausible_range=(0.0, 100.0))


def _scored(idea_id: str, metric: float, island: int = 0, category: str = "other", title: str = "") -> Scored:
    idea = Idea(
        id=idea_id,
        epoch=1,
        index=1,
        title=title or idea_id,
        text="t",
        category=category,
        prompt_kind=PromptKind.EXPLORE,
        origin="x",
        payload={"island": island},
    )
    return Scored(idea, Result(idea_id=idea_id, metric=metric))


def _history(scored: list[Scored], baseline: float = 3.0, **kw) -> SearchHistory:
    return SearchHistory(
        metric=LOSS,
        baseline=Result(idea_id="baseline", metric=baseline),
        scored=scored,
        proposed=[s.idea for s in scored],
        baseline_values=[baseline],
        **kw,
    )


def _islands(k: int = 3, every: int = 2, migrants: int = 1) -> IslandStrategy:
    return IslandStrategy(EvolutionStrategy(6, 6, seed=1), k, every, migrants)


def test_one_island_is_plain_search_and_islands_need_an_exploiting_search():
    assert type(make_strategy(RunConfig())) is EvolutionStrategy
    assert type(make_strategy(RunConfig(search="steady-state"))) is SteadyStateStrategy
    islands = make_strategy(RunConfig(islands=3, migrate_every=2, migrants=2))
    assert isinstance(islands, IslandStrategy)
    assert (islands.islands, islands.migrate_every, islands.migrants) == (3, 2, 2)
    with pytest.raises(ValueError, match="best-of-n"):
        RunConfig(search="best-of-n", islands=2)
    with pytest.raises(ValueError, match="diff_size"):
        RunConfig(archive="map-elites", descriptors=["category", "size"])


def test_new_ideas_go_to_the_smallest_island_and_requests_are_tagged():
    strategy = _islands(3)
    history = _history([_scored("a", 2.0, 0), _scored("b", 2.5, 0), _scored("c", 2.8, 1)])
    assert strategy.allocate(history, 4) == [1, 1, 2]  # sizes 2, 1, 0 -> 3, 2, 2
    requests = strategy.plan_epoch(2, history, count=4)
    assert sorted({r.island for r in requests}) == [0, 1, 2] and sum(r.count for r in requests) == 4
    # an island exploits only its own winners: island 1's parent is c, island 2 has none
    by_island = {r.island: r for r in requests if r.kind == PromptKind.EXPLOIT}
    assert [p.idea.id for p in by_island[0].parents] == ["a", "b"]
    assert [p.idea.id for p in by_island[1].parents] == ["c"] and 2 not in by_island
    assert len({r.seed for r in requests}) == 3  # islands draw differently


def test_every_m_epochs_the_best_n_of_each_island_join_the_next_in_a_ring():
    strategy = _islands(3, every=2, migrants=1)
    scored = [_scored("a", 2.0, 0), _scored("a2", 2.1, 0), _scored("b", 2.5, 1), _scored("c", 3.5, 2)]
    history = _history(scored)
    assert strategy.due_migrations(2, history) == []  # one epoch done: none due yet
    [round_] = strategy.due_migrations(3, history)  # two epochs done
    # c does not beat the baseline: island 2 sends nothing
    assert round_ == {"round": 1, "epoch": 3, "moves": [["a", 0, 1], ["b", 1, 2]]}
    stored = _history(scored, migrations=[round_])
    assert strategy.due_migrations(3, stored) == []  # stored rounds are never redone
    assert strategy.members(stored) == [{"a", "a2"}, {"a", "b"}, {"b", "c"}]
    [second] = strategy.due_migrations(5, stored)
    # a is on island 1 already: island 0 sends its next best; the migrants move on round the ring
    assert second["moves"] == [["a2", 0, 1], ["a", 1, 2], ["b", 2, 0]]


def test_only_confirmed_results_migrate():
    strategy = _islands(2, every=1)
    scored = [_scored("a", 2.0, 0), _scored("b", 2.5, 1)]
    unconfirmed = _history(scored, confirm_seeds=1)
    assert strategy.due_migrations(2, unconfirmed)[0]["moves"] == []
    confirmed = _history(scored, confirm_seeds=1, replicates={"a": [Result(idea_id="a-seed1", metric=2.1)]})
    assert strategy.due_migrations(2, confirmed)[0]["moves"] == [["a", 0, 1]]


def test_steady_state_islands_migrate_by_finished_ideas():
    strategy = IslandStrategy(SteadyStateStrategy(4, 2), 2, migrate_every=1, migrants=1)
    assert strategy.due_migrations(7, _history([_scored("a", 2.0, 0)])) == []  # half an epoch's ideas
    rounds = strategy.due_migrations(7, _history([_scored("a", 2.0, 0), _scored("b", 2.4, 1)]))
    assert [r["round"] for r in rounds] == [1] and rounds[0]["moves"] == [["a", 0, 1], ["b", 1, 0]]


DIFF = "--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-lr = 0.1\n+lr = 0.2\n context\n"


def test_archive_cells_are_a_pure_function_of_the_idea_and_its_diff():
    assert changed_lines(DIFF) == 2 and [diff_bin(n) for n in (0, 4, 5, 16, 17, 64, 65)] == [
        "<=4", "<=4", "5-16", "5-16", "17-64", "17-64", ">64"
    ]  # fmt: skip
    a = _scored("a", 2.0, category="schedule").idea  # folded into hyperparameter
    b = _scored("b", 2.0, category="misc", title="Swap AdamW for Lion").idea  # unknown label: keywords
    assert cell_of(a, 2, ["category", "diff_size"]) == ("hyperparameter", "<=4")
    assert cell_of(b, 40, ["category", "diff_size"]) == ("optimizer", "17-64")
    assert cell_of(b, 40, ["diff_size", "kind"]) == ("17-64", "explore")
    assert [cell_of(a, 2, ["category", "diff_size"]) for _ in range(3)] == [("hyperparameter", "<=4")] * 3


def test_the_archive_keeps_each_cells_best_and_draws_one_parent_per_cell():
    scored = [
        _scored("h1", 2.0, category="hyperparameter"),
        _scored("h2", 2.1, category="hyperparameter"),
        _scored("h3", 2.2, category="hyperparameter"),
        _scored("o1", 2.6, category="optimizer"),
        _scored("l1", 2.8, category="loss"),
        _scored("x1", 3.4, category="architecture"),  # worse than the baseline: an elite, never a parent
    ]
    history = _history(scored, diff_lines={s.idea.id: 2 for s in scored})
    archive = MapElitesArchive(["category"], seed=0)
    elites = archive.elites(history)
    assert {c[0]: e.scored.idea.id for c, e in elites.items()} == {
        "hyperparameter": "h1", "optimizer": "o1", "loss": "l1", "architecture": "x1"
    }  # fmt: skip
    assert not elites[("architecture",)].improving
    parents = archive.select(history, epoch=2, k=2)
    assert len(parents) == 2 and len({s.idea.category for s in parents}) == 2  # never two of one cell
    assert parents == archive.select(history, epoch=2, k=2)  # seeded: the same draw again
    assert [p.idea.id for p in archive.select(history, epoch=2, k=4)] == ["h1", "o1", "l1"]  # best first
    top = EvolutionStrategy(3, 4).plan_epoch(2, history)[0].parents
    assert [p.idea.id for p in top] == ["h1", "h2", "h3", "o1"]  # without the archive one kind takes every slot


# ---- end to end: a kill and a resume ------------------------------------------------------


ISLAND_ARGS = ["--epochs", "3", "--ideas", "4", "--islands", "2", "--migrate-every", "1", "--migrants", "1"]


def _islands_of(store: RunStore) -> list[tuple]:
    return sorted((i.id, i.title, i.payload.get("island")) for i in store.ideas() if i.prompt_kind != "baseline")


def test_islands_migrate_exactly_as_specified_across_a_kill_and_resume(toy_env, tmp_path):
    set_toy_sleep(toy_env, 0.05)  # the reference runs uninterrupted: its jobs' length does not matter
    runs, env = tmp_path / "runs", cli_env()
    base = [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), *ISLAND_ARGS]
    whole = subprocess.run([*base, "--name", "whole"], capture_output=True, text=True, env=env, timeout=240)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    reference = RunStore(runs / "whole")
    migrations = reference.migrations()
    assert [r["round"] for r in migrations] == [1, 2] and [r["epoch"] for r in migrations] == [2, 3]
    assert any(r["moves"] for r in migrations)
    for r in migrations:  # ring moves of ideas from the source island's own members
        assert all(dst == (src + 1) % 2 for _, src, dst in r["moves"])
    assert {i for _, _, i in _islands_of(reference)} == {0, 1}
    grid = archive_grid(load_details(reference))  # the report's grid: every valid idea in one cell
    assert grid["rows"][0] == "hyperparameter" and grid["cols"] == ["<=4", "5-16", "17-64", ">64"]
    filled = [c for row in grid["cells"] for c in row if c]
    assert len(filled) == grid["filled"] >= 1 and grid == archive_grid(load_details(reference))

    set_toy_sleep(toy_env, 0.6)  # the killed run's jobs last long enough to be caught mid-epoch
    controller = subprocess.Popen(
        [*base, "--name", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    killed = runs / "killed"
    try:  # after the first migration is stored and epoch 2 is running
        deadline = time.time() + 120
        while time.time() < deadline:
            if (killed / "store.sqlite").exists():
                store = RunStore(killed)
                if store.migrations() and any(r.startswith("e2-") for r in store.results()):
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the run never reached epoch 2")
    finally:
        controller.send_signal(signal.SIGKILL)
        controller.wait()
    resumed = subprocess.run(
        [*GROUNDWORK, "resume", "killed", "--runs-dir", str(runs)], capture_output=True, text=True, env=env, timeout=240
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    again = RunStore(killed)
    assert json.dumps(again.migrations()) == json.dumps(migrations)
    assert _islands_of(again) == _islands_of(reference)
    assert again.run_info().status == "finished"
