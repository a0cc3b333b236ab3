"""Train a small byte-level GPT on Python source under a fixed wall-clock budget.

This is the file research ideas edit. The score is the validation bits per byte measured
afterwards by a separate, locked evaluation script, which imports this file and calls
`build_model(model_args)` on the saved checkpoint: keep that function and the checkpoint
format working, and keep everything that runs under `main()`.
"""
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------
# Knobs: one literal per line, `name = value  # comment`.
# Model
n_layer = 2  # transformer blocks
n_head = 4  # attention heads; must divide n_embd
n_embd = 128  # residual stream width
block_size = 128  # context length in bytes
dropout = 0.0  # dropout probability (0 = off; runs are short, overfitting is rare)
bias = True  # biases in Linear and LayerNorm layers
tie_weights = True  # share the token embedding with the output head
# Optimization
batch_size = 16  # sequences per step
learning_rate = 2e-3  # peak learning rate
warmup_steps = 10  # linear warmup length in steps
min_lr_ratio = 0.1  # cosine decay floor as a fraction of learning_rate
weight_decay = 0.1  # AdamW decoupled weight decay, applied to 2-D weights only
beta1 = 0.9  # AdamW first-moment decay
beta2 = 0.95  # AdamW second-moment decay
grad_clip = 1.0  # max global gradient norm (0 = off)
log_every = 10  # steps between log lines

# ----------------------------------------------------------------------------------------
# Set by the harness through environment variables, not by ideas.
DATA_DIR = os.environ.get("GROUNDWORK_DATA_DIR", "")  # folder with train.bin / val.bin
TIME_BUDGET_S = float(os.environ.get("GROUNDWORK_TIME_BUDGET_S", "20"))  # wall-clock training budget
MAX_TRAIN_TOKENS = int(os.environ.get("GROUNDWORK_MAX_TRAIN_TOKENS", "0"))  # token cap, 0 = none
SEED = int(os.environ.get("GROUNDWORK_SEED", "1337"))
NUM_THREADS = int(os.environ.get("GROUNDWORK_NUM_THREADS", "1"))
OUT_DIR = os.environ.get("GROUNDWORK_OUT_DIR", "out")
VOCAB_SIZE = 256  # bytes


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, dropout, bias):
        super().__init__()
        assert n_embd % n_head == 0, "n_head must divide n_embd"
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)  # output projection into the residual
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd, dropout, bias):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = self.c_fc(x)
        x = F.gelu(x)
        return self.drop(self.c_proj(x))


def make_norm(n_embd, bias):
    """Every normalization layer is built here, so one line chooses the kind."""
    return nn.LayerNorm(n_embd, bias=bias)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, n_embd, n_head, dropout, bias):
        super().__init__()
        self.ln_1 = make_norm(n_embd, bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = make_norm(n_embd, bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias, tie_weights):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)  # token embedding
        self.wpe = nn.Embedding(block_size, n_embd)  # learned absolute position embedding
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(n_embd, n_head, dropout, bias) for _ in range(n_layer)])
        self.ln_f = make_norm(n_embd, bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)  # GPT-2 init
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        assert T <= self.block_size, f"sequence length {T} > block_size {self.block_size}"
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


def build_model(model_args: dict) -> nn.Module:
    """Construct the model from the checkpoint's `model_args` (the locked evaluation calls this)."""
    return GPT(**model_args)


class AdamW:
    """Adam with decoupled weight decay, step for step the math of torch.optim.AdamW: written
    out to be easy to read and edit, and because torch.optim costs ~2 s of imports on CPU."""

    def __init__(self, param_groups, lr, betas, eps=1e-8):
        self.param_groups = [dict(group, lr=lr) for group in param_groups]
        self.beta1, self.beta2, self.eps, self.t = betas[0], betas[1], eps, 0
        self.state = {p: (torch.zeros_like(p), torch.zeros_like(p)) for g in self.param_groups for p in g["params"]}

    def zero_grad(self):
        for p in self.state:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        bias1, bias2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t  # moment bias corrections
        for group in self.param_groups:
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m, v = self.state[p]
                p.mul_(1 - lr * group["weight_decay"])  # decoupled weight decay
                m.lerp_(p.grad, 1 - self.beta1)  # running mean of gradients
                v.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)  # ... of squared gradients
                p.addcdiv_(m, (v.sqrt() / math.sqrt(bias2)).add_(self.eps), value=-lr / bias1)


