"""The whole loop with model-written ideas and diffs: a live provider path against the
local OpenAI-compatible stub (self-revision, costs, the dollar cap and resume), and the
shipped nanogpt recording replayed offline."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import GROUNDWORK, cli_env
from groundwork.patch.patching import unified_diff
from groundwork.records import PatchStatus
from groundwork.store import RunStore
from llm_stub import StubServer, last_user_text


def _toy_reply(toy_env):
    original = (toy_env / "baseline" / "train.py").read_text()

    def diff_for(old: str, new: str) -> str:
        return unified_diff({"train.py": original}, {"train.py": original.replace(old, new, 1)})

    def reply(body) -> str:
        system = body["messages"][0]["content"]
        prompt = last_user_text(body)
        if "research scientist" in system:
            epoch_two = "were already tried" in prompt or "beat the baseline" in prompt
            names = (
                [("Wider toy model", "width", "12"), ("Learning rate 0.25", "lr", "0.25")]
                if epoch_two
                else [("Raise the learning rate", "lr", "0.3"), ("Narrower toy model", "width", "2")]
            )
            return "Here are my ideas.\n\n" + "\n".join(
                f"<idea>\n<title>{t}</title>\n<category>hyperparameter</category>\n"
                f"<description>Set {k} to {v} in train.py because the toy optimum suggests it.</description>\n"
                f"<changes>train.py: {k} = {v}</changes>\n</idea>"
                for t, k, v in names
            )
        title = re.search(
            r"Title: (.*)", " ".join(m["content"] for m in body["messages"] if m["role"] == "user")
        ).group(1)
        knob, value = {
            "Raise the learning rate": ("lr", "0.3"),
            "Narrower toy model": ("width", "2"),
            "Wider toy model": ("width", "12"),
            "Learning rate 0.25": ("lr", "0.25"),
        }[title]
        old_line = "lr = 0.1  # the toy optimum is 0.3" if knob == "lr" else "width = 4  # the toy optimum is 8"
        new_line = old_line.replace({"lr": "0.1", "width": "4"}[knob], value, 1)
        diff = diff_for(old_line, new_line)
        if title == "Raise the learning rate" and "could not be applied" not in prompt:
            diff = diff.replace(" width = 4", " width = 5")  # a context line that does not match: needs a revision
        return f"I will change {knob}.\n\n```diff\n{diff}```\n\nThis sets {knob} to {value}."

    return reply


@pytest.mark.slow
def test_live_provider_path_with_self_revision_costs_cap_and_resume(toy_env, tmp_path):
    runs = tmp_path / "runs"
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."stub-model"]\ninput = 100.0\ncached_input = 10.0\noutput = 400.0\n')
    env = cli_env({"GROUNDWORK_PRICES": str(prices)})
    with StubServer(_toy_reply(toy_env)) as stub:
        spec = f"openai-compatible:stub-model@{stub.url}/v1"
        args = [
            *GROUNDWORK,
            "run",
            "--env",
            str(toy_env),
            "--runs-dir",
            str(runs),
            "--name",
            "llm",
            "--llm",
            spec,
            "--epochs",
            "2",
            "--ideas",
            "2",
            "--max-dollars",
            "0.5",
        ]
        first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=240)
        # each call costs (400*100 + 600*10 + 150*400 + 50*400)/1e6 = $0.126: the cap stops epoch 2
        assert first.returncode == 3, first.stdout + first.stderr
        assert "groundwork resume" in first.stdout and "--max-dollars" in first.stdout
        store = RunStore(runs / "llm")
        assert store.run_info().status == "budget_exhausted"
        assert store.llm_spent_usd() >= 0.5
        epoch1 = store.ideas(epoch=1)
        assert [i.title for i in epoch1] == ["Raise the learning rate", "Narrower toy model"]
        assert all(i.origin == "openai-compatible:stub-model" for i in epoch1)
        attempts = store.patches("e1-01")
        assert [p.status for p in attempts] == [PatchStatus.FAILED, PatchStatus.APPLIED]  # revised once
        assert "does not apply" in attempts[0].error and attempts[1].cost_usd > 0
        assert store.results()["e1-01"].valid and abs(store.results()["e1-01"].metric - 1.16) < 1e-9
        requests_before = len(stub.requests)

        resumed = subprocess.run(
            [*GROUNDWORK, "resume", "llm", "--runs-dir", str(runs), "--max-dollars", "5"],
            capture_output=True,
            text=True,
            env=env,
            timeout=240,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "LLM cost $" in resumed.stdout and "of a $5.00 cap" in resumed.stdout
        assert "openai-compatible:stub-model -> openai-compatible:stub-model" in resumed.stdout
    store = RunStore(runs / "llm")
    assert store.run_info().status == "finished"
    assert len(store.results()) == 5
    implement_keys = [c["call_key"] for c in store.llm_calls("implementer")]
    assert len(implement_keys) == len(set(implement_keys))  # no call was paid for twice
    assert len(stub.requests) > requests_before


@pytest.mark.slow
@pytest.mark.e2e
def test_shipped_nanogpt_recording_replays_offline(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            *GROUNDWORK,
            "run",
            "--llm",
            "replay:nanogpt-tiny",
            "--profile",
            "smoke",
            "--runs-dir",
            str(runs),
            "--name",
            "replay",
        ],
        capture_output=True,
        text=True,
        env=cli_env({"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}),
        timeout=500,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(runs / "replay")
    ideas = store.ideas()
    assert len(ideas) == 1 + 2 * 4
    patches = store.patches()
    assert any(p.status == PatchStatus.FAILED for p in patches)  # some ideas needed a revision
    results = store.results()
    assert set(results) == {i.id for i in ideas}
    assert sum(r.valid for r in results.values()) >= 6
    assert all(c["replayed"] for c in store.llm_calls()) and store.llm_spent_usd() == 0
    assert "LLM cost $0.00 (13 calls replayed from a recording, free)" in proc.stdout
    assert "no price" not in proc.stdout


def test_llm_export_writes_a_replayable_file(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "calls.jsonl"
    from groundwork.config import RunConfig
    from groundwork.llm.recording import load_recording
    from groundwork.runs import create_run

    store = create_run(RunConfig(environment="nanogpt"), runs, name="x")
    store.record_llm_call(
        {
            "role": "ideator",
            "call_key": "ideate:e1:simple",
            "fingerprint": "f",
            "model": "m",
            "provider": "p",
            "epoch": 1,
            "request": "{}",
            "text": "hi",
            "thinking": "",
            "usage": "{}",
            "cost_usd": 0.5,
            "latency_s": 1.0,
            "replayed": 0,
        }
    )
    proc = subprocess.run(
        [*GROUNDWORK, "llm", "export", "x", str(out), "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wrote 1 calls" in proc.stdout
    [call] = load_recording(str(out))
    assert call["text"] == "hi" and call["cost_usd"] == 0.5


def _call(n: int, cost: float | None, replayed: int) -> dict:
    return {
        "role": "ideator",
        "call_key": f"ideate:e1:k{n}",
        "fingerprint": f"f{n}",
        "model": "handwritten-fixture",
        "provider": "scripted",
        "epoch": 1,
        "request": "{}",
        "text": "hi",
        "thinking": "",
        "usage": "{}",
        "cost_usd": cost,
        "latency_s": 0.0,
        "replayed": replayed,
    }


def test_replayed_calls_are_free_not_unpriced(tmp_path):
    from groundwork.analysis.summary import summarize
    from groundwork.config import RunConfig
    from groundwork.console import cost_text
    from groundwork.runs import create_run

    store = create_run(RunConfig(environment="nanogpt"), tmp_path / "runs", name="x")
    for n in range(3):
        store.record_llm_call(_call(n, None, replayed=1))  # a recording of an unpriced model
    text = cost_text(summarize(store))
    assert "LLM cost $0.00 (3 calls replayed from a recording, free)" in text
    assert "no price" not in text

    store.record_llm_call(_call(9, None, replayed=0))  # a live call to an unpriced model still says so
    text = cost_text(summarize(store))
    assert "3 calls replayed" in text and "1 calls to models with no price" in text
