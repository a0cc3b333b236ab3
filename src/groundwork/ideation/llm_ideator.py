"""The language-model ideator: simple, exploit and explore prompts as in the paper."""

from __future__ import annotations

import random

from groundwork.environments import Environment
from groundwork.ideation.feedback import parent_lines, tried_lines
from groundwork.ideation.novelty import EmbeddingNovelty, TextNovelty
from groundwork.ideation.parsing import parse_ideas
from groundwork.llm.base import LLM, LLMRequest
from groundwork.prompting import PromptLibrary, environment_context
from groundwork.protocols import IdeaDraft, IdeationRequest, SearchHistory
from groundwork.records import PromptKind

MAX_TRIED_SHOWN = 40


class LLMIdeator:
    def __init__(
        self,
        llm: LLM,
        env: Environment,
        prompts: PromptLibrary,
        budget: str,
        *,
        thinking_budget: int | None = None,
        reasoning_effort: str | None = None,
        max_tokens: int = 8000,
        novelty: TextNovelty | EmbeddingNovelty | None = None,
    ):
        self.llm = llm
        self.label = f"{llm.provider}:{llm.model}"
        self.env = env
        self.prompts = prompts
        self.thinking_budget = thinking_budget
        self.reasoning_effort = reasoning_effort
        self.max_tokens = max_tokens
        self.context = environment_context(prompts, env, budget, line_numbers=True)
        self.novelty = novelty or TextNovelty()
        self.dropped_duplicates = 0

    def propose(self, request: IdeationRequest, history: SearchHistory) -> list[IdeaDraft]:
        metric = self.env.manifest.metric
        baseline = history.baseline.metric if history.baseline and history.baseline.valid else None
        if request.kind == PromptKind.EXPLOIT and request.parents:
            body = self.prompts.render(
                "ideator_exploit",
                count=request.count,
                metric=metric,
                baseline=baseline,
                parents=request.parents,
                parent_lines=parent_lines(request.parents, metric, baseline),
            )
        elif request.kind == PromptKind.EXPLORE and request.tried:
            tried = list(request.tried)
            if len(tried) > MAX_TRIED_SHOWN:  # a fixed-seed sample keeps long runs' prompts bounded
                tried = random.Random(f"{request.seed}:{request.epoch}").sample(tried, MAX_TRIED_SHOWN)
            body = self.prompts.render(
                "ideator_explore",
                count=request.count,
                metric=metric,
                baseline=baseline,
                tried=tried,
                tried_lines=tried_lines(tried, metric, baseline),
            )
        else:
            body = self.prompts.render("ideator_simple", count=request.count, metric=metric)
        response = self.llm.complete(
            LLMRequest(
                role="ideator",
                call_key=request.call_key,
                system=self.prompts.render("ideator_system"),
                context=self.context,
                messages=[{"role": "user", "content": body}],
                max_tokens=self.max_tokens,
                thinking_budget=self.thinking_budget,
                reasoning_effort=self.reasoning_effort,
                metadata={"epoch": request.epoch, "kind": str(request.kind)},
            )
        )
        earlier = [i.title + "\n" + i.text for i in history.proposed]
        drafts: list[IdeaDraft] = []
        for draft in parse_ideas(response.text):
            if len(drafts) == request.count:
                break
            if self.novelty.find_duplicate(draft.title + "\n" + draft.text, earlier) is not None:
                self.dropped_duplicates += 1
                continue
            earlier.append(draft.title + "\n" + draft.text)
            share = (response.cost_usd or 0.0) / max(1, request.count)
            drafts.append(
                IdeaDraft(
                    title=draft.title,
                    text=draft.text,
                    category=draft.category,
                    thinking=response.thinking,
                    parents=[s.idea.id for s in request.parents] if request.kind == PromptKind.EXPLOIT else [],
                    payload={"ideation_cost_usd": share, "model": response.model},
                )
            )
        return drafts
