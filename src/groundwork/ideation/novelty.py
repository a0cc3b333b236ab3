"""Near-duplicate detection by text similarity, so repeated ideas are dropped before they
cost an implementation or a training run."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

DUPLICATE_SIMILARITY = 0.85


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9.]+", text.lower())


def similarity(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def find_duplicate(text: str, earlier: list[str], threshold: float = DUPLICATE_SIMILARITY) -> int | None:
    """Index of the first earlier text at least `threshold` similar, or None."""
    for index, other in enumerate(earlier):
        if similarity(text, other) >= threshold:
            return index
    return None
