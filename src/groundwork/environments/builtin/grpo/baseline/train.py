"""Post-train a small policy with GRPO on two-digit addition under a fixed budget of GRPO
steps (the CPU profiles' compute budget: the same on any machine) or of wall-clock time.

This is the file research ideas edit. The score is the accuracy of the saved policy on a
fixed held-out set of problems, measured afterwards by a separate, locked evaluation
(greedy decoding through model.py, its own strict grader). Keep the output: policy.pt in
GROUNDWORK_OUT_DIR holding {"config", "state_dict"} for model.py's network with the
starting checkpoint's config.

One GRPO step: pick `prompts_per_step` training problems, sample `group_size` completions
for each from the current policy, reward each completion (reward() below), turn rewards
into advantages relative to the other completions of the same prompt, and take clipped
policy-gradient steps (PPO-style ratio clip) on that batch (`updates_per_batch` passes of
`minibatches` optimizer steps each), optionally with a KL penalty towards the starting
(reference) policy.

Task format (model.py): prompt "07+38=", completion "<think>7+8=15</think><answer>45</answer>"
followed by EOS; the four tags are single tokens.
"""
import json
import math
import os
import random
import re
import time

import torch

import model as M

# ----------------------------------------------------------------------------------------
# Knobs: one literal per line, `name = value  # comment`.
# Sampling
group_size = 8  # completions sampled per prompt (the "group" of GRPO)
prompts_per_step = 8  # distinct training prompts per step
temperature = 1.0  # sampling temperature for rollouts (log-probs use the same temperature)
max_new_tokens = 16  # completion length cap in tokens (a correct completion takes 11 to 14, EOS included)
# Objective
clip_eps = 0.2  # PPO ratio clip: ratios outside [1 - clip_eps, 1 + clip_eps] stop the gradient
kl_coef = 0.0  # weight of the KL penalty to the reference policy (k3 estimator); 0 = off
entropy_coef = 0.0  # bonus on the policy's per-token entropy; 0 = off
scale_advantages = True  # divide advantages by the group's reward std (GRPO); False = only subtract the mean
loss_agg = "seq_mean"  # how per-token losses are averaged: "seq_mean" (GRPO), "token_mean" (DAPO), "fixed" (Dr. GRPO)
format_reward = 0.0  # reward for a well-formed completion whose answer is wrong (correct ones get 1.0)
length_penalty = 0.0  # reward subtracted per completion token beyond 14 (EOS included)
# Optimization
learning_rate = 1e-4  # Adam learning rate
updates_per_batch = 1  # passes over each batch of samples
minibatches = 2  # optimizer steps per pass, each on an equal share of the prompts (the clip acts from the second on)
warmup_steps = 5  # linear learning-rate warmup in GRPO steps
min_lr_ratio = 1.0  # cosine decay floor as a fraction of learning_rate (1.0 = constant after warmup)
beta1 = 0.9  # Adam first-moment decay
beta2 = 0.99  # Adam second-moment decay
weight_decay = 0.0  # decoupled weight decay on 2-D weights
grad_clip = 1.0  # max global gradient norm (0 = off)
# Logging
log_every = 5  # GRPO steps between train_log.jsonl records (mean reward over those steps)
eval_every = 20  # GRPO steps between validation evaluations (also at the start and the end)
val_problems = 200  # training-side validation problems (greedy decoding), held out of the rollouts

# ----------------------------------------------------------------------------------------
# Set by the harness through environment variables, not by ideas.
DATA_DIR = os.environ.get("GROUNDWORK_DATA_DIR", "")  # train.jsonl and sft.pt
BUDGET = os.environ.get("GROUNDWORK_BUDGET", "time")  # "compute": run MAX_STEPS steps, whatever the clock says
TIME_BUDGET_S = float(os.environ.get("GROUNDWORK_TIME_BUDGET_S", "30"))  # wall-clock budget (compute: a kill limit)
MAX_STEPS = int(os.environ.get("GROUNDWORK_COMPUTE_STEPS", "0"))  # GRPO step budget (time: a cap), 0 = none
SEED = int(os.environ.get("GROUNDWORK_SEED", "0"))
NUM_THREADS = int(os.environ.get("GROUNDWORK_NUM_THREADS", "1"))
OUT_DIR = os.environ.get("GROUNDWORK_OUT_DIR", "out")

FORMAT = re.compile(r"<think>[^<>]*</think><answer>(0|[1-9][0-9]*)</answer>")


def parse_answer(completion: torch.Tensor):
    """The answer of a completion (token ids, EOS then PAD) in the exact format, else None."""
    ids = completion.tolist()
    if M.EOS not in ids:
        return None
    match = FORMAT.fullmatch(M.decode(ids))
    return int(match.group(1)) if match else None


