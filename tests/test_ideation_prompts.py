"""Prompts as the paper describes them, robust idea parsing, and near-duplicate dropping."""

from __future__ import annotations

from groundwork.environments import load_environment
from groundwork.ideation.llm_ideator import LLMIdeator
from groundwork.ideation.novelty import find_duplicate, similarity
from groundwork.ideation.parsing import parse_ideas
from groundwork.llm.base import LLMRequest, LLMResponse
from groundwork.prompting import PromptLibrary, environment_context
from groundwork.protocols import IdeationRequest, Scored, SearchHistory
from groundwork.records import FailureCategory, Idea, PromptKind, Result

NANOGPT = load_environment("nanogpt")


class CannedLLM:
    """Test double: answers every call with the same text and keeps the requests."""

    provider, model = "canned", "canned-model"

    def __init__(self, answer: str):
        self.answer = answer
        self.requests: list[LLMRequest] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        return LLMResponse(text=self.answer, model=self.model, provider=self.provider, cost_usd=0.08)


def _block(title: str, description: str, category: str = "optimizer") -> str:
    return (
        f"<idea><title>{title}</title><category>{category}</category>"
        f"<description>{description}</description><changes>train.py</changes></idea>"
    )


def test_tagged_ideas_parse_and_malformed_blocks_are_skipped():
    answer = (
        "Some thinking first.\n"
        + _block("Lower beta1", "Set beta1 to 0.8.")
        + "\n"
        + "<idea><title></title><description>no title</description></idea>\n"
        + _block("Weird category", "Something.", category="magic")
    )
    ideas = parse_ideas(answer)
    assert [i.title for i in ideas] == ["Lower beta1", "Weird category"]
    assert ideas[0].category == "optimizer" and ideas[1].category == "other"
    assert ideas[0].text == "Set beta1 to 0.8.\n\nCode changes: train.py"


def test_json_list_is_accepted_as_a_fallback():
    answer = 'Ideas:\n[{"title": "RMSNorm", "description": "Use RMSNorm.", "category": "normalization"}, 3]'
    [idea] = parse_ideas(answer)
    assert idea.title == "RMSNorm" and idea.category == "normalization"
    assert parse_ideas("no ideas here") == [] and parse_ideas("[not json") == []


def test_near_duplicates_are_found_and_distinct_ideas_are_not():
    a = "Lower AdamW beta1 from 0.9 to 0.8 so the optimizer reacts faster in a short run."
    b = "Lower AdamW beta1 from 0.9 to 0.8 so that the optimizer reacts faster in a short run."
    c = "Replace LayerNorm with RMSNorm in every block to save compute."
    assert similarity(a, b) > 0.85 and similarity(a, c) < 0.5
    assert find_duplicate(b, [c, a]) == 1 and find_duplicate(c, [a]) is None


def test_context_shows_editable_code_with_line_numbers_and_hides_locked_files():
    context = environment_context(PromptLibrary(), NANOGPT, NANOGPT.profile("tiny").prompt_budget(), line_numbers=True)
    assert "### train.py" in context and "evaluate.py" not in context.split("## Files")[1].split("\n", 2)[2]
    assert " 1| " in context and "learning_rate = 2e-3" in context
    assert (
        "val_bpb (lower is better, in bits per byte)" in context
        and "budget per run: 196,608 tokens of training (a compute budget" in context
    )
    assert "Only train.py may be changed" in context  # the rules the evaluation enforces
    plain = environment_context(PromptLibrary(), NANOGPT, "20 seconds", line_numbers=False)
    assert " 1| " not in plain


def _history() -> SearchHistory:
    def idea(i: int, title: str) -> Idea:
        return Idea(
            id=f"e1-0{i}",
            epoch=1,
            index=i,
            title=title,
            text=f"{title} text\n\nCode changes: train.py",
            prompt_kind=PromptKind.SIMPLE,
            origin="canned",
        )

    winner, loser = idea(1, "Short context"), idea(2, "Bad idea")
    return SearchHistory(
        metric=NANOGPT.manifest.metric,
        baseline=Result(idea_id="baseline", metric=3.9),
        scored=[
            Scored(winner, Result(idea_id="e1-01", metric=3.4)),
            Scored(loser, Result(idea_id="e1-02", failure=FailureCategory.CRASHED, detail="ValueError: shapes")),
        ],
        proposed=[winner, loser],
    )


def test_exploit_and_explore_prompts_carry_results_and_duplicates_are_dropped():
    history = _history()
    answer = _block("Short context", "Short context text") + _block(
        "Lower beta1", "Set beta1 to 0.8 for a faster start."
    )
    llm = CannedLLM(answer)
    ideator = LLMIdeator(llm, NANOGPT, PromptLibrary(), "20 seconds")
    drafts = ideator.propose(
        IdeationRequest(PromptKind.EXPLOIT, 2, epoch=2, parents=history.beating_baseline()), history
    )
    exploit = llm.requests[0].messages[0]["content"]
    assert "beat the baseline (val_bpb = 3.9)" in exploit and '"Short context": val_bpb = 3.4' in exploit
    assert [d.title for d in drafts] == ["Lower beta1"]  # the first repeats an earlier idea
    assert ideator.dropped_duplicates == 1 and drafts[0].parents == ["e1-01"]
    assert drafts[0].payload["ideation_cost_usd"] == 0.04
    assert llm.requests[0].call_key == "ideate:e2:exploit" and "CODEBASE" not in llm.requests[0].system

    ideator.propose(IdeationRequest(PromptKind.EXPLORE, 2, epoch=2, tried=history.scored), history)
    explore = llm.requests[1].messages[0]["content"]
    assert "failed (crashed: ValueError: shapes)" in explore and "new directions" in explore
    assert llm.requests[1].context == llm.requests[0].context  # the cacheable prefix is shared


def test_templates_can_be_overridden_by_file_name(tmp_path):
    (tmp_path / "ideator_simple.j2").write_text("Give me {{ count }} ideas, briefly.")
    llm = CannedLLM(_block("A", "B"))
    LLMIdeator(llm, NANOGPT, PromptLibrary(tmp_path), "20 seconds").propose(
        IdeationRequest(PromptKind.SIMPLE, 3, epoch=1), SearchHistory(NANOGPT.manifest.metric, None, [])
    )
    assert llm.requests[0].messages[0]["content"] == "Give me 3 ideas, briefly.\n"
