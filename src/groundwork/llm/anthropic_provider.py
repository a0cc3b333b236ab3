"""Anthropic models through the official SDK: extended thinking, and prompt caching of
the shared context (the codebase and goal, identical for every call of an epoch)."""

from __future__ import annotations

import os
import time

from groundwork.llm.base import LLMError, LLMRequest, LLMResponse, Usage


class AnthropicLLM:
    provider = "anthropic"

    def __init__(
        self,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 5,
        timeout_s: float = 600.0,
    ):
        import anthropic

        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise LLMError(
                f"no Anthropic API key for model {model!r}: set ANTHROPIC_API_KEY "
                "(or use --llm openai:MODEL, a local server with --llm openai-compatible:MODEL@BASE_URL, "
                "or the offline catalog ideator)"
            )
        self.model = model
        self._errors = anthropic
        # The SDK retries rate limits (429), overload (529), server errors and dropped
        # connections with exponential backoff.
        self.client = anthropic.Anthropic(
            api_key=key,
            base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL"),
            max_retries=max_retries,
            timeout=timeout_s,
        )

    def complete(self, request: LLMRequest) -> LLMResponse:
        system = [{"type": "text", "text": request.system}]
        if request.context:
            system.append({"type": "text", "text": request.context, "cache_control": {"type": "ephemeral"}})
        kwargs: dict = {
            "model": self.model,
            "system": system,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
        }
        if request.thinking_budget:
            kwargs["thinking"] = {"type": "enabled", "budget_tokens": request.thinking_budget}
            kwargs["max_tokens"] = request.max_tokens + request.thinking_budget
        elif request.temperature is not None:
            kwargs["temperature"] = request.temperature
        started = time.monotonic()
        try:
            message = self.client.messages.create(**kwargs)
        except self._errors.AuthenticationError as exc:
            raise LLMError(f"Anthropic rejected the API key (check ANTHROPIC_API_KEY): {exc}") from None
        except self._errors.APIError as exc:
            raise LLMError(f"Anthropic call for {request.call_key} failed after retries: {exc}") from None
        text = "".join(b.text for b in message.content if getattr(b, "type", "") == "text")
        thinking = "".join(b.thinking for b in message.content if getattr(b, "type", "") == "thinking")
        u = message.usage
        usage = Usage(
            input_tokens=u.input_tokens or 0,
            cached_input_tokens=u.cache_read_input_tokens or 0,
            cache_write_tokens=u.cache_creation_input_tokens or 0,
            output_tokens=u.output_tokens or 0,
        )
        return LLMResponse(
            text=text,
            thinking=thinking,
            model=message.model or self.model,
            provider=self.provider,
            usage=usage,
            latency_s=time.monotonic() - started,
        )
