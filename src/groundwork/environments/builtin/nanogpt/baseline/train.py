"""Train a GPT under a fixed budget: a number of training bytes on Python source (the CPU
profiles; the same on any machine), or wall-clock time on GPT-2 tokens on GPUs (small: one
GPU; full: GPT-2 124M on 8 GPUs under torchrun).

This is the file research ideas edit. The score is the validation bits per byte measured
afterwards by a separate, locked evaluation script, which imports this file and calls
`build_model(model_args)` on the saved checkpoint: keep that function and the checkpoint
format working, and keep everything that runs under `main()`.
"""
import contextlib
import glob
import json
import math
import os
import sys
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
BUDGET = os.environ.get("GROUNDWORK_BUDGET", "time")  # "compute": train MAX_TRAIN_TOKENS, whatever the clock says
TIME_BUDGET_S = float(os.environ.get("GROUNDWORK_TIME_BUDGET_S", "20"))  # wall-clock budget (compute: a kill limit)
MAX_TRAIN_TOKENS = int(os.environ.get("GROUNDWORK_COMPUTE_TOKENS", "0"))  # token budget (time: a cap), 0 = none
SEED = int(os.environ.get("GROUNDWORK_SEED", "1337"))
NUM_THREADS = int(os.environ.get("GROUNDWORK_NUM_THREADS", "1"))
OUT_DIR = os.environ.get("GROUNDWORK_OUT_DIR", "out")
SCALE = os.environ.get("GROUNDWORK_SCALE", "tiny")  # which preset below: tiny, small or full
DEVICE = os.environ.get("GROUNDWORK_DEVICE", "cpu")  # "cuda" on GPU profiles (bf16 autocast)
COMPILE = os.environ.get("GROUNDWORK_COMPILE", "0")  # "1": torch.compile, warmed up before the clock; "0": off
NPROC = int(os.environ.get("GROUNDWORK_NPROC", "1"))  # processes (GPUs); above 1 this file relaunches under torchrun
BYTE_VOCAB, TOKEN_VOCAB = 256, 50304  # bytes; GPT-2's 50257 tokens padded to a multiple of 64

# Scale presets: the profile picks one; "tiny" trains with the knobs above.
if SCALE == "small":  # one GPU, about 5 minutes: 8 layers, 512 wide, context 1024
    n_layer, n_head, n_embd, block_size = 8, 8, 512, 1024
    batch_size, learning_rate, warmup_steps, log_every = 32, 1.5e-3, 100, 50
elif SCALE == "full":  # GPT-2 124M on 8 GPUs, 25 minutes; batch_size is per GPU
    n_layer, n_head, n_embd, block_size = 12, 12, 768, 1024
    batch_size, learning_rate, warmup_steps, log_every = 64, 1.5e-3, 300, 50


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


def load_data(data_dir):
    """(training data, vocabulary size): train.bin as one byte tensor, or the llm.c token
    shards train_*.bin (a header of 256 int32, then uint16 tokens) as memory maps."""
    path = os.path.join(data_dir, "train.bin")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8), BYTE_VOCAB
    import numpy as np

    shards = []
    for shard in sorted(glob.glob(os.path.join(data_dir, "train_*.bin"))):
        header = np.fromfile(shard, dtype=np.int32, count=256)
        shards.append(np.memmap(shard, dtype=np.uint16, mode="r", offset=1024, shape=(int(header[2]),)))
    if not shards:
        raise SystemExit(f"train.py: {data_dir} holds neither train.bin nor train_*.bin shards")
    return shards, TOKEN_VOCAB


def get_batch(data, gen):
    """Random (x, y) windows from the training data; y is x shifted by one token."""
    if isinstance(data, torch.Tensor):  # bytes in memory
        ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=gen)
        chunk = data[ix[:, None] + torch.arange(block_size + 1)].long()
    else:  # token shards: one random window over all shards per row
        import numpy as np

        sizes = np.array([len(s) - block_size - 1 for s in data])
        ends = np.cumsum(sizes)
        ix = torch.randint(int(ends[-1]), (batch_size,), generator=gen).numpy()
        which = np.searchsorted(ends, ix, side="right")
        offsets = ix - (ends[which] - sizes[which])
        rows = [data[w][o:o + block_size + 1] for w, o in zip(which, offsets)]
        chunk = torch.from_numpy(np.stack(rows).astype(np.int64))
    if DEVICE != "cpu":
        chunk = chunk.pin_memory().to(DEVICE, non_blocking=True)
    return chunk[:, :-1], chunk[:, 1:]


def init_distributed():
    """(rank, world size, device). With NPROC > 1 outside torchrun, replace this process by
    torchrun running this file NPROC times; under torchrun, join the process group."""
    if NPROC > 1 and "RANK" not in os.environ:
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={NPROC}", os.path.abspath(sys.argv[0])])
    if "RANK" not in os.environ:
        return 0, 1, DEVICE
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    device = DEVICE
    if DEVICE == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if DEVICE == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def shared_clock(elapsed, world, device):
    """The first rank's elapsed time, on every rank: all ranks use the same learning rate and
    stop at the same step."""
    if world == 1:
        return elapsed
    import torch.distributed as dist

    clock = torch.tensor([elapsed], dtype=torch.float64, device=device)
    dist.broadcast(clock, src=0)
    return clock.item()


