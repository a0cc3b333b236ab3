"""Providers against a local stub of their HTTP APIs; costs, recording, caps, replay."""

from __future__ import annotations

import pytest

from groundwork.llm.anthropic_provider import AnthropicLLM
from groundwork.llm.base import LLMError, LLMRequest, Usage
from groundwork.llm.factory import make_llm
from groundwork.llm.openai_provider import OpenAILLM
from groundwork.llm.pricing import Price, PriceTable
from groundwork.llm.recording import BudgetExceeded, RecordingLLM, ReplayLLM, export_recording, load_recording
from groundwork.store import RunStore
from llm_stub import StubServer


def _request(key: str = "ideate:e1:simple", text: str = "Propose ideas.") -> LLMRequest:
    return LLMRequest(
        role="ideator",
        call_key=key,
        system="You are a scientist.",
        context="CODEBASE " * 50,
        messages=[{"role": "user", "content": text}],
        max_tokens=500,
        metadata={"epoch": 1},
    )


def test_openai_compatible_server_round_trip_and_usage():
    with StubServer(lambda body: "hello") as stub:
        llm = OpenAILLM("qwen3-8b", base_url=stub.url + "/v1")
        response = llm.complete(_request())
    path, body = stub.requests[0]
    assert path == "/v1/chat/completions"
    assert body["model"] == "qwen3-8b" and body["max_tokens"] == 500
    # the shared context comes first, in the system message, so prefix caching can reuse it
    assert body["messages"][0]["role"] == "system" and "CODEBASE" in body["messages"][0]["content"]
    assert body["messages"][1] == {"role": "user", "content": "Propose ideas."}
    assert response.text == "hello" and response.provider == "openai-compatible"
    assert response.usage == Usage(input_tokens=400, cached_input_tokens=600, output_tokens=150, thinking_tokens=50)


def test_rate_limits_are_retried_with_backoff():
    with StubServer(lambda body: "ok", fail_first=2) as stub:
        response = OpenAILLM("m", base_url=stub.url + "/v1").complete(_request())
    assert response.text == "ok" and len(stub.requests) == 3


def test_persistent_failure_is_a_clear_error():
    with StubServer(lambda body: "ok", fail_first=100) as stub:
        llm = OpenAILLM("m", base_url=stub.url + "/v1", max_retries=1)
        with pytest.raises(LLMError, match="ideate:e1:simple failed after retries"):
            llm.complete(_request())


def test_anthropic_caches_the_context_and_reports_thinking():
    with StubServer(lambda body: "answer") as stub:
        llm = AnthropicLLM("claude-sonnet-4-6", api_key="test-key", base_url=stub.url)
        request = LLMRequest(**{**_request().__dict__, "thinking_budget": 2048})
        response = llm.complete(request)
    path, body = stub.requests[0]
    assert path == "/v1/messages"
    assert body["system"][1]["cache_control"] == {"type": "ephemeral"} and "CODEBASE" in body["system"][1]["text"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048} and body["max_tokens"] == 2548
    assert response.text == "answer" and response.thinking == "Let me think."
    assert response.usage.cached_input_tokens == 600 and response.usage.input_tokens == 400


def test_missing_keys_and_bad_specs_say_what_to_do(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMError, match="set ANTHROPIC_API_KEY"):
        make_llm("anthropic:claude-sonnet-4-6", "ideator")
    with pytest.raises(LLMError, match="set OPENAI_API_KEY, or point --llm openai-compatible:MODEL@BASE_URL at"):
        make_llm("openai:gpt-5", "ideator")
    with pytest.raises(ValueError, match="openai-compatible:MODEL@http"):
        make_llm("openai-compatible:qwen", "ideator")
    with pytest.raises(ValueError, match="unknown model provider 'gemini'"):
        make_llm("gemini:pro", "ideator")
    assert make_llm("openai-compatible:qwen@http://127.0.0.1:9/v1", "ideator").provider == "openai-compatible"


def test_price_table_prefix_match_and_user_extension(tmp_path):
    table = PriceTable.load()
    usage = Usage(
        input_tokens=1_000_000, cached_input_tokens=1_000_000, output_tokens=1_000_000, thinking_tokens=1_000_000
    )
    assert table.cost("claude-sonnet-4-6", usage) == pytest.approx(3.0 + 0.3 + 15.0 * 2)
    assert table.cost("my-local-model", usage) is None
    extra = tmp_path / "prices.toml"
    extra.write_text('[models."my-local"]\ninput = 0.1\noutput = 0.2\n')
    assert PriceTable.load(extra).cost("my-local-model", usage) == pytest.approx(0.1 * 2 + 0.2 * 2)
    extra.write_text('[models."x"]\ninput = "cheap"\n')
    with pytest.raises(ValueError, match="prices.toml"):
        PriceTable.load(extra)


def _run_store(tmp_path) -> RunStore:
    return RunStore.create(tmp_path / "run", "r", {}, {})


def test_recording_costs_reuses_answers_and_enforces_the_cap(tmp_path):
    store = _run_store(tmp_path)
    prices = PriceTable({"m": Price(input=1000.0, output=1000.0, cached_input=100.0)})
    with StubServer(lambda body: "idea text") as stub:
        llm = RecordingLLM(OpenAILLM("m", base_url=stub.url + "/v1"), store.run_dir, prices, max_dollars=1.0)
        first = llm.complete(_request())
        assert first.cost_usd == pytest.approx((400 * 1000 + 600 * 100 + 200 * 1000) / 1e6)
        again = llm.complete(_request())  # the same logical call: answered from the store
        assert again.text == "idea text" and len(stub.requests) == 1
        llm.complete(_request("ideate:e1:explore"))
        assert len(stub.requests) == 2 and store.llm_spent_usd() > 1.0
        with pytest.raises(BudgetExceeded, match=r"reached the cap of \$1.00"):
            llm.complete(_request("ideate:e2:simple"))
    calls = store.llm_calls()
    assert [c["call_key"] for c in calls] == ["ideate:e1:simple", "ideate:e1:explore"]
    assert calls[0]["epoch"] == 1 and calls[0]["replayed"] == 0


def test_replay_from_a_run_and_from_an_export(tmp_path):
    store = _run_store(tmp_path)
    with StubServer(lambda body: "answer for " + body["messages"][-1]["content"]) as stub:
        llm = RecordingLLM(OpenAILLM("m", base_url=stub.url + "/v1"), store.run_dir, PriceTable({}))
        llm.complete(_request("ideate:e1:simple", "A"))
        llm.complete(_request("ideate:e2:explore", "B"))
    export = tmp_path / "calls.jsonl"
    assert export_recording(store.run_dir, export) == 2
    for source in (str(store.run_dir), str(export)):
        replay = ReplayLLM(load_recording(source), "ideator", source)
        assert replay.complete(_request("ideate:e1:simple", "A")).text == "answer for A"  # exact request
        changed = replay.complete(_request("ideate:e2:explore", "B, with new metrics"))  # same logical call
        assert changed.text == "answer for B" and changed.replayed
        with pytest.raises(LLMError, match="no ideator answer left"):
            replay.complete(_request("ideate:e3:simple", "C"))
    with pytest.raises(ValueError, match="not a run folder"):
        load_recording(str(tmp_path / "nothing"))
