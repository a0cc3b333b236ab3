"""A test double of a language model: answers from a script (a function of the request),
in process, and remembers every request. For tests only."""

from __future__ import annotations

from collections.abc import Callable

from groundwork.llm.base import LLMRequest, LLMResponse, Usage

Script = Callable[[LLMRequest], str]  # request -> answer text (or raise, e.g. to stop the run there)


class ScriptedTestLLM:
    provider = "scripted"

    def __init__(self, script: Script, model: str = "scripted-test-double"):
        self.script = script
        self.model = model
        self.requests: list[LLMRequest] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        text = self.script(request)
        return LLMResponse(text=text, model=self.model, provider=self.provider, usage=Usage(100, 0, 0, 50, 0))
