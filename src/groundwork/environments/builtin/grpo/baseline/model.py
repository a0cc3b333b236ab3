"""The policy network, its tokenizer and its sampler (locked: ideas may read this file but
not change it; the locked evaluation scores every policy through it).

Task format. A problem is the addition of two zero-padded two-digit numbers, and a
completion shows one line of work, then the answer:

    prompt:      07+38=
    completion:  <think>7+8=15</think><answer>45</answer>

The tokenizer works on characters, except that the four tags <think>, </think>, <answer>
and </answer> are single tokens. Every sequence starts with BOS; a completion ends with
EOS; PAD fills the rest of a batch row and is never predicted.

The network is a small pre-norm GPT (2 blocks, width 128, 4 heads, about 0.40M
parameters) with a tied output head and a key/value cache for fast sampling. Its shape is
CONFIG; the evaluation only accepts a policy saved with exactly this CONFIG.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------- tokenizer
PAD, BOS, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<bos>", "<eos>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHARS = list("0123456789+=-* ")
VOCAB = SPECIALS + TAGS + CHARS
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = (TOKEN_ID[t] for t in TAGS)

CONFIG = dict(vocab_size=len(VOCAB), block_size=32, n_layer=2, n_head=4, n_embd=128)


def encode(text: str) -> list[int]:
    """Characters to token ids; the four tags become one token each. Raises on unknown characters."""
    ids, i = [], 0
    while i < len(text):
        for tag in TAGS:
            if text.startswith(tag, i):
                ids.append(TOKEN_ID[tag])
                i += len(tag)
                break
        else:
            if text[i] not in TOKEN_ID or text[i] in ("<", ">"):
                raise ValueError(f"character {text[i]!r} is not in the vocabulary")
            ids.append(TOKEN_ID[text[i]])
            i += 1
    return ids


def decode(ids) -> str:
    """Token ids to text, stopping at the first EOS (or PAD); BOS is dropped."""
    out = []
    for i in (ids.tolist() if torch.is_tensor(ids) else ids):
        if i in (EOS, PAD):
            break
        if i != BOS:
            out.append(VOCAB[i])
    return "".join(out)


def encode_prompts(prompts: list[str]) -> torch.Tensor:
    """A (B, T) batch of BOS + prompt; all prompts must have the same length."""
    rows = [[BOS] + encode(p) for p in prompts]
    if len({len(r) for r in rows}) != 1:
        raise ValueError("prompts in one batch must have the same length")
    return torch.tensor(rows, dtype=torch.long)


# ---------------------------------------------------------------------------- network
class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x, cache=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # incremental decoding: append this step's keys and values
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        # A new chunk of T positions attends causally within itself and fully to the cache.
        causal = T > 1
        if causal and k.size(2) != T:
            raise ValueError("a multi-token chunk must be the first one fed to the cache")
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx, caches=None, pos0=0):
        """Logits (B, T, vocab) for token ids (B, T) at positions pos0..pos0+T-1. With
        `caches` (one dict per block, from new_caches) keys and values are kept for the
        next call, which then passes only the new tokens."""
        B, T = idx.shape
        if pos0 + T > self.block_size:
            raise ValueError(f"sequence of {pos0 + T} tokens is longer than block_size {self.block_size}")
        x = self.wte(idx) + self.wpe(torch.arange(pos0, pos0 + T, device=idx.device))
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i])
        return self.lm_head(self.ln_f(x))

    def new_caches(self):
        return [{} for _ in self.blocks]


def build_model(config: dict | None = None) -> GPT:
    return GPT(**(config or CONFIG))


# ---------------------------------------------------------------------------- sampling
def mask_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits as float32 with PAD and BOS ruled out: the distribution that generate samples
    from (at temperature 1). Use it too when computing log-probabilities of completions."""
    logits = logits.float()
    banned = torch.zeros(logits.size(-1), dtype=torch.bool, device=logits.device)
    banned[PAD] = banned[BOS] = True
    return logits.masked_fill(banned, float("-inf"))


@torch.no_grad()
def generate(model: GPT, prompt_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample completions for a (B, T) batch of prompts (all the same length).

    Returns (B, max_new_tokens) token ids: each row is the completion up to and including
    its EOS, then PAD. temperature 0 means greedy decoding (argmax, ties to the lowest id).
    Rows that never emit EOS are simply cut at max_new_tokens.
    """
    B, T = prompt_ids.shape
    max_new_tokens = min(max_new_tokens, model.block_size - T)
    out = torch.full((B, max_new_tokens), PAD, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    caches = model.new_caches()
    logits = model(prompt_ids, caches, 0)[:, -1]
    for t in range(max_new_tokens):
        logits = mask_logits(logits)
        if temperature <= 0:
            nxt = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        out[:, t] = nxt
        done |= nxt == EOS
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        logits = model(nxt.unsqueeze(1), caches, T + t)[:, -1]
    return out
