"""The language-model implementer: idea + editable files -> a diff that applies, revising
itself with the exact failure (up to N times). The first attempt that applies wins."""

from __future__ import annotations

from pathlib import Path

from groundwork.environments import Environment
from groundwork.implementation.diff_text import extract_diff
from groundwork.implementation.patching import PatchError, PatchPolicy, trial_apply
from groundwork.implementation.search_replace import parse_search_replace, search_replace_to_diff
from groundwork.llm.base import LLM, LLMRequest
from groundwork.prompting import PromptLibrary, environment_context
from groundwork.protocols import PatchAttempt
from groundwork.records import Idea


class LLMImplementer:
    def __init__(
        self,
        llm: LLM,
        env: Environment,
        prompts: PromptLibrary,
        policy: PatchPolicy,
        budget: str,
        *,
        max_revisions: int = 2,
        edit_format: str = "diff",
        thinking_budget: int | None = None,
        reasoning_effort: str | None = None,
        max_tokens: int = 16000,
    ):
        if edit_format not in ("diff", "search_replace"):
            raise ValueError(f"edit format {edit_format!r}: use 'diff' or 'search_replace'")
        self.llm = llm
        self.label = f"{llm.provider}:{llm.model}"
        self.policy = policy
        self.prompts = prompts
        self.max_revisions = max_revisions
        self.edit_format = edit_format
        self.thinking_budget = thinking_budget
        self.reasoning_effort = reasoning_effort
        self.max_tokens = max_tokens
        self.context = environment_context(prompts, env, budget, line_numbers=False)
        self.system = prompts.render(
            "implementer_system", editable=env.manifest.files.editable, edit_format=edit_format
        )

    def implement(self, idea: Idea, codebase: Path) -> list[PatchAttempt]:
        messages = [{"role": "user", "content": self.prompts.render("implementer_task", idea=idea)}]
        attempts: list[PatchAttempt] = []
        for n in range(1, self.max_revisions + 2):
            response = self.llm.complete(
                LLMRequest(
                    role="implementer",
                    call_key=f"implement:{idea.id}:attempt-{n}",
                    system=self.system,
                    context=self.context,
                    messages=list(messages),
                    max_tokens=self.max_tokens,
                    thinking_budget=self.thinking_budget,
                    reasoning_effort=self.reasoning_effort,
                    metadata={"epoch": idea.epoch, "idea_id": idea.id},
                )
            )
            attempt = self._check(response.text, codebase)
            attempts.append(
                PatchAttempt(
                    diff=attempt.diff,
                    applied=attempt.applied,
                    error=attempt.error,
                    files=attempt.files,
                    codebase_hash=attempt.codebase_hash,
                    cost_usd=response.cost_usd or 0.0,
                    model=response.model,
                    tokens=response.usage.total,
                )
            )
            if attempt.applied:
                break
            messages += [
                {"role": "assistant", "content": response.text},
                {"role": "user", "content": self.prompts.render("implementer_revision", error=attempt.error)},
            ]
        return attempts

    def _check(self, answer: str, codebase: Path) -> PatchAttempt:
        try:
            if self.edit_format == "search_replace":
                diff = search_replace_to_diff(parse_search_replace(answer), codebase, self.policy)
            else:
                diff = extract_diff(answer)
        except PatchError as exc:
            return PatchAttempt(diff="", applied=False, error=str(exc))
        return trial_apply(diff, codebase, self.policy)
