"""Freeze the grpo environment's data and starting policy.

Locked file (hidden from ideators). Usage:

    python prepare.py --out DIR           # build DIR (problems, SFT policy, manifest)
    python prepare.py --out DIR --verify  # only check DIR's files against its manifest

Problems: every addition a+b of two numbers 0..99, written zero-padded as "07+38=" (10,000
problems). A problem is held out when int(sha256(prompt).hexdigest()[:8], 16) % 10 == 0
(about 1,000 problems), so the split depends on nothing but the problem's text; held-out
problems are listed in the order of that digest, training problems in prompt order.

Starting policy: model.py's network trained once by supervised fine-tuning (SFT) on
*noisy* demonstrations of the training problems, from a fixed seed on one thread. The
demonstrator has bad habits: more often than not it forgets the carry from the ones and
drops the hundreds digit of the sum, it sometimes slips a digit, and it sometimes gets
the output format wrong. The policy imitates them, so it starts far from
perfect (about a third of the held-out problems right) but close enough that sampling
finds the right answer often, which is what GRPO needs.

Files in DIR: train.jsonl and heldout.jsonl (one {"prompt", "answer"} per line), sft.pt
(the starting policy: {"config", "state_dict", ...}), manifest.json (sha256 of each file,
the split rule, the SFT settings and the starting policy's accuracy). The build happens in
a temporary folder next to DIR that is renamed into place at the end; running it again on
a prepared DIR whose hashes match is a no-op.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # keep the codebase folder free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import torch  # noqa: E402

FILES = ("train.jsonl", "heldout.jsonl", "sft.pt")
HELDOUT_MODULUS = 10
SPLIT_RULE = ("all a+b for a, b in 0..99, prompt f'{a:02d}+{b:02d}='; held out if "
              "int(sha256(prompt).hexdigest()[:8], 16) % 10 == 0; held-out problems ordered by that digest")
FORMAT_VERSION = 1

# The demonstrator's habits (each demonstration draws them independently).
# On a problem with a carry from the ones, the answer leaves the carry out: with probability
# 0.95 when the ones sum to 10, falling linearly to 0.55 when they sum to 18.
P_FORGET_CARRY = (0.95, 0.55)
# On a sum of 100 or more, the answer drops the hundreds digit: with probability 0.95 at 100,
# falling linearly to 0.55 at 198.
P_DROP_HUNDREDS = (0.95, 0.55)
P_SLIP = 0.15  # a wrong digit somewhere (in the work line or the answer)
P_SLOPPY = 0.25  # the output format is off (missing tag, extra text, spaces)
DEMOS_PER_PROBLEM = 4
# Supervised fine-tuning.
SFT_SEED = 1234
SFT_STEPS = 600
SFT_BATCH = 64
SFT_LR = 3e-3
SFT_WARMUP = 30


# ---------------------------------------------------------------------------- problems
def digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def is_heldout(prompt: str) -> bool:
    return int(digest(prompt)[:8], 16) % HELDOUT_MODULUS == 0


def all_problems() -> list[dict]:
    return [{"prompt": f"{a:02d}+{b:02d}=", "answer": a + b} for a in range(100) for b in range(100)]


def split() -> tuple[list[dict], list[dict]]:
    """(train, heldout) problem lists, in their canonical orders."""
    problems = all_problems()
    train = [p for p in problems if not is_heldout(p["prompt"])]
    heldout = sorted((p for p in problems if is_heldout(p["prompt"])), key=lambda p: digest(p["prompt"]))
    return train, heldout


def correct_completion(prompt: str) -> str:
    a, b = int(prompt[0:2]), int(prompt[3:5])
    return f"<think>{a % 10}+{b % 10}={a % 10 + b % 10}</think><answer>{a + b}</answer>"


def demonstration(prompt: str, rng: random.Random) -> str:
    """One noisy demonstration from the demonstrator with bad habits."""
    a, b = int(prompt[0:2]), int(prompt[3:5])
    ones_a, ones_b = a % 10, b % 10
    ones = ones_a + ones_b
    work = f"{ones_a}+{ones_b}={ones}"
    answer = a + b
    if ones >= 10 and rng.random() < P_FORGET_CARRY[0] + (P_FORGET_CARRY[1] - P_FORGET_CARRY[0]) * (ones - 10) / 8:
        answer -= 10  # the carry is forgotten
    if answer >= 100 and rng.random() < P_DROP_HUNDREDS[0] + (P_DROP_HUNDREDS[1] - P_DROP_HUNDREDS[0]) * (a + b - 100) / 98:
        answer -= 100  # the hundreds digit is dropped
    if rng.random() < P_SLIP:
        if rng.random() < 0.5:  # a slip in the work line carries into the answer's last digit
            wrong = max(0, ones + rng.choice([-2, -1, 1, 2]))
            work = f"{ones_a}+{ones_b}={wrong}"
            answer = answer - ones % 10 + wrong % 10
        else:  # a slip in the answer's last digit
            answer = answer - answer % 10 + rng.choice([d for d in range(10) if d != answer % 10])
    text = f"<think>{work}</think><answer>{answer}</answer>"
    if rng.random() < P_SLOPPY:
        kind = rng.randrange(4)
        if kind == 0:
            text = f"<think>{work}</think><answer>{answer}"  # no closing tag
        elif kind == 1:
            text = f"<answer>{answer}</answer>"  # no work shown
        elif kind == 2:
            text = f"<think>{work}</think><answer> {answer} </answer>"  # spaces around the answer
        else:
            text = f"<think>{work}</think>{answer}"  # no answer tags
    return text


# ---------------------------------------------------------------------------- SFT
def sft(train: list[dict], log=print) -> tuple[M.GPT, dict]:
    """Supervised fine-tuning of a fresh network on noisy demonstrations (deterministic)."""
    rng = random.Random(SFT_SEED)
    torch.manual_seed(SFT_SEED)
    rows, masks = [], []
    for p in train:
        prompt_ids = [M.BOS] + M.encode(p["prompt"])
        for _ in range(DEMOS_PER_PROBLEM):
            completion = M.encode(demonstration(p["prompt"], rng)) + [M.EOS]
            seq = prompt_ids + completion
            rows.append(seq + [M.PAD] * (M.CONFIG["block_size"] + 1 - len(seq)))
            # Predict only the completion's tokens (target positions are shifted by one).
            masks.append([0] * (len(prompt_ids) - 1) + [1] * len(completion)
                         + [0] * (M.CONFIG["block_size"] + 1 - len(seq)))
    data = torch.tensor(rows, dtype=torch.long)
    mask = torch.tensor(masks, dtype=torch.float32)
    model = M.build_model()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=SFT_LR, betas=(0.9, 0.95), weight_decay=0.01)
    gen = torch.Generator().manual_seed(SFT_SEED)
    length = int(mask.sum(0).nonzero().max()) + 2  # longest sequence, so batches stay short
    model.train()
    t0 = time.time()
    for step in range(SFT_STEPS):
        lr = SFT_LR * min(1.0, (step + 1) / SFT_WARMUP) * 0.5 * (1 + math.cos(math.pi * step / SFT_STEPS))
        for group in opt.param_groups:
            group["lr"] = lr
        ix = torch.randint(len(data), (SFT_BATCH,), generator=gen)
        x, y, m = data[ix, :length - 1], data[ix, 1:length], mask[ix, :length - 1]
        logits = model(x)
        loss = (torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                                  reduction="none") * m.reshape(-1)).sum() / m.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 100 == 0 or step == 0:
            log(f"  sft step {step + 1}/{SFT_STEPS} | loss {loss.item():.4f} | {time.time() - t0:.1f}s")
    model.eval()
    info = {"steps": SFT_STEPS, "batch": SFT_BATCH, "lr": SFT_LR, "seed": SFT_SEED, "demos": len(rows),
            "p_forget_carry": P_FORGET_CARRY, "p_drop_hundreds": P_DROP_HUNDREDS, "p_slip": P_SLIP, "p_sloppy": P_SLOPPY,
            "seconds": round(time.time() - t0, 1)}
    return model, info


# ---------------------------------------------------------------------------- build / check
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check(out: Path) -> tuple[bool, str]:
    """(ok, message): do the files in `out` exist and match the manifest's hashes?"""
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return False, f"no manifest at {manifest_path}"
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["sha256"]
        if manifest.get("format_version") != FORMAT_VERSION:
            return False, f"manifest format {manifest.get('format_version')} is not {FORMAT_VERSION}"
    except (ValueError, KeyError) as exc:
        return False, f"unreadable manifest {manifest_path}: {exc}"
    for name in FILES:
        path = out / name
        if not path.is_file():
            return False, f"missing file {path}"
        if sha256_file(path) != expected.get(name):
            return False, f"hash mismatch for {path}"
    start = manifest.get("start", {})
    return True, (f"{out}: files match manifest (train {manifest['problems']['train']}, "
                  f"held out {manifest['problems']['heldout']}, starting accuracy {start.get('heldout_greedy')})")


