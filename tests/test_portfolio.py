"""The model portfolio: the bandit's rules, and whole runs on the toy environment where two
replayed "models" of clearly different quality compete, for ideas and for diffs. The better
one takes the proposals within a stated number of them, the choices survive a kill and
resume, and status and the report show each model's share, payoff and spend."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import GROUNDWORK, cli_env
from groundwork.analysis.summary import summarize
from groundwork.config import RunConfig
from groundwork.console import portfolio_lines
from groundwork.environments import load_environment
from groundwork.implementation.llm_implementer import LLMImplementer
from groundwork.llm.base import LLMRequest
from groundwork.llm.portfolio import ArmStats, choose
from groundwork.llm.pricing import PriceTable
from groundwork.llm.recording import RecordingLLM
from groundwork.loop import ResearchLoop
from groundwork.patch.patching import PatchPolicy, unified_diff
from groundwork.prompting import PromptLibrary
from groundwork.runs import create_run, run_config
from groundwork.store import RunStore
from groundwork.wiring import build_components
from scripted_llm import ScriptedTestLLM

PROPOSALS = 12
# With the worse model listed first, UCB1 (floor 10%) tries each once, then gives the
# better one 9 of the next 10 proposals: the one exploration of the worse at the 7th.
EXPECTED = ["bad", "good", "good", "good", "good", "good", "bad", "good", "good", "good", "good", "good"]


class SimulatedKill(BaseException):
    """Stands for kill -9 at that point: nothing after it runs."""


def _arm(name: str, pulls: int, reward: float, cost: float) -> ArmStats:
    return ArmStats(name, pulls=pulls, settled=pulls, reward=reward, spend_usd=cost, charged_usd=cost)


def test_every_model_is_tried_first_then_the_floor_then_the_best_payoff_per_dollar():
    assert choose([_arm("a", 1, 1, 1), _arm("b", 0, 0, 0)], 0.1)[:2] == ("b", "init")
    # 'b' has 1 of 19 proposals; the 20th would leave it under 10%.
    assert choose([_arm("a", 18, 18, 1), _arm("b", 1, 0, 1)], 0.1)[:2] == ("b", "floor")
    arm, rule, index = choose([_arm("a", 10, 5, 1), _arm("b", 10, 5, 0.5)], 0.1)  # same reward, half the price
    assert (arm, rule) == ("b", "ucb") and index["b"] > index["a"]
    # Chosen, nothing settled yet: optimistic, and its pending pulls shrink its bonus (a batch spreads).
    assert choose([_arm("a", 3, 3, 1), ArmStats("c", pulls=2)], 0.0)[0] == "c"
    assert choose([_arm("a", 2, 2, 1), ArmStats("c", pulls=6)], 0.0)[0] == "a"


def test_a_portfolio_config_names_bad_lists():
    with pytest.raises(ValueError, match="two or more different models"):
        RunConfig(ideator_llm="replay:a", ideator_llms=["replay:a", "replay:a"])
    with pytest.raises(ValueError, match="--portfolio-floor 0.6 for 2 models"):
        RunConfig(ideator_llm="replay:a", ideator_llms=["replay:a", "replay:b"], portfolio_floor=0.6)
    config = RunConfig(ideator_llm="replay:a", ideator_llms=["replay:a", "replay:b"])
    assert config.ideator_models == ["replay:a", "replay:b"] and config.implementer_models == ["replay:a"]


# ---- recordings of two "models" -------------------------------------------------------

WORDS = ["".join(random.Random(n).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)) for n in range(400)]


def _idea(epoch: int, tag: str, lr: str) -> str:
    salad = " ".join(random.Random(f"{tag}{epoch}").sample(WORDS, 25))  # no two ideas alike (novelty filter)
    return (
        f"<idea>\n<title>{tag} idea {epoch}</title>\n<category>hyperparameter</category>\n"
        f"<description>Set lr = {lr} in train.py. {salad}</description>\n<changes>train.py: lr = {lr}</changes>\n"
        "</idea>"
    )


def _row(role: str, key: str, epoch: int, text: str, cost: float, model: str) -> dict:
    usage = {"input_tokens": 100, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 50}
    return {
        "role": role,
        "call_key": key,
        "fingerprint": f"{model}:{key}",
        "model": model,
        "provider": "scripted",
        "epoch": epoch,
        "idea_id": None,
        "text": text,
        "thinking": "",
        "usage": json.dumps({**usage, "thinking_tokens": 0}),
        "cost_usd": cost,
    }


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"replay:{path}"


def _lr_diff(toy_env: Path, lr: str) -> str:
    original = (toy_env / "baseline" / "train.py").read_text()
    new = original.replace("lr = 0.1  #", f"lr = {lr}  #", 1)
    return f"```diff\n{unified_diff({'train.py': original}, {'train.py': new})}```\n"


def _ideators(toy_env: Path, tmp_path: Path) -> tuple[str, str, str]:
    """A worse ideator (lr 0.9: loss 4.76 vs the baseline's 1.56) listed first, a better one
    (lr 0.3: 1.16) at twice the price, and an implementer recording (replaced in the test)."""
    bad = [_row("ideator", f"ideate:e{e}:simple", e, _idea(e, "bad", "0.9"), 0.01, "m") for e in range(1, 20)]
    good = [_row("ideator", f"ideate:e{e}:simple", e, _idea(e, "good", "0.3"), 0.02, "m") for e in range(1, 20)]
    impl = [_row("implementer", "implement:e1-01:attempt-1", 1, _lr_diff(toy_env, "0.3"), 0.0, "m")]
    return (
        _write(tmp_path / "bad.jsonl", bad),
        _write(tmp_path / "good.jsonl", good),
        _write(tmp_path / "i.jsonl", impl),
    )


def _implementer_double(toy_env: Path, kill_at: str | None = None):
    """A scripted implementer (test double): the diff setting the lr the idea names."""

    def script(request: LLMRequest) -> str:
        if request.metadata.get("idea_id") == kill_at:
            raise SimulatedKill
        text = " ".join(m["content"] for m in request.messages if m["role"] == "user")
        return _lr_diff(toy_env, re.search(r"lr = ([0-9.]+)", text).group(1))

    return script


def _loop(store: RunStore, toy_env: Path, kill_at: str | None = None) -> ResearchLoop:
    env = load_environment(store.run_dir / "environment")
    parts = build_components(env, env.profile(), run_config(store), store.run_dir)
    policy = PatchPolicy(protected=frozenset(env.manifest.files.locked) | frozenset(env.manifest.files.hidden))
    double = ScriptedTestLLM(_implementer_double(toy_env, kill_at))
    implementer = LLMImplementer(
        RecordingLLM(double, store.run_dir, PriceTable.load(), None, 1),
        env,
        PromptLibrary(),
        policy,
        "3",
        max_revisions=0,
    )
    return ResearchLoop(store, dataclasses.replace(parts, implementer=implementer, implementation_workers=1))


def _ideator_run(toy_env: Path, tmp_path: Path) -> RunStore:
    bad, good, impl = _ideators(toy_env, tmp_path)
    config = RunConfig(
        environment=str(toy_env),
        search="best-of-n",
        epochs=PROPOSALS,
        ideas_per_epoch=1,
        slots=1,
        ideator_llm=bad,
        ideator_llms=[bad, good],
        implementer_llm=impl,
        max_debug_rounds=0,
    )
    return create_run(config, tmp_path / "runs")


def _arms(store: RunStore, role: str, names: dict[str, str]) -> list[str]:
    return [names[c["arm"]] for c in store.model_choices(role)]


def test_the_better_ideator_takes_the_proposals_and_a_killed_run_resumes_the_same_choices(toy_env, tmp_path):
    store = _ideator_run(toy_env, tmp_path)
    bad, good = run_config(store).ideator_llms
    names = {bad: "bad", good: "good"}
    with pytest.raises(SimulatedKill):  # killed while implementing the 8th idea
        _loop(store, toy_env, kill_at="e8-01").run()
    assert _arms(store, "ideator", names) == EXPECTED[:8]
    _loop(RunStore(store.run_dir), toy_env).run()  # a fresh controller: all it knows is the store
    assert store.run_info().status == "finished"
    assert _arms(store, "ideator", names) == EXPECTED  # as an uninterrupted run chooses (see the rule test)
    assert [c["rule"] for c in store.model_choices("ideator")][:3] == ["init", "init", "ucb"]
    ideas = [i for i in store.ideas() if i.epoch >= 1]
    assert [names[i.origin] for i in ideas] == EXPECTED  # each idea names the model that wrote it
    # What the 12th choice saw, as stored with it: every earlier proposal settled.
    last = json.loads(store.model_choices("ideator")[-1]["arms"])
    assert [(a["pulls"], a["settled"]) for a in last] == [(2, 2), (9, 9)]
    assert last[0]["payoff"] == 0 and last[1]["payoff"] == pytest.approx(0.4 / 0.02)
    summary = summarize(store)
    stats = {names[a.arm]: a for a in summary.portfolio["ideator"]}
    assert (stats["good"].pulls, stats["bad"].pulls) == (10, 2)
    assert stats["good"].spend_usd == pytest.approx(0.2) and stats["bad"].spend_usd == pytest.approx(0.02)
    (line,) = portfolio_lines(summary)
    assert f"{good} 10/12 = 83%, 20 loss (noise unknown) gained/$ over 10, spent $0.200" in line


def _good_ideas(tmp_path: Path) -> str:
    rows = [_row("ideator", f"ideate:e{e}:simple", e, _idea(e, "good", "0.3"), 0.0, "m") for e in range(1, 20)]
    return _write(tmp_path / "ideas.jsonl", rows)


def test_the_better_implementer_takes_the_ideas_in_a_replayed_cli_run(toy_env, tmp_path):
    """All three models are recordings; the worse implementer answers with no diff at all."""
    ideas = _good_ideas(tmp_path)
    key = "implement:e{}-01:attempt-1"
    good_rows = [_row("implementer", key.format(e), e, _lr_diff(toy_env, "0.3"), 0.02, "g") for e in range(1, 20)]
    bad_rows = [_row("implementer", key.format(e), e, "I would rather not.", 0.0, "b") for e in range(1, 20)]
    bad = _write(tmp_path / "bad-impl.jsonl", bad_rows)
    good = _write(tmp_path / "good-impl.jsonl", good_rows)
    runs = tmp_path / "runs"
    args = [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), "--name", "p", "--search", "best-of-n"]
    args += ["--epochs", str(PROPOSALS), "--ideas", "1", "--slots", "1", "--max-revisions", "0"]
    args += ["--ideator-llm", ideas, "--implementer-llm", bad, "--implementer-llm", good]
    proc = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(runs / "p")
    names = {bad: "bad", good: "good"}
    # The free model that fails is charged the floor cost a proposal: its payoff is 0 all the same.
    assert _arms(store, "implementer", names) == EXPECTED
    assert {p.implementer for p in store.patches() if p.idea_id != "baseline"} == {bad, good}
    assert sum(r.valid for r in store.results().values()) == 1 + EXPECTED.count("good")
    status = subprocess.run(
        [*GROUNDWORK, "status", "p", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        env=cli_env({"COLUMNS": "500"}),
    )
    flat = " ".join(status.stdout.split())
    assert "implementer portfolio (UCB1):" in flat and f"{good} 10/12 = 83%, 50 valid runs/$ over 10" in flat
    assert f"{bad} 2/12 = 17%, 0 valid runs/$ over 2, spent $0.000" in flat
    assert f"-> {good}: 10/10" in flat and f"-> {bad}: 0/2" in flat  # the per-model funnel


def test_a_store_from_before_portfolios_opens_and_summarises(toy_env, tmp_path):
    store = create_run(RunConfig(environment=str(toy_env), epochs=0), tmp_path / "runs")
    run_dir = store.run_dir
    store.close()
    conn = sqlite3.connect(run_dir / "store.sqlite")
    conn.execute("DROP TABLE model_choices")
    conn.commit()
    conn.close()
    store = RunStore(run_dir)  # schema 1: the table is added, empty
    assert store.model_choices() == [] and summarize(store).portfolio == {}
