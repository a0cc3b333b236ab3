"""The model implementer: first applying attempt wins, failures go back with their reason,
revisions are bounded, both edit formats work."""

from __future__ import annotations

from groundwork.environments import load_environment
from groundwork.implementation.llm_implementer import LLMImplementer
from groundwork.llm.base import LLMRequest, LLMResponse
from groundwork.patch.patching import PatchPolicy, unified_diff
from groundwork.prompting import PromptLibrary
from groundwork.records import Idea, PromptKind

NANOGPT = load_environment("nanogpt")
POLICY = PatchPolicy.from_files(NANOGPT.manifest.files)
TRAIN = (NANOGPT.codebase_dir / "train.py").read_text()
IDEA = Idea(
    id="e1-01",
    epoch=1,
    index=1,
    title="Lower beta1",
    text="Set beta1 to 0.8.",
    prompt_kind=PromptKind.SIMPLE,
    origin="test",
)
GOOD = unified_diff({"train.py": TRAIN}, {"train.py": TRAIN.replace("beta1 = 0.9 ", "beta1 = 0.8 ", 1)})


class ScriptedAnswers:
    """Test double: answers calls in order and keeps the requests."""

    provider, model = "scripted", "scripted-model"

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.requests: list[LLMRequest] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        return LLMResponse(text=self.answers.pop(0), model=self.model, provider=self.provider, cost_usd=0.01)


def _implementer(llm, **kwargs) -> LLMImplementer:
    return LLMImplementer(llm, NANOGPT, PromptLibrary(), POLICY, "20 seconds", **kwargs)


def test_a_failed_patch_goes_back_with_its_reason_and_the_revision_wins():
    locked_edit = unified_diff({"evaluate.py": "x\n"}, {"evaluate.py": "y\n"})
    llm = ScriptedAnswers(f"```diff\n{locked_edit}```", "no diff at all, sorry", f"Fixed:\n```diff\n{GOOD}```")
    attempts = _implementer(llm).implement(IDEA, NANOGPT.codebase_dir)
    assert [a.applied for a in attempts] == [False, False, True]
    assert "locked" in attempts[0].error and "no unified diff" in attempts[1].error
    assert attempts[2].files == ["train.py"] and attempts[2].cost_usd == 0.01 and attempts[2].model == "scripted-model"
    revision = llm.requests[1].messages
    assert [m["role"] for m in revision] == ["user", "assistant", "user"]
    assert "locked" in revision[2]["content"] and "against the original files" in revision[2]["content"]
    assert [r.call_key for r in llm.requests] == [f"implement:e1-01:attempt-{n}" for n in (1, 2, 3)]


def test_revisions_are_bounded():
    llm = ScriptedAnswers("nothing", "still nothing")
    attempts = _implementer(llm, max_revisions=1).implement(IDEA, NANOGPT.codebase_dir)
    assert len(attempts) == 2 and not any(a.applied for a in attempts) and len(llm.requests) == 2


def test_search_replace_format():
    answer = (
        "train.py\n<<<<<<< SEARCH\nbeta1 = 0.9  # AdamW first-moment decay\n=======\n"
        "beta1 = 0.8  # AdamW first-moment decay\n>>>>>>> REPLACE\n"
    )
    llm = ScriptedAnswers(answer)
    implementer = _implementer(llm, edit_format="search_replace")
    [attempt] = implementer.implement(IDEA, NANOGPT.codebase_dir)
    assert attempt.applied, attempt.error
    assert "-beta1 = 0.9" in attempt.diff and "+beta1 = 0.8" in attempt.diff
    assert "SEARCH/REPLACE" in implementer.system