def get_lr(step, progress):
    """Linear warmup over steps, then cosine decay to min_lr_ratio * learning_rate over progress."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return learning_rate * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


def main():
    if not DATA_DIR or not os.path.isdir(DATA_DIR):
        raise SystemExit(f"train.py: GROUNDWORK_DATA_DIR must name the prepared training data folder (got {DATA_DIR!r})")
    rank, world, device = init_distributed()
    torch.set_num_threads(NUM_THREADS)
    torch.manual_seed(SEED)  # model init
    gen = torch.Generator().manual_seed(SEED + rank)  # batch sampling, different on every rank
    data, vocab_size = load_data(DATA_DIR)
    os.makedirs(OUT_DIR, exist_ok=True)
    if device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device != "cpu" else contextlib.nullcontext()

    model_args = dict(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                      n_embd=n_embd, dropout=dropout, bias=bias, tie_weights=tie_weights)
    model = build_model(model_args).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if rank == 0:
        print(f"model: {n_params / 1e6:.2f}M parameters, {model_args}, {world} x {device}", flush=True)
    # Decay only matrices (embeddings included); biases and norm gains stay free.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if device == "cpu":
        optimizer = AdamW(groups, lr=learning_rate, betas=(beta1, beta2))
    else:  # one fused kernel for all parameters
        optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=(beta1, beta2), fused=True)
    train_model = model  # what the loop calls: possibly wrapped for several ranks and compiled
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device != "cpu" else None)
    if COMPILE != "0":  # "1": the default backend; another value names one (e.g. "aot_eager", to debug)
        train_model = torch.compile(train_model, **({} if COMPILE == "1" else {"backend": COMPILE}))
        # Compile outside the timed window: one forward and backward on a batch drawn like the
        # training ones (same shapes and strides, so the loop does not compile again), from a
        # generator of its own (the training batches stay the same).
        x, y = get_batch(data, torch.Generator().manual_seed(SEED + 10_000 + rank))
        with autocast:
            _, loss = train_model(x, y)
        loss.backward()
        optimizer.zero_grad()
        if device != "cpu":
            torch.cuda.synchronize()

    log = open(os.path.join(OUT_DIR, "train_log.jsonl"), "w") if rank == 0 else None
    step, tokens_seen, loss_val, t0 = 0, 0, float("nan"), time.time()  # the clock starts once the model exists
    t_last, tokens_last = t0, 0
    if BUDGET == "compute" and not MAX_TRAIN_TOKENS:
        raise SystemExit("train.py: a compute budget needs GROUNDWORK_COMPUTE_TOKENS (training tokens)")
    while True:
        if BUDGET == "compute":  # tokens alone pace training: the same steps on any machine, at any load
            if tokens_seen >= MAX_TRAIN_TOKENS:
                break
            progress = tokens_seen / MAX_TRAIN_TOKENS
        else:
            elapsed = shared_clock(time.time() - t0, world, device)
            if elapsed > TIME_BUDGET_S or (MAX_TRAIN_TOKENS and tokens_seen >= MAX_TRAIN_TOKENS):
                break
            # Progress by time or tokens, whichever is further along: the step count is unknown.
            progress = max(elapsed / TIME_BUDGET_S, tokens_seen / MAX_TRAIN_TOKENS if MAX_TRAIN_TOKENS else 0.0)
        lr = get_lr(step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(data, gen)
        with autocast:
            _, loss = train_model(x, y)
        optimizer.zero_grad()
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        step += 1
        tokens_seen += x.numel() * world
        if rank == 0 and (step % log_every == 0 or step == 1):
            loss_val = loss.item()  # waits for the GPU: only when logging
            now = time.time()
            tok_s = (tokens_seen - tokens_last) / max(now - t_last, 1e-9)
            t_last, tokens_last = now, tokens_seen
            print(f"step {step} | loss {loss_val:.4f} | lr {lr:.1e} | tok/s {tok_s:.0f} | elapsed {now - t0:.1f}s",
                  flush=True)
            log.write(json.dumps({"step": step, "tokens": tokens_seen, "loss": loss_val, "lr": lr,
                                  "elapsed_s": round(now - t0, 3)}) + "\n")
            log.flush()
    if device != "cpu":
        torch.cuda.synchronize()
    train_seconds = time.time() - t0
    if world > 1:
        torch.distributed.destroy_process_group()
    if rank > 0:
        return
    log.close()

    ckpt = {"model_args": model_args, "state_dict": model.state_dict(), "steps": step,
            "tokens_seen": tokens_seen, "train_seconds": train_seconds, "world_size": world}
    torch.save(ckpt, os.path.join(OUT_DIR, "ckpt.pt"))
    print(f"done: {step} steps, {tokens_seen} tokens in {train_seconds:.1f}s "
          f"({tokens_seen / max(train_seconds, 1e-9):.0f} tok/s), last logged train loss {loss_val:.4f}", flush=True)


if __name__ == "__main__":
    main()