def target(prompt: str) -> int:
    return int(prompt[0:2]) + int(prompt[3:5])


def reward(prompt: str, completion: torch.Tensor) -> float:
    """Training reward of one completion: 1.0 for the exact format with the correct sum,
    format_reward for the exact format with a wrong sum, else 0.0; minus length_penalty per
    token beyond 14."""
    answer = parse_answer(completion)
    r = 0.0 if answer is None else (1.0 if answer == target(prompt) else format_reward)
    ids = completion.tolist()
    n_tokens = ids.index(M.EOS) + 1 if M.EOS in ids else len(ids)
    return r - length_penalty * max(0, n_tokens - 14)


def completion_mask(completions: torch.Tensor) -> torch.Tensor:
    """1.0 on each completion's tokens up to and including its EOS, 0.0 on the PAD after it."""
    is_eos = (completions == M.EOS).long()
    after_eos = (is_eos.cumsum(1) - is_eos) > 0
    return (~after_eos).float()


def token_logprobs(model, seqs: torch.Tensor, n_prompt: int, with_entropy: bool = False):
    """Log-probabilities (at the sampling temperature) of the completion tokens seqs[:, n_prompt:]."""
    logits = model(seqs[:, :-1])[:, n_prompt - 1:]
    logits = M.mask_logits(logits) / max(temperature, 1e-6)
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = seqs[:, n_prompt:].masked_fill(seqs[:, n_prompt:] == M.PAD, M.EOS)  # PAD has log-prob -inf
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (PAD positions are masked out later)
    if not with_entropy:
        return logp, None
    probs = logp_all.exp()
    entropy = -(probs * logp_all.nan_to_num(neginf=0.0)).sum(-1)
    return logp, entropy


