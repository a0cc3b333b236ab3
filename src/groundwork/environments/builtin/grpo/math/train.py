"""Post-train a language model with GRPO to solve math problems, under a fixed wall-clock budget.

This is the file research ideas edit. The score is the accuracy of the saved policy on a
fixed held-out set of problems, measured afterwards by a separate, locked evaluation
(greedy decoding of the r1_zero prompt, its own answer grader). Keep the output: the
policy saved with save_pretrained to GROUNDWORK_OUT_DIR/policy, with the starting model's
config (the architecture is fixed).

One GRPO step: pick `prompts_per_step` training problems, sample `group_size` completions
of the r1_zero prompt for each from the current policy (Hugging Face generate, or vLLM when
it is installed and the profile runs on CUDA), reward each completion (reward() below),
turn the rewards into advantages relative to the other completions of the same problem,
and take `minibatches` optimizer steps on the clipped policy-gradient loss (PPO-style ratio
clip against the sampling policy), each accumulated over micro-batches of
`micro_batch_size` sequences.

The data folder holds train.jsonl ({"problem", "answer"}), task.json (which task: MATH or
the synthetic arithmetic one) and the starting model (a Hugging Face model folder).
"""
import contextlib
import json
import math
import os
import random
import re
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

# ----------------------------------------------------------------------------------------
# Knobs: one literal per line, `name = value  # comment`.
# Sampling
group_size = 8  # completions sampled per problem (the "group" of GRPO)
prompts_per_step = 8  # distinct training problems per step
temperature = 1.0  # sampling temperature for rollouts (log-probabilities use the same temperature)
max_new_tokens = 48  # completion length cap in tokens
# Objective
clip_eps = 0.2  # PPO ratio clip: ratios outside [1 - clip_eps, 1 + clip_eps] stop the gradient
scale_advantages = True  # divide advantages by the group's reward std (GRPO); False = only subtract the mean
loss_agg = "seq_mean"  # "seq_mean" (GRPO), "token_mean" (DAPO) or "fixed" (Dr. GRPO); see aggregate()
format_reward = 0.0  # reward for a well-formed completion whose answer is wrong (correct ones get 1.0)
# Optimization
learning_rate = 1e-4  # AdamW learning rate
minibatches = 2  # optimizer steps per batch of rollouts, each on an equal share of the problems
micro_batch_size = 16  # sequences per forward/backward pass (gradient accumulation up to a minibatch)
warmup_steps = 2  # linear learning-rate warmup in GRPO steps
weight_decay = 0.0  # decoupled weight decay
beta1 = 0.9  # AdamW first-moment decay
beta2 = 0.99  # AdamW second-moment decay
grad_clip = 1.0  # max global gradient norm (0 = off)
# Evaluation and logging
eval_every = 5  # GRPO steps between validation evaluations (also at the start and the end)
val_problems = 64  # training-side validation problems (greedy), never used for rollouts
generation_batch_size = 64  # prompts per Hugging Face generate call (its key/value cache must fit)
use_vllm = True  # roll out and validate with vLLM when it is installed and the device is CUDA
vllm_gpu_memory = 0.3  # share of GPU memory vLLM may take; the rest is for training

# ----------------------------------------------------------------------------------------
# Set by the harness through environment variables, not by ideas.
DATA_DIR = os.environ.get("GROUNDWORK_DATA_DIR", "")  # train.jsonl, task.json, the starting model
TIME_BUDGET_S = float(os.environ.get("GROUNDWORK_TIME_BUDGET_S", "60"))  # wall-clock training budget
MAX_STEPS = int(os.environ.get("GROUNDWORK_MAX_STEPS", "0"))  # GRPO step cap, 0 = none
SEED = int(os.environ.get("GROUNDWORK_SEED", "0"))
NUM_THREADS = int(os.environ.get("GROUNDWORK_NUM_THREADS", "1"))
OUT_DIR = os.environ.get("GROUNDWORK_OUT_DIR", "out")
SCALE = os.environ.get("GROUNDWORK_SCALE", "smoke")  # which preset below: smoke, small or full
DEVICE = os.environ.get("GROUNDWORK_DEVICE", "cpu")  # "cuda" on GPU profiles (bf16 autocast)
TASK = "synthetic"  # what prepare.py built (task.json): "math" (Qwen2.5-Math on MATH) or "synthetic"
if os.path.isfile(os.path.join(DATA_DIR, "task.json")):
    with open(os.path.join(DATA_DIR, "task.json")) as _f:
        TASK = json.load(_f)["task"]

