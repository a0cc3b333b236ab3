"""A tiny, randomly initialised language model over a small word vocabulary, saved as an
ordinary Hugging Face model folder (config, weights, tokenizer): the offline stand-in for
a real ideator, for demonstrations and tests. Nothing is downloaded; it knows nothing
until RL teaches it. Its vocabulary is the environment's knob settings plus filler words,
so that even its first random ideas sometimes parse and sometimes do not."""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
FILLER = ["try", "use", "a", "the", "higher", "lower", "learning", "rate", "with", "and", "schedule"]


def build_tiny_model(folder: Path, words: list[str], *, seed: int = 0, width: int = 64, layers: int = 2) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

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
