"""The one interface every language model is used through."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable


class LLMError(RuntimeError):
    """A model call that failed after the provider's retries; the message says what to do."""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # uncached input
    cached_input_tokens: int = 0  # input read from the provider's prompt cache
    cache_write_tokens: int = 0  # input written to the prompt cache
    output_tokens: int = 0  # visible output
    thinking_tokens: int = 0  # reasoning / extended thinking (billed as output)

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


@dataclass(frozen=True)
class LLMRequest:
    """What to ask. `context` is the long shared part (the codebase, the goal): it comes
    first and is marked for prompt caching, since it is the same for every call of an epoch."""

    role: str  # "ideator" or "implementer"
    call_key: str  # names the logical call, e.g. "implement:e1-02:attempt-1"
    system: str
    context: str
    messages: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": ...}]
    max_tokens: int = 8000
    thinking_budget: int | None = None  # Anthropic extended thinking tokens
    reasoning_effort: str | None = None  # OpenAI reasoning effort: low, medium, high
    temperature: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # epoch, idea id: stored, not sent

    def fingerprint(self, model: str) -> str:
        """Hash of everything that determines the answer (metadata excluded)."""
        payload = {k: v for k, v in asdict(self).items() if k not in ("metadata", "role")}
        payload["model"] = model
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class LLMResponse:
    text: str
    model: str
    provider: str
    usage: Usage = Usage()
    thinking: str = ""
    cost_usd: float | None = None  # None: the model has no price in the table
    latency_s: float = 0.0
    replayed: bool = False


@runtime_checkable
class LLM(Protocol):
    model: str
    provider: str

    def complete(self, request: LLMRequest) -> LLMResponse: ...