def get_batch(data, gen):
    """Random (x, y) windows from the byte tensor; y is x shifted by one byte."""
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=gen)
    chunk = data[ix[:, None] + torch.arange(block_size + 1)].long()
    return chunk[:, :-1], chunk[:, 1:]


def get_lr(step, progress):
    """Linear warmup over steps, then cosine decay to min_lr_ratio * learning_rate over progress."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return learning_rate * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


def main():
    if not DATA_DIR or not os.path.isfile(os.path.join(DATA_DIR, "train.bin")):
        raise SystemExit(f"train.py: GROUNDWORK_DATA_DIR must name a folder with train.bin (got {DATA_DIR!r})")
    torch.set_num_threads(NUM_THREADS)
    torch.manual_seed(SEED)  # model init
    gen = torch.Generator().manual_seed(SEED)  # batch sampling
    with open(os.path.join(DATA_DIR, "train.bin"), "rb") as f:
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    os.makedirs(OUT_DIR, exist_ok=True)

    model_args = dict(vocab_size=VOCAB_SIZE, block_size=block_size, n_layer=n_layer, n_head=n_head,
                      n_embd=n_embd, dropout=dropout, bias=bias, tie_weights=tie_weights)
    model = build_model(model_args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {model_args}", flush=True)
    # Decay only matrices (embeddings included); biases and norm gains stay free.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = AdamW(groups, lr=learning_rate, betas=(beta1, beta2))

    log = open(os.path.join(OUT_DIR, "train_log.jsonl"), "w")
    step, tokens_seen, loss_val, t0 = 0, 0, float("nan"), time.time()  # the clock starts once the model exists
    t_last, tokens_last = t0, 0
    while True:
        elapsed = time.time() - t0
        if elapsed > TIME_BUDGET_S or (MAX_TRAIN_TOKENS and tokens_seen >= MAX_TRAIN_TOKENS):
            break
        # Progress by time or tokens, whichever is further along: the step count is unknown.
        progress = max(elapsed / TIME_BUDGET_S, tokens_seen / MAX_TRAIN_TOKENS if MAX_TRAIN_TOKENS else 0.0)
        lr = get_lr(step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(data, gen)
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        step += 1
        tokens_seen += x.numel()
        loss_val = loss.item()  # cheap on CPU
        if step % log_every == 0 or step == 1:
            now = time.time()
            tok_s = (tokens_seen - tokens_last) / max(now - t_last, 1e-9)
            t_last, tokens_last = now, tokens_seen
            print(f"step {step} | loss {loss_val:.4f} | lr {lr:.1e} | tok/s {tok_s:.0f} | elapsed {now - t0:.1f}s",
                  flush=True)
            log.write(json.dumps({"step": step, "tokens": tokens_seen, "loss": loss_val, "lr": lr,
                                  "elapsed_s": round(now - t0, 3)}) + "\n")
            log.flush()
    train_seconds = time.time() - t0
    log.close()

    ckpt = {"model_args": model_args, "state_dict": model.state_dict(), "steps": step,
            "tokens_seen": tokens_seen, "train_seconds": train_seconds}
    torch.save(ckpt, os.path.join(OUT_DIR, "ckpt.pt"))
    print(f"done: {step} steps, {tokens_seen} tokens in {train_seconds:.1f}s "
          f"({tokens_seen / max(train_seconds, 1e-9):.0f} tok/s), final train loss {loss_val:.4f}", flush=True)


if __name__ == "__main__":
    main()
