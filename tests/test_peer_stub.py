"""benchmarks/peer_stub.py: the local OpenAI-compatible server that answers Groundwork and
OpenEvolve with the same fixed circle_packing programs, each in its own edit format."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from groundwork.ideation.parsing import parse_ideas
from groundwork.patch.search_replace import parse_search_replace


def _load_stub():
    path = Path(__file__).resolve().parents[1] / "benchmarks/peer_stub.py"
    spec = importlib.util.spec_from_file_location("peer_stub", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_stub"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


peer_stub = _load_stub()
STRATEGIES = peer_stub.load_strategies()


@pytest.fixture
def server():
    model = peer_stub.StubModel(STRATEGIES)
    srv, url = peer_stub.start_server(model)
    yield model, url
    srv.shutdown()


def _ask(url: str, prompt: str) -> str:
    import openai

    client = openai.OpenAI(api_key="unused", base_url=url, max_retries=0)
    reply = client.chat.completions.create(model="stub", messages=[{"role": "user", "content": prompt}], max_tokens=10)
    return reply.choices[0].message.content


def test_each_strategy_is_a_distinct_program_that_compiles():
    assert len(STRATEGIES) >= 8 and len({s.program for s in STRATEGIES}) == len(STRATEGIES)
    for s in STRATEGIES:
        compile(s.program, s.id, "exec")


def test_the_server_answers_each_system_in_its_own_format(server):
    model, url = server
    ideas = parse_ideas(_ask(url, "Propose 3 ideas.\nAnswer with exactly 3 blocks in this format"))
    assert [d.title for d in ideas] == [s.title for s in STRATEGIES[:3]]

    target = STRATEGIES[4]
    blocks = parse_search_replace(_ask(url, f"Implement this idea.\n\nTitle: {target.title}\n\nbody"))
    assert {b.path for b in blocks} == {"pack.py"}
    program = (peer_stub.ENV_DIR / "baseline/pack.py").read_text()
    for b in blocks:
        assert program.count(b.search) == 1
        program = program.replace(b.search, b.replace)
    assert program.strip() == target.program.strip()

    rewrite = _ask(url, "Rewrite the program")  # OpenEvolve's full-rewrite request
    assert rewrite.startswith("```python\n") and STRATEGIES[0].program in rewrite
    assert model.counts == {"ideator": 1, "implementer": 1, "program": 1}


def test_an_unknown_title_is_refused_with_its_name(server):
    import openai

    _, url = server
    with pytest.raises(openai.BadRequestError, match="no strategy titled 'Nothing like this'"):
        _ask(url, "Implement this idea.\n\nTitle: Nothing like this\n")


def test_the_openevolve_side_needs_openevolve():
    if importlib.util.find_spec("openevolve") is None:
        pytest.skip("openevolve is not installed (the `peers` extra): the benchmark's OpenEvolve run needs it")
    from openevolve.config import Config

    assert Config().evaluator.parallel_evaluations >= 1