# Scale presets: the profile picks one; "smoke" trains with the knobs above.
if SCALE == "small" and TASK == "math":  # one GPU, about 5 minutes: Qwen2.5-Math-1.5B on MATH
    prompts_per_step, group_size, max_new_tokens, learning_rate = 32, 8, 512, 1e-6
    minibatches, micro_batch_size, warmup_steps, eval_every, val_problems = 2, 4, 0, 2, 64
elif SCALE == "small":  # one GPU, about 5 minutes: the larger synthetic task
    prompts_per_step, group_size, max_new_tokens, learning_rate = 64, 8, 64, 3e-5
    minibatches, micro_batch_size, eval_every, val_problems = 2, 128, 10, 256
elif SCALE == "full":  # the paper's setting: 128 problems x 8 rollouts per step, 1 hour
    prompts_per_step, group_size, max_new_tokens, learning_rate = 128, 8, 1024, 1e-6
    minibatches, micro_batch_size, warmup_steps, eval_every, val_problems = 4, 4, 0, 2, 256

R1_ZERO_PROMPT = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer "
    "here </answer>.\nUser: {question}\nAssistant: <think>"
)
STOP = "</answer>"


# ---------------------------------------------------------------------------- reward
def normalize(answer: str) -> str:
    """A light canonical form: no \\boxed, $, spaces, \\left/\\right, \\text{}, trailing '.0'."""
    s = answer.strip()
    boxed = re.search(r"\\boxed\{(.*)\}", s)
    s = boxed.group(1) if boxed else s
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("dfrac", "frac"), ("tfrac", "frac"), ("$", "")):
        s = s.replace(old, new)
    s = re.sub(r"\s+", "", s).rstrip(".")
    return re.sub(r"^(-?\d+)\.0+$", r"\1", s)


def reward(completion: str, answer: str) -> float:
    """Training reward of one completion: 1.0 for "... </think> <answer> A </answer>" with A
    equal to the reference answer (light normalisation, or equal as numbers), format_reward
    for the format with a wrong answer, else 0.0."""
    match = re.search(r"</think>\s*<answer>(.*?)</answer>", completion, flags=re.DOTALL)
    if match is None:
        return 0.0
    given, gold = normalize(match.group(1)), normalize(answer)
    if given == gold:
        return 1.0
    try:
        return 1.0 if abs(float(given) - float(gold)) <= 1e-6 * max(1.0, abs(float(gold))) else format_reward
    except ValueError:
        return format_reward


# ---------------------------------------------------------------------------- rollouts
class HFSampler:
    """Completions with Hugging Face generate from the training model itself."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    @torch.no_grad()
    def __call__(self, prompts: list, sample: bool, seed: int) -> list:
        """Token ids of one completion per prompt, ending at "</answer>" or the end token."""
        self.model.eval()
        torch.manual_seed(seed)
        eos = self.tokenizer.eos_token_id
        completions = []
        for i in range(0, len(prompts), generation_batch_size):
            batch = self.tokenizer(prompts[i:i + generation_batch_size], return_tensors="pt", padding=True).to(DEVICE)
            with autocast():
                out = self.model.generate(**batch, do_sample=sample, temperature=temperature if sample else None,
                                          top_p=1.0 if sample else None, top_k=0 if sample else None,
                                          max_new_tokens=max_new_tokens, stop_strings=[STOP],
                                          tokenizer=self.tokenizer, eos_token_id=eos,
                                          pad_token_id=self.tokenizer.pad_token_id)
            for row in out[:, batch["input_ids"].size(1):].tolist():
                completions.append(row[:row.index(eos) + 1] if eos in row else row)
        return completions


class VLLMSampler:
    """Completions with vLLM on the same GPU; the policy's weights are copied in before each use."""

    def __init__(self, model, tokenizer):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # keep the engine in this process
        from vllm import LLM

        self.model, self.tokenizer = model, tokenizer
        self.llm = LLM(model=DATA_DIR, dtype="bfloat16", gpu_memory_utilization=vllm_gpu_memory, seed=SEED,
                       enable_prefix_caching=True)

    def sync(self):
        weights = list(self.model.state_dict().items())
        if hasattr(self.llm, "apply_model"):  # recent vLLM: run a function on the loaded model
            self.llm.apply_model(lambda model: model.load_weights(weights))
            return
        engine = self.llm.llm_engine
        for path in ("model_executor.driver_worker.model_runner.model",  # older engines
                     "model_executor.driver_worker.worker.model_runner.model",
                     "engine_core.engine_core.model_executor.driver_worker.worker.model_runner.model"):
            target = engine
            for name in path.split("."):
                target = getattr(target, name, None)
            if target is not None:
                target.load_weights(weights)
                return
        raise RuntimeError("this vLLM version does not expose its model for weight updates; set use_vllm = False")

    def __call__(self, prompts: list, sample: bool, seed: int) -> list:
        from vllm import SamplingParams

        self.sync()
        params = SamplingParams(temperature=temperature if sample else 0.0, max_tokens=max_new_tokens, stop=[STOP],
                                include_stop_str_in_output=True, seed=seed)
        return [list(o.outputs[0].token_ids) for o in self.llm.generate(prompts, params, use_tqdm=False)]