def aggregate(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reduce a (B, L) per-token loss to a scalar as loss_agg says: "seq_mean" averages each
    completion's tokens, then the completions (GRPO; short completions weigh more per token);
    "token_mean" averages all tokens of the batch (DAPO); "fixed" sums the tokens and divides
    by a constant, batch size * max_new_tokens (Dr. GRPO: no length bias)."""
    if loss_agg == "seq_mean":
        return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    if loss_agg == "token_mean":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    if loss_agg == "fixed":
        return (per_token * mask).sum() / (mask.size(0) * max_new_tokens)
    raise ValueError(f"unknown loss_agg {loss_agg!r}")


@torch.no_grad()
def evaluate(model, problems: list) -> float:
    """Greedy accuracy: exact format and correct sum, as the locked evaluation counts it."""
    model.eval()
    out = M.generate(model, M.encode_prompts([p["prompt"] for p in problems]), 20, temperature=0.0)
    return sum(parse_answer(row) == target(p["prompt"]) for p, row in zip(problems, out)) / max(1, len(problems))


class AdamW:
    """Adam with decoupled weight decay, step for step the math of torch.optim.AdamW: written
    out to be easy to read and edit, and because torch.optim costs ~2.5 s of imports on CPU."""

    def __init__(self, param_groups, lr, betas, eps=1e-8):
        self.param_groups = [dict(group, lr=lr) for group in param_groups]
        self.beta1, self.beta2, self.eps, self.t = betas[0], betas[1], eps, 0
        self.state = {p: (torch.zeros_like(p), torch.zeros_like(p)) for g in self.param_groups for p in g["params"]}

    def zero_grad(self, set_to_none=True):
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


def get_lr(step: int, progress: float) -> float:
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return learning_rate * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


def main():
    sft_path = os.path.join(DATA_DIR, "sft.pt")
    if not DATA_DIR or not os.path.isfile(sft_path):
        raise SystemExit(f"train.py: GROUNDWORK_DATA_DIR must name a prepared folder with sft.pt (got {DATA_DIR!r})")
    torch.set_num_threads(NUM_THREADS)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)  # prompt sampling
    gen = torch.Generator().manual_seed(SEED)  # completion sampling
    with open(os.path.join(DATA_DIR, "train.jsonl")) as f:
        problems = [json.loads(line) for line in f]
    # A fixed training-side validation subset (every k-th problem), never used for rollouts.
    stride = max(1, len(problems) // val_problems)
    val = problems[::stride][:val_problems]
    val_prompts = {p["prompt"] for p in val}
    train = [p for p in problems if p["prompt"] not in val_prompts]

    ckpt = torch.load(sft_path, map_location="cpu", weights_only=True)
    config = ckpt["config"]
    policy = M.build_model(config)
    policy.load_state_dict(ckpt["state_dict"])
    reference = None
    if kl_coef > 0:
        reference = M.build_model(config)
        reference.load_state_dict(ckpt["state_dict"])
        reference.eval().requires_grad_(False)
    decay = [p for p in policy.parameters() if p.dim() >= 2]
    no_decay = [p for p in policy.parameters() if p.dim() < 2]
    optimizer = AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                      lr=learning_rate, betas=(beta1, beta2))
    os.makedirs(OUT_DIR, exist_ok=True)
    log = open(os.path.join(OUT_DIR, "train_log.jsonl"), "w")

    recent = []  # per-step statistics since the last record

    def write_record(step, with_eval):
        record = {"step": step}
        if recent:
            record.update({k: round(sum(s[k] for s in recent) / len(recent), 5) for k in recent[0]})
            recent.clear()
        if with_eval:
            record["accuracy"] = evaluate(policy, val)
        record["elapsed_s"] = round(time.time() - t0, 3)
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()), flush=True)

    t0 = time.time()  # the clock starts once the policy is loaded
    step = 0
    write_record(0, with_eval=True)
    if BUDGET == "compute" and not MAX_STEPS:
        raise SystemExit("train.py: a compute budget needs GROUNDWORK_COMPUTE_STEPS (GRPO steps)")
    while True:
        if BUDGET == "compute":  # steps alone pace training: the same run on any machine, at any load
            if step >= MAX_STEPS:
                break
            progress = step / MAX_STEPS
        else:
            elapsed = time.time() - t0
            if elapsed > TIME_BUDGET_S or (MAX_STEPS and step >= MAX_STEPS):
                break
            progress = max(elapsed / TIME_BUDGET_S, step / MAX_STEPS if MAX_STEPS else 0.0)
        lr = get_lr(step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr

        # 1. Rollouts: group_size samples for each of prompts_per_step prompts.
        batch = rng.sample(train, prompts_per_step)
        prompt_ids = M.encode_prompts([p["prompt"] for p in batch]).repeat_interleave(group_size, dim=0)
        policy.eval()
        completions = M.generate(policy, prompt_ids, max_new_tokens, temperature, gen)
        n_prompt = prompt_ids.size(1)
        seqs = torch.cat([prompt_ids, completions], dim=1)
        mask = completion_mask(completions)

        # 2. Rewards and group-relative advantages.
        rewards = torch.tensor([reward(p["prompt"], c) for p, c in
                                zip([p for p in batch for _ in range(group_size)], completions)])
        grouped = rewards.view(prompts_per_step, group_size)
        adv = grouped - grouped.mean(dim=1, keepdim=True)
        if scale_advantages:
            adv = adv / (grouped.std(dim=1, keepdim=True) + 1e-4)
        adv = adv.reshape(-1, 1)

        with torch.no_grad():
            old_logp, _ = token_logprobs(policy, seqs, n_prompt)
            ref_logp = token_logprobs(reference, seqs, n_prompt)[0] if reference is not None else None

        # 3. Clipped policy-gradient updates on this batch, in minibatches of whole groups.
        policy.train()
        chunks = torch.arange(len(seqs)).view(prompts_per_step, group_size).chunk(minibatches)
        for _ in range(updates_per_batch):
            for idx in (c.reshape(-1) for c in chunks):
                logp, entropy = token_logprobs(policy, seqs[idx], n_prompt, with_entropy=entropy_coef > 0)
                ratio = torch.exp(logp - old_logp[idx])
                a = adv[idx]
                per_token = -torch.min(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
                if ref_logp is not None:
                    log_r = ref_logp[idx] - logp
                    per_token = per_token + kl_coef * (torch.exp(log_r) - log_r - 1)  # k3 estimator of KL
                if entropy is not None:
                    per_token = per_token - entropy_coef * entropy
                loss = aggregate(per_token, mask[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
                optimizer.step()
        step += 1
        recent.append({"reward_mean": rewards.mean().item(), "loss": loss.item(), "lr": lr,
                       "completion_tokens": mask.sum(1).mean().item()})
        if step % eval_every == 0 or step % log_every == 0:
            write_record(step, with_eval=step % eval_every == 0)
    if step % eval_every != 0:
        write_record(step, with_eval=True)
    train_seconds = time.time() - t0
    log.close()
    torch.save({"config": config, "state_dict": policy.state_dict(), "steps": step,
                "train_seconds": round(train_seconds, 3)}, os.path.join(OUT_DIR, "policy.pt"))
    print(f"done: {step} GRPO steps in {train_seconds:.1f}s", flush=True)


if __name__ == "__main__":
    main()
