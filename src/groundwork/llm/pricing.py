"""Dollar cost of a call from its token usage and a price table the user can extend."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from groundwork.llm.base import Usage

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTIN_PRICES = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = self.input if self.cached_input is None else self.cached_input
        write = self.input if self.cache_write is None else self.cache_write
        return (
            usage.input_tokens * self.input
            + usage.cached_input_tokens * cached
            + usage.cache_write_tokens * write
            + (usage.output_tokens + usage.thinking_tokens) * self.output
        ) / 1e6


class PriceTable:
    def __init__(self, prices: dict[str, Price]):
        self.prices = prices

    @classmethod
    def load(cls, extra: Path | None = None) -> PriceTable:
        files = [BUILTIN_PRICES]
        extra = extra or (Path(os.environ["GROUNDWORK_PRICES"]) if os.environ.get("GROUNDWORK_PRICES") else None)
        if extra is not None:
            files.append(extra)
        prices: dict[str, Price] = {}
        for path in files:
            try:
                data = tomllib.loads(path.read_text())
                for name, entry in data.get("models", {}).items():
                    prices[name] = Price(**entry)
            except (OSError, tomllib.TOMLDecodeError, TypeError) as exc:
                raise ValueError(
                    f'price table {path}: {exc} (expected [models."NAME"] with input/output/'
                    "cached_input/cache_write in dollars per million tokens)"
                ) from None
        return cls(prices)

    def price(self, model: str) -> Price | None:
        """The entry whose key is the longest prefix of the model name (dates and
        provider prefixes like "anthropic/" are tolerated)."""
        name = model.split("/")[-1]
        matches = [k for k in self.prices if name.startswith(k)]
        return self.prices[max(matches, key=len)] if matches else None

    def cost(self, model: str, usage: Usage) -> float | None:
        price = self.price(model)
        return None if price is None else price.cost(usage)