def autocast():
    return torch.autocast("cuda", dtype=torch.bfloat16) if DEVICE == "cuda" else contextlib.nullcontext()


# ---------------------------------------------------------------------------- the loss
def token_logprobs(model, seqs: list, n_prompts: list, pad_id: int):
    """Log-probabilities (at the sampling temperature) of each sequence's completion tokens,
    as a right-padded (B, L) tensor with its (B, L) mask; L = the longest completion."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        attention[i, :len(s)] = 1
    ids, attention = ids.to(DEVICE), attention.to(DEVICE)
    with autocast():
        logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1].float()
    logp = torch.log_softmax(logits / max(temperature, 1e-6), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    # Keep the completion tokens only, shifted left so every row starts at its first one.
    lengths = [len(s) - n for s, n in zip(seqs, n_prompts)]
    out = torch.zeros((len(seqs), max(lengths)), device=DEVICE)
    mask = torch.zeros_like(out)
    for i, (n, k) in enumerate(zip(n_prompts, lengths)):
        out[i, :k] = logp[i, n - 1:n - 1 + k]
        mask[i, :k] = 1.0
    return out, mask


def aggregate(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A (B, L) per-token loss reduced to a sum over the B sequences of a micro-batch (the
    caller divides by the minibatch's size): "seq_mean" averages each completion's tokens
    (GRPO; short completions weigh more per token); "token_mean" weighs every token alike
    (DAPO; here relative to the micro-batch's mean length); "fixed" divides each
    completion's token sum by max_new_tokens (Dr. GRPO: no length bias)."""
    if loss_agg == "seq_mean":
        return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).sum()
    if loss_agg == "token_mean":
        return (per_token * mask).sum() / mask.sum(1).clamp(min=1).mean()
    if loss_agg == "fixed":
        return (per_token * mask).sum() / max_new_tokens
    raise ValueError(f"unknown loss_agg {loss_agg!r}")


def get_lr(step: int) -> float:
    return learning_rate * min(1.0, (step + 1) / warmup_steps) if warmup_steps else learning_rate