def write_jsonl(path: Path, problems: list[dict]) -> None:
    path.write_text("".join(json.dumps(p) + "\n" for p in problems))


def build(out: Path) -> dict:
    torch.set_num_threads(1)  # the starting policy must not depend on the machine's core count
    train, heldout = split()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_jsonl(tmp / "train.jsonl", train)
        write_jsonl(tmp / "heldout.jsonl", heldout)
        print(f"problems: {len(train)} train, {len(heldout)} held out; SFT on noisy demonstrations ...", flush=True)
        model, info = sft(train, log=lambda s: print(s, flush=True))
        settings = {k: v for k, v in info.items() if k != "seconds"}  # keep sft.pt byte-for-byte reproducible
        torch.save({"config": dict(M.CONFIG), "state_dict": model.state_dict(), "sft": settings}, tmp / "sft.pt")
        t0 = time.time()
        import evaluate  # the locked evaluation's grader and decoding settings

        greedy, format_rate = evaluate.score(model, heldout)
        start = {
            "heldout_greedy": greedy,
            "heldout_format_rate": format_rate,
            "heldout_sampled_t1": evaluate.score(model, heldout, temperature=1.0)[0],
        }
        print(f"starting policy: held-out accuracy {start['heldout_greedy']:.3f} greedy, "
              f"{start['heldout_sampled_t1']:.3f} sampled at T=1 ({time.time() - t0:.1f}s)", flush=True)
        manifest = {
            "format_version": FORMAT_VERSION,
            "split_rule": SPLIT_RULE,
            "problems": {"train": len(train), "heldout": len(heldout)},
            "sft": info,
            "start": start,
            "torch_version": torch.__version__,
            "sha256": {name: sha256_file(tmp / name) for name in FILES},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():  # swap into place: only a complete folder ever carries the name `out`
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the problems, sft.pt and manifest.json")
    parser.add_argument("--verify", action="store_true", help="only check the files' hashes")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    t0 = time.time()
    ok, message = check(out)
    if args.verify:
        print(("verified: " if ok else "verify FAILED: ") + message, flush=True)
        return 0 if ok else 1
    if ok:
        print(f"already prepared: {message}", flush=True)
        return 0
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in (*FILES, "manifest.json"))
        if foreign:
            print(f"prepare.py: {out} holds other files ({', '.join(foreign[:5])}); refusing to replace it",
                  file=sys.stderr)
            return 1
        if any(out.iterdir()):
            print(f"rebuilding {out} ({message})", flush=True)
    manifest = build(out)
    print(f"prepared {out} in {time.time() - t0:.1f}s (SFT {manifest['sft']['seconds']}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
