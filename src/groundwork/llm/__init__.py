"""Language models: one small interface, providers on the official SDKs, usage and cost
accounting, recording every call, and replaying recorded runs offline."""

from groundwork.llm.base import LLM, LLMError, LLMRequest, LLMResponse, Usage

__all__ = ["LLM", "LLMError", "LLMRequest", "LLMResponse", "Usage"]
