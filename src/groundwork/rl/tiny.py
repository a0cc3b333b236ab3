"""A tiny, randomly initialised language model over a small word vocabulary, saved as an
ordinary Hugging Face model folder (config, weights, tokenizer): the offline stand-in for
a real ideator, for demonstrations and tests. Nothing is downloaded; it knows nothing
until RL teaches it. Its vocabulary is the environment's knob settings plus filler words,
so that even its first random ideas sometimes parse and sometimes do not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
FILLER = ["try", "use", "a", "the", "higher", "lower", "learning", "rate", "with", "and", "schedule"]


def tiny_model_dir(environment: str, seed: int) -> Path:
    """The default home of a tiny model: the user's cache, never the current folder (which
    is often a clone of this project, where it would be an untracked folder)."""
    from groundwork.environments.registry import cache_root

    return cache_root() / "tiny-models" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', environment)}-seed{seed}"


def build_tiny_model(folder: Path, words: list[str], *, seed: int = 0, width: int = 64, layers: int = 2) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from transformers.utils import logging

    logging.disable_progress_bar()

    vocab = {token: i for i, token in enumerate(dict.fromkeys(SPECIALS + words + FILLER))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=256,
        n_embd=width,
        n_layer=layers,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    model = GPT2LMHeadModel(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


FACTORS = (0.1, 0.3, 3.0, 10.0)


def knob_words(codebase: Path, editable: list[str]) -> list[str]:
    """`name=value` words for the numeric knobs of an environment's editable files: each
    knob's current value times 0.1, 0.3, 3 and 10 (integers rounded, at least 1). Upper-case
    names are taken for constants and left out."""
    from groundwork.implementation.knob_implementer import knobs_of

    words = []
    for name, rel in sorted(knobs_of(codebase, editable).items()):
        if name.isupper():
            continue  # CONSTANTS by convention: fixed by the environment, not knobs
        line = re.search(rf"^{re.escape(name)}\s*=\s*([^#\n]+)", (codebase / rel).read_text(), re.MULTILINE)
        try:
            value = ast.literal_eval(line.group(1).strip()) if line else None
        except (ValueError, SyntaxError):
            continue  # computed, not a literal: not a knob an idea sets by value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
            continue
        for factor in FACTORS:
            new = max(1, round(value * factor)) if isinstance(value, int) else value * factor
            words.append(f"{name}={new:.3g}" if isinstance(new, float) else f"{name}={new}")
    return list(dict.fromkeys(w for w in words))
