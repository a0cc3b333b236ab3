"""From a model spec string to a ready LLM."""

from __future__ import annotations

from groundwork.llm.base import LLM
from groundwork.llm.recording import ReplayLLM, load_recording

SPEC_HELP = (
    "use anthropic:MODEL, openai:MODEL, openai-compatible:MODEL@BASE_URL (vLLM, SGLang, Ollama) "
    "or replay:RUN_FOLDER|FILE.jsonl|BUILTIN_NAME"
)


def make_llm(spec: str, role: str) -> LLM:
    kind, _, rest = spec.partition(":")
    if not rest:
        raise ValueError(f"model spec {spec!r} names no model: {SPEC_HELP}")
    if kind == "anthropic":
        from groundwork.llm.anthropic_provider import AnthropicLLM

        return AnthropicLLM(rest)
    if kind == "openai":
        from groundwork.llm.openai_provider import OpenAILLM

        return OpenAILLM(rest)
    if kind == "openai-compatible":
        model, at, url = rest.rpartition("@")
        if not at or not model or not url.startswith(("http://", "https://")):
            raise ValueError(f"model spec {spec!r}: write openai-compatible:MODEL@http://host:port/v1")
        from groundwork.llm.openai_provider import OpenAILLM

        return OpenAILLM(model, base_url=url)
    if kind == "replay":
        return ReplayLLM(load_recording(rest), role, rest)
    raise ValueError(f"unknown model provider {kind!r} in {spec!r}: {SPEC_HELP}")