def main():
    if not DATA_DIR or not os.path.isfile(os.path.join(DATA_DIR, "config.json")):
        raise SystemExit(f"train.py: GROUNDWORK_DATA_DIR must name a prepared folder with the model (got {DATA_DIR!r})")
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train.py: the profile asks for CUDA (GROUNDWORK_DEVICE=cuda) but no GPU is visible")
    torch.set_num_threads(NUM_THREADS)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    with open(os.path.join(DATA_DIR, "train.jsonl")) as f:
        problems = [json.loads(line) for line in f]
    # A fixed training-side validation slice (every k-th problem), never used for rollouts.
    stride = max(1, len(problems) // val_problems)
    val = problems[::stride][:val_problems]
    train = [p for i, p in enumerate(problems) if i % stride != 0 or i // stride >= val_problems]

    tokenizer = AutoTokenizer.from_pretrained(DATA_DIR)
    tokenizer.padding_side = "left"
    policy = AutoModelForCausalLM.from_pretrained(DATA_DIR, torch_dtype=torch.float32).to(DEVICE)
    if DEVICE == "cuda" and SCALE != "smoke":
        policy.gradient_checkpointing_enable()
        policy.config.use_cache = True  # generate still uses its cache
    optimizer = torch.optim.AdamW(policy.parameters(), lr=learning_rate, betas=(beta1, beta2),
                                  weight_decay=weight_decay, fused=DEVICE == "cuda")
    vllm_ok = use_vllm and DEVICE == "cuda" and _installed("vllm")
    sampler = VLLMSampler(policy, tokenizer) if vllm_ok else HFSampler(policy, tokenizer)
    os.makedirs(OUT_DIR, exist_ok=True)
    log = open(os.path.join(OUT_DIR, "train_log.jsonl"), "w")
    prompt_ids = {}  # problem -> token ids of its prompt

    def encode_prompt(problem):
        if problem not in prompt_ids:
            prompt_ids[problem] = tokenizer(R1_ZERO_PROMPT.format(question=problem))["input_ids"]
        return prompt_ids[problem]

    def validate():
        texts = tokenizer.batch_decode(sampler([R1_ZERO_PROMPT.format(question=p["problem"]) for p in val],
                                               sample=False, seed=SEED), skip_special_tokens=True)
        return sum(reward(t, p["answer"]) == 1.0 for t, p in zip(texts, val)) / max(1, len(val))

    recent = []

    def write_record(step, with_eval):
        record = {"step": step}
        if recent:
            record.update({k: round(sum(s[k] for s in recent) / len(recent), 5) for k in recent[0]})
            recent.clear()
        if with_eval:
            record["accuracy"] = validate()
        record["elapsed_s"] = round(time.time() - t0, 3)
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()), flush=True)

    t0 = time.time()  # the clock starts once the model is loaded
    step = 0
    write_record(0, with_eval=True)
    while time.time() - t0 < TIME_BUDGET_S and not (MAX_STEPS and step >= MAX_STEPS):
        lr = get_lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # 1. Rollouts: group_size completions for each of prompts_per_step problems.
        batch = [p for p in rng.sample(train, prompts_per_step) for _ in range(group_size)]
        prompts = [R1_ZERO_PROMPT.format(question=p["problem"]) for p in batch]
        t_roll = time.time()
        completions = sampler(prompts, sample=True, seed=SEED * 100003 + step)
        rollout_s = time.time() - t_roll
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)

        # 2. Rewards and group-relative advantages.
        rewards = torch.tensor([reward(t, p["answer"]) for t, p in zip(texts, batch)])
        grouped = rewards.view(prompts_per_step, group_size)
        adv = grouped - grouped.mean(dim=1, keepdim=True)
        if scale_advantages:
            adv = adv / (grouped.std(dim=1, keepdim=True) + 1e-4)
        adv = adv.reshape(-1).tolist()
        seqs = [encode_prompt(p["problem"]) + c for p, c in zip(batch, completions)]
        n_prompts = [len(encode_prompt(p["problem"])) for p in batch]

        # 3. Log-probabilities of the sampling policy, then clipped policy-gradient steps in
        # minibatches of whole groups, each accumulated over micro-batches.
        order = list(range(len(seqs)))
        micro = [order[i:i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]
        with torch.no_grad():
            policy.eval()
            old_logp = {}
            for idx in micro:
                logp, _ = token_logprobs(policy, [seqs[i] for i in idx], [n_prompts[i] for i in idx],
                                         tokenizer.pad_token_id)
                for j, i in enumerate(idx):
                    old_logp[i] = logp[j, :len(completions[i])]
        policy.train()
        per_minibatch = max(1, prompts_per_step // minibatches) * group_size  # whole groups
        clipped = total = 0.0
        for m in range(0, len(order), per_minibatch):
            part = order[m:m + per_minibatch]
            optimizer.zero_grad(set_to_none=True)
            for start in range(0, len(part), micro_batch_size):
                idx = part[start:start + micro_batch_size]
                logp, mask = token_logprobs(policy, [seqs[i] for i in idx], [n_prompts[i] for i in idx],
                                            tokenizer.pad_token_id)
                old = torch.zeros_like(logp)
                for j, i in enumerate(idx):
                    old[j, :len(old_logp[i])] = old_logp[i]
                a = torch.tensor([adv[i] for i in idx], device=DEVICE).unsqueeze(1)
                ratio = torch.exp(logp - old)
                per_token = -torch.min(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
                loss = aggregate(per_token, mask) / len(part)
                loss.backward()
                clipped += (((ratio - 1).abs() > clip_eps).float() * mask).sum().item()
                total += mask.sum().item()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
            optimizer.step()
        step += 1
        n_tokens = sum(len(c) for c in completions)
        recent.append({"reward_mean": rewards.mean().item(), "lr": lr, "clip_fraction": clipped / max(1.0, total),
                       "completion_tokens": n_tokens / len(completions), "rollouts": len(completions),
                       "sample_tokens": n_tokens, "rollout_s": rollout_s})
        write_record(step, with_eval=step % eval_every == 0)
    if step % eval_every != 0:
        write_record(step, with_eval=True)
    train_seconds = time.time() - t0
    log.close()
    policy_dir = os.path.join(OUT_DIR, "policy")
    policy.save_pretrained(policy_dir, safe_serialization=True)
    with open(os.path.join(policy_dir, "train_state.json"), "w") as f:
        json.dump({"steps": step, "train_seconds": round(train_seconds, 3)}, f)
    print(f"done: {step} GRPO steps in {train_seconds:.1f}s", flush=True)


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
