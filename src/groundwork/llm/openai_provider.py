"""OpenAI models, and any OpenAI-compatible server (vLLM, SGLang, Ollama) by base URL,
through the official SDK's chat completions."""

from __future__ import annotations

import importlib
import os
import threading
import time

from groundwork.llm.base import LLMError, LLMRequest, LLMResponse, Usage


def _import_openai() -> None:
    try:
        importlib.import_module("openai")
    except Exception:  # noqa: S110 (the first call imports it again and raises the real error)
        pass


class OpenAILLM:
    def __init__(
        self,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 5,
        timeout_s: float = 600.0,
    ):
        self.model = model
        self.compatible = base_url is not None
        self.provider = "openai-compatible" if self.compatible else "openai"
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not self.compatible:
            raise LLMError(
                f"no OpenAI API key for model {model!r}: set OPENAI_API_KEY, or point "
                "--llm openai-compatible:MODEL@BASE_URL at a local server"
            )
        # Local servers usually ignore the key, but the SDK wants one.
        self._client_args = {"api_key": key or "unused", "base_url": base_url, "max_retries": max_retries,
                             "timeout": timeout_s}  # fmt: skip
        self._client = None
        # The SDK takes a second or more to import: load it while the run starts (the baseline's
        # job runs before the first call), not in the first call's way.
        self._warm_up = threading.Thread(target=_import_openai, name="openai-import", daemon=True)
        self._warm_up.start()

    @property
    def client(self):
        if self._client is None:
            self._warm_up.join()
            import openai  # loaded by the warm-up; raises its error here if that failed

            self._errors = openai
            self._client = openai.OpenAI(**self._client_args)
        return self._client

    def complete(self, request: LLMRequest) -> LLMResponse:
        # The shared context leads the prompt so that OpenAI's automatic prefix caching
        # (and vLLM/SGLang prefix caching) reuses it across the calls of an epoch.
        system = request.system + ("\n\n" + request.context if request.context else "")
        kwargs: dict = {"model": self.model, "messages": [{"role": "system", "content": system}, *request.messages]}
        kwargs["max_tokens" if self.compatible else "max_completion_tokens"] = request.max_tokens
        if request.reasoning_effort and not self.compatible:
            kwargs["reasoning_effort"] = request.reasoning_effort
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        client = self.client
        started = time.monotonic()
        try:
            completion = client.chat.completions.create(**kwargs)
        except self._errors.AuthenticationError as exc:
            raise LLMError(f"{self.provider} rejected the API key (check OPENAI_API_KEY): {exc}") from None
        except self._errors.APIError as exc:
            raise LLMError(f"{self.provider} call for {request.call_key} failed after retries: {exc}") from None
        if not completion.choices:
            raise LLMError(f"{self.provider} returned no choices for {request.call_key}")
        message = completion.choices[0].message
        u = completion.usage
        cached = getattr(getattr(u, "prompt_tokens_details", None), "cached_tokens", None) or 0
        reasoning = getattr(getattr(u, "completion_tokens_details", None), "reasoning_tokens", None) or 0
        usage = Usage(
            input_tokens=max(0, (u.prompt_tokens or 0) - cached) if u else 0,
            cached_input_tokens=cached,
            output_tokens=max(0, (u.completion_tokens or 0) - reasoning) if u else 0,
            thinking_tokens=reasoning,
        )
        thinking = getattr(message, "reasoning_content", None) or ""
        return LLMResponse(
            text=message.content or "",
            thinking=thinking,
            model=completion.model or self.model,
            provider=self.provider,
            usage=usage,
            latency_s=time.monotonic() - started,
        )
