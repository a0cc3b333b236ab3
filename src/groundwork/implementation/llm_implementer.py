"""The language-model implementer: idea + editable files -> a diff that applies, revising
itself with the exact failure (up to N times). The first attempt that applies wins. A diff
whose run crashed can be repaired: the model sees its change, the failure and the log."""

from __future__ import annotations

from pathlib import Path

from groundwork.environments import Environment
from groundwork.implementation.repair import non_finite_loss
from groundwork.llm.base import LLM, LLMRequest
from groundwork.patch.diff_text import extract_diff
from groundwork.patch.patching import PatchError, PatchPolicy, trial_apply
from groundwork.patch.search_replace import parse_search_replace, search_replace_to_diff
from groundwork.prompting import PromptLibrary, environment_context
from groundwork.protocols import FailedRun, PatchAttempt
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
            "implementer_system",
            editable=env.manifest.files.editable,
            allow_new=env.manifest.files.allow_new,
            allow_delete=env.manifest.files.allow_delete,
            edit_format=edit_format,
        )

    def implement(self, idea: Idea, codebase: Path) -> list[PatchAttempt]:
        messages = [{"role": "user", "content": self.prompts.render("implementer_task", idea=idea)}]
        return self._converse(idea, codebase, messages, f"implement:{idea.id}")

    def repair(self, idea: Idea, codebase: Path, failed: FailedRun) -> list[PatchAttempt]:
        """A corrected diff (against `codebase`, the baseline) for a patch that applied but
        whose run failed: the model sees its change, the failure and the log's end."""
        diff = failed.diff if failed.diff.endswith("\n") or not failed.diff else failed.diff + "\n"
        report = self.prompts.render(
            "implementer_repair",
            failure=failed.failure,
            detail=_unless_in_log(failed.detail.strip(), failed.log_tail),
            diff=diff,
            log_tail=failed.log_tail,
            round=failed.round,
            non_finite_loss=non_finite_loss(failed.detail + "\n" + failed.log_tail),
        )
        messages = [
            {"role": "user", "content": self.prompts.render("implementer_task", idea=idea)},
            {"role": "assistant", "content": f"```diff\n{diff}```"},
            {"role": "user", "content": report},
        ]
        return self._converse(idea, codebase, messages, f"repair:{idea.id}:round-{failed.round}")

    def _converse(self, idea: Idea, codebase: Path, messages: list[dict], key: str) -> list[PatchAttempt]:
        """Ask for a diff, then revise with the exact error until one applies (up to
        `max_revisions` times)."""
        attempts: list[PatchAttempt] = []
        for n in range(1, self.max_revisions + 2):
            response = self.llm.complete(
                LLMRequest(
                    role="implementer",
                    call_key=f"{key}:attempt-{n}",
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
            messages = [
                *messages,
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
        except Exception as exc:  # whatever an answer holds, the idea fails, never the run
            return PatchAttempt(diff="", applied=False, error=f"the answer could not be read as an edit: {exc!r}")
        return trial_apply(diff, codebase, self.policy)


def _unless_in_log(detail: str, log_tail: str) -> str:
    """The failure's first line, and the rest only when the log excerpt does not already
    show it (a crash's detail ends with the log's last lines)."""
    first, _, rest = detail.partition("\n")
    return detail if rest.strip() and rest.strip() not in log_tail else first
