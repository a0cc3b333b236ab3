"""From a model spec string to a ready LLM."""

from __future__ import annotations

import os

from groundwork.llm.base import LLM
from groundwork.llm.recording import ReplayLLM, load_recording

SPEC_HELP = (
    "use anthropic:MODEL, openai:MODEL, openai-compatible:MODEL@BASE_URL (vLLM, SGLang, Ollama) "
    "or replay:RUN_FOLDER|FILE.jsonl|BUILTIN_NAME"
)


# Where each hosted provider's key is read from (local OpenAI-compatible servers need none).
KEY_VARIABLES = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def _split(spec: str) -> tuple[str, str]:
    kind, _, rest = spec.partition(":")
    if not rest:
        raise ValueError(f"model spec {spec!r} names no model: {SPEC_HELP}")
    if kind == "openai-compatible":
        model, at, url = rest.rpartition("@")
        if not at or not model or not url.startswith(("http://", "https://")):
            raise ValueError(f"model spec {spec!r}: write openai-compatible:MODEL@http://host:port/v1")
    elif kind not in ("anthropic", "openai", "replay"):
        raise ValueError(f"unknown model provider {kind!r} in {spec!r}: {SPEC_HELP}")
    return kind, rest


def check_spec(spec: str, option: str) -> None:
    """What can be known about a spec offline, before a run folder exists: its syntax,
    its provider's API key, its replay source."""
    try:
        kind, rest = _split(spec)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None
    variable = KEY_VARIABLES.get(kind)
    if variable and not os.environ.get(variable):
        raise ValueError(
            f"{option} {spec} needs an API key: set {variable} (or use a local server with "
            "openai-compatible:MODEL@BASE_URL, or the offline --llm catalog)"
        )
    if kind == "replay":
        load_recording(rest)  # names the missing run folder or file


def make_llm(spec: str, role: str) -> LLM:
    kind, rest = _split(spec)
    if kind == "anthropic":
        from groundwork.llm.anthropic_provider import AnthropicLLM

        return AnthropicLLM(rest)
    if kind == "openai":
        from groundwork.llm.openai_provider import OpenAILLM

        return OpenAILLM(rest)
    if kind == "openai-compatible":
        model, _, url = rest.rpartition("@")
        from groundwork.llm.openai_provider import OpenAILLM

        return OpenAILLM(model, base_url=url)
    return ReplayLLM(load_recording(rest), role, rest)
