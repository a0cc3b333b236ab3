"""Freeze the grpo environment's math task: problems, held-out split and starting model.

Locked file (hidden from ideators). Usage:

    python prepare.py --out DIR           # build DIR
    python prepare.py --out DIR --plan    # only print (JSON) what would be built, and why
    python prepare.py --out DIR --verify  # only check DIR's files against its manifest

What gets built depends on --source (default $GROUNDWORK_MATH_SOURCE, else synthetic):

  math         (full) Qwen2.5-Math-1.5B ($GROUNDWORK_MATH_MODEL_ID) on MATH: the 7,500
               training problems (MATH_TRAIN_REPO) and the MATH-500 test problems
               (MATH500_REPO), downloaded with huggingface_hub (with progress) unless they
               are in the Hugging Face cache already. The weights may also come from a local
               folder named by $GROUNDWORK_MATH_MODEL_PATH. Offline, it stops with an error
               that names every missing file and the command that fetches them.
  math-or-synthetic  (small) math when the weights are already on this machine (cache or
               $GROUNDWORK_MATH_MODEL_PATH; they are never downloaded for this source) and
               the MATH files can be had; otherwise the synthetic task below at its larger
               size. manifest.json's "task" and "reason" say which was built and why.
  synthetic    (math-smoke) offline: arithmetic word problems ("Compute 37 + 48.") and a
               tiny randomly initialised Qwen2-architecture model with a small byte-level BPE
               tokenizer (built here with the `tokenizers` library), briefly fine-tuned on
               noisy r1_zero-format demonstrations so that rewards are neither all 0 nor all 1.
               $GROUNDWORK_SCALE picks the size (SYNTHETIC below).

Files in DIR, the same layout for every task: train.jsonl and heldout.jsonl (one
{"problem", "answer"} per line), the starting model as a Hugging Face model folder
(config.json, *.safetensors, tokenizer files), task.json ({"task", "model"}, read by
training) and manifest.json (sha256 of each file, the split, where things came from). The
build happens in a temporary folder next to DIR that is renamed into place at the end;
running it again on a prepared DIR whose hashes match, built for the task the source
chooses now, is a no-op (so is a small DIR that fell back to the synthetic task because the
MATH files could not be fetched: delete it to try again).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # keep the codebase folder free of __pycache__
FORMAT_VERSION = 1
SOURCES = ("synthetic", "math-or-synthetic", "math")
MODEL_ID = os.environ.get("GROUNDWORK_MATH_MODEL_ID") or "Qwen/Qwen2.5-Math-1.5B"
MODEL_PATH_ENV = "GROUNDWORK_MATH_MODEL_PATH"  # a local folder with the weights, instead of the cache
MODEL_PATTERNS = ["*.json", "*.safetensors", "merges.txt", "vocab.json"]
MATH_TRAIN_REPO, MATH_TRAIN_FILE = "DigitalLearningGmbH/MATH-lighteval", "data/train-00000-of-00001.parquet"
MATH500_REPO, MATH500_FILE = "HuggingFaceH4/MATH-500", "test.jsonl"
DATA_FILES = ("train.jsonl", "heldout.jsonl", "task.json")
# Model-folder files the evaluation re-checks each time (the weights are large: prepare
# hashes them, the evaluation loads only the trained policy).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

# The r1_zero prompt: the completion continues after "<think>".
R1_ZERO_PROMPT = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer "
    "here </answer>.\nUser: {question}\nAssistant: <think>"
)

# The synthetic task, per GROUNDWORK_SCALE: sums and differences of `terms` numbers below
# `limit`; a problem is held out when int(sha256(problem)[:8], 16) % 10 == 0.
SYNTHETIC = {
    "smoke": {"terms": 2, "limit": 30, "ops": "+", "problems": 900, "hidden": 96, "layers": 3, "heads": 4,
              "kv_heads": 2, "ffn": 256, "vocab": 640, "sft_steps": 100, "sft_batch": 16, "sft_lr": 3e-3},
    "small": {"terms": 3, "limit": 1000, "ops": "+-", "problems": 60000, "hidden": 256, "layers": 4, "heads": 8,
              "kv_heads": 4, "ffn": 768, "vocab": 512, "sft_steps": 1500, "sft_batch": 64, "sft_lr": 1e-3},
}
HELDOUT_MODULUS = 10
P_SLIP = 0.35  # the demonstrator gets one step's result wrong by a little
P_SLOPPY = 0.2  # ... or writes the answer outside the format
SFT_SEED = 1234
SPECIAL_TOKENS = ["<|endoftext|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]


NOT_CACHED = "not in the local Hugging Face cache"


class Unavailable(RuntimeError):
    """Files that are neither on this machine nor downloadable now."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- where things come from
def fix_command(scale: str) -> str:
    return f"groundwork env prepare grpo --profile {scale}"


def hub():
    try:
        import huggingface_hub
    except ImportError:
        raise Unavailable("huggingface_hub is not installed: pip install 'groundwork[gpu]'") from None
    return huggingface_hub


def locate_model(download: bool) -> Path:
    """The starting weights' folder: $GROUNDWORK_MATH_MODEL_PATH, the Hugging Face cache, or
    (with `download`) a download into the cache."""
    local = os.environ.get(MODEL_PATH_ENV)
    if local:
        folder = Path(local).expanduser()
        if not (folder / "config.json").is_file() or not list(folder.glob("*.safetensors")):
            raise Unavailable(f"{MODEL_PATH_ENV}={local} holds no config.json and *.safetensors")
        return folder
    try:
        path = hub().snapshot_download(MODEL_ID, allow_patterns=MODEL_PATTERNS, local_files_only=not download)
    except Unavailable:
        raise
    except Exception as exc:  # offline, refused, not cached: one line that names the model
        raise Unavailable(f"model {MODEL_ID} ({first_line(exc) if download else NOT_CACHED})") from None
    return Path(path)


def fetch(repo: str, filename: str, download: bool = True) -> Path:
    try:
        return Path(hub().hf_hub_download(repo, filename, repo_type="dataset", local_files_only=not download))
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"dataset file {repo}/{filename} ({first_line(exc) if download else NOT_CACHED})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def plan(source: str, scale: str) -> dict:
    """What to build and why, touching the network only where the source downloads: the
    model is looked up locally first; `math` may download it, `math-or-synthetic` never."""
    if source not in SOURCES:
        raise SystemExit(f"prepare.py: unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "synthetic":
        return {"task": "synthetic", "scale": scale, "reason": "the synthetic task was asked for"}
    try:
        model = locate_model(download=False)
        return {"task": "math", "scale": scale, "model_path": str(model), "reason": f"weights of {MODEL_ID} found locally"}
    except Unavailable as exc:
        missing = str(exc)
    if source == "math":
        return {"task": "math", "scale": scale, "model_path": None,
                "reason": f"weights of {MODEL_ID} not on this machine: downloading them"}
    return {"task": "synthetic", "scale": scale,
            "reason": f"weights not on this machine ({missing}); for MATH, fetch them with "
                      f"`hf download {MODEL_ID}` or set {MODEL_PATH_ENV}, then run "
                      f"`{fix_command(scale)}` again"}


# ---------------------------------------------------------------------------- MATH
def boxed(solution: str) -> str | None:
    """The last \\boxed{...} of a MATH solution (its reference answer)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import math_grader
    finally:
        sys.path.pop(0)
    return math_grader.last_boxed(solution)


def read_math_train(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("prepare.py: reading MATH's parquet file needs pyarrow: pip install 'groundwork[rl]'") from None
    rows = pq.read_table(path, columns=["problem", "solution"]).to_pylist()
    problems = []
    for row in rows:
        answer = boxed(row["solution"])
        if answer is not None:
            problems.append({"problem": row["problem"], "answer": answer.strip()})
    return problems


def build_math(tmp: Path, decision: dict, download_model: bool) -> dict:
    """Once one download has failed, the rest are only looked up in the cache: an offline
    machine gets its list of what is missing at once, not after every file's retries."""
    missing, model, online = [], None, True
    try:
        model = locate_model(download=download_model)
    except Unavailable as exc:
        missing.append(str(exc))
        online = not download_model
    files = {}
    for repo, name in ((MATH_TRAIN_REPO, MATH_TRAIN_FILE), (MATH500_REPO, MATH500_FILE)):
        print(f"MATH: {repo}/{name}" + ("" if online else " (cache only: the hub was unreachable)"), flush=True)
        try:
            files[name] = fetch(repo, name, download=online)
        except Unavailable as exc:
            missing.append(str(exc))
            online = False
    if missing:
        raise Unavailable("; ".join(missing))
    heldout = [{"problem": r["problem"], "answer": r["answer"], "id": r.get("unique_id")}
               for r in map(json.loads, files[MATH500_FILE].read_text().splitlines()) if r]
    seen = {p["problem"].strip() for p in heldout}
    train = [p for p in read_math_train(files[MATH_TRAIN_FILE]) if p["problem"].strip() not in seen]
    write_jsonl(tmp / "train.jsonl", train)
    write_jsonl(tmp / "heldout.jsonl", heldout)
    names = []
    for src in sorted(model.iterdir()):
        if src.is_file() and any(src.match(p) for p in MODEL_PATTERNS):
            link_or_copy(src.resolve(), tmp / src.name)
            names.append(src.name)
    (tmp / "task.json").write_text(json.dumps({"task": "math", "model": MODEL_ID}) + "\n")
    return {"task": "math", "model": MODEL_ID, "model_files": names,
            "problems": {"train": len(train), "heldout": len(heldout)},
            "sources": {"train": f"huggingface.co/datasets/{MATH_TRAIN_REPO}/{MATH_TRAIN_FILE}",
                        "heldout": f"huggingface.co/datasets/{MATH500_REPO}/{MATH500_FILE}"}}


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: a copy is as good
        shutil.copyfile(src, dst)


# ---------------------------------------------------------------------------- synthetic
def synthetic_problems(size: dict) -> list[dict]:
    """`size["problems"]` distinct problems from a fixed seed, each with its worked steps."""
    rng = random.Random(size["terms"] * 1000 + size["limit"])
    assert size["problems"] <= size["limit"] ** size["terms"] * len(size["ops"]) ** (size["terms"] - 1)
    seen, problems = set(), []
    while len(problems) < size["problems"]:
        numbers = [rng.randrange(size["limit"]) for _ in range(size["terms"])]
        ops = [rng.choice(size["ops"]) for _ in range(size["terms"] - 1)]
        question = "Compute " + " ".join([str(numbers[0])] + [f"{o} {n}" for o, n in zip(ops, numbers[1:])]) + "."
        if question in seen:
            continue
        seen.add(question)
        total = numbers[0]
        for o, n in zip(ops, numbers[1:]):
            total = total + n if o == "+" else total - n
        problems.append({"problem": question, "answer": str(total)})
    return problems


def demonstration(problem: str, rng: random.Random) -> str:
    """A noisy worked solution: one step per operation, then the answer, in the r1_zero format."""
    tokens = problem[len("Compute "):-1].split()
    total, steps = int(tokens[0]), []
    for o, n in zip(tokens[1::2], tokens[2::2]):
        new = total + int(n) if o == "+" else total - int(n)
        if rng.random() < P_SLIP:
            new += rng.choice([-10, -2, -1, 1, 2, 10])
        steps.append(f"{total} {o} {n} = {new}")
        total = new
    text = f" {', '.join(steps)} </think> <answer> {total} </answer>"
    if rng.random() < P_SLOPPY:
        text = f" {', '.join(steps)} </think> {total}" if rng.random() < 0.5 else f" {', '.join(steps)} so {total}"
    return text


def build_tokenizer(texts: list[str], vocab: int):
    """A byte-level BPE tokenizer (digits split one by one) trained on `texts`, with the
    four tags as single tokens and <|endoftext|> as end and padding."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(tag, normalized=False) for tag in TAGS])  # text, not special: decoding keeps them
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.padding_side = "left"
    return fast


def build_synthetic(tmp: Path, scale: str) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    size = SYNTHETIC[scale]
    problems = synthetic_problems(size)
    heldout = sorted((p for p in problems if int(digest(p["problem"])[:8], 16) % HELDOUT_MODULUS == 0),
                     key=lambda p: digest(p["problem"]))
    held = {p["problem"] for p in heldout}
    train = [p for p in problems if p["problem"] not in held]
    rng = random.Random(SFT_SEED)
    demos = [(R1_ZERO_PROMPT.format(question=p["problem"]), demonstration(p["problem"], rng)) for p in train]
    tokenizer = build_tokenizer([prompt + completion for prompt, completion in demos[:4000]], size["vocab"])
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=size["hidden"], intermediate_size=size["ffn"],
                         num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                         num_key_value_heads=size["kv_heads"], max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SFT_SEED)
    model = Qwen2ForCausalLM(config)
    device = "cuda" if os.environ.get("GROUNDWORK_DEVICE") == "cuda" and torch.cuda.is_available() else "cpu"
    t0 = time.time()
    sft(model, tokenizer, demos, size, device)
    model.to("cpu").save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_jsonl(tmp / "train.jsonl", train)
    write_jsonl(tmp / "heldout.jsonl", heldout)
    name = f"synthetic-qwen2-{scale}"
    (tmp / "task.json").write_text(json.dumps({"task": "synthetic", "model": name}) + "\n")
    return {"task": "synthetic", "model": name, "size": size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "problems": {"train": len(train), "heldout": len(heldout)},
            "split_rule": "held out if int(sha256(problem).hexdigest()[:8], 16) % 10 == 0, ordered by that digest",
            "sft_seconds": round(time.time() - t0, 1)}


def sft(model, tokenizer, demos: list[tuple[str, str]], size: dict, device: str) -> None:
    """Supervised fine-tuning on the completions of noisy demonstrations (fixed seed)."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("GROUNDWORK_NUM_THREADS", "1"))))
    eos = tokenizer.eos_token_id
    rows = []
    for prompt, completion in demos:
        p, c = tokenizer(prompt)["input_ids"], tokenizer(completion)["input_ids"] + [eos]
        rows.append((p + c, len(p)))
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=size["sft_lr"], weight_decay=0.0)
    gen = torch.Generator().manual_seed(SFT_SEED)
    for step in range(size["sft_steps"]):
        lr = size["sft_lr"] * min(1.0, (step + 1) / 20) * (1 - step / size["sft_steps"])
        for group in opt.param_groups:
            group["lr"] = lr
        batch = [rows[i] for i in torch.randint(len(rows), (size["sft_batch"],), generator=gen).tolist()]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), eos)
        labels = torch.full((len(batch), width), -100)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (seq, n_prompt) in enumerate(batch):
            ids[i, :len(seq)] = torch.tensor(seq)
            labels[i, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
            attention[i, :len(seq)] = 1
        loss = model(input_ids=ids.to(device), attention_mask=attention.to(device), labels=labels.to(device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 50 == 0 or step == 0:
            print(f"  sft step {step + 1}/{size['sft_steps']} | loss {loss.item():.4f}", flush=True)
    model.eval()


# ---------------------------------------------------------------------------- build / check
def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_manifest(out: Path) -> dict | None:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        return manifest if manifest.get("format_version") == FORMAT_VERSION else None
    except (OSError, ValueError):
        return None


def check(out: Path, names: tuple[str, ...] | None = None) -> tuple[bool, str]:
    """(ok, message): do `names` (default: every file the manifest lists) exist in `out` and
    match the manifest's hashes?"""
    manifest = read_manifest(out)
    if manifest is None:
        return False, f"no readable manifest (format {FORMAT_VERSION}) at {out / 'manifest.json'}"
    expected = manifest["sha256"]
    for name in expected if names is None else names:
        path = out / name
        if not path.is_file():
            return False, f"missing file {path}"
        if name not in expected or sha256_file(path) != expected[name]:
            return False, f"hash mismatch for {path}"
    return True, f"{out}: {manifest['task']} task ({manifest['model']}), files match manifest"


def build(out: Path, decision: dict) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        info = None
        if decision["task"] == "math":
            try:
                info = build_math(tmp, decision, download_model=decision["source"] == "math")
            except Unavailable as exc:
                if decision["source"] == "math":
                    raise SystemExit(
                        f"prepare.py: missing: {exc}.\nFetch them where huggingface.co is reachable with "
                        f"`{fix_command(decision['scale'])}` (or copy a prepared folder to {out}; the weights may "
                        f"also come from a local folder named by {MODEL_PATH_ENV})") from None
                decision = {**decision, "task": "synthetic", "fallback": "math-files-unavailable",
                            "reason": f"MATH files unavailable ({exc}); for MATH, delete {out} and run "
                                      f"`{fix_command(decision['scale'])}` where huggingface.co is reachable"}
                print(f"MATH is not available; using the synthetic task instead: {decision['reason']}", flush=True)
                for partial in tmp.iterdir():
                    partial.unlink()
        if info is None:
            info = build_synthetic(tmp, decision["scale"])
        names = sorted(p.name for p in tmp.iterdir() if p.is_file())
        manifest = {"format_version": FORMAT_VERSION, **info, "source": decision["source"],
                    "reason": decision["reason"], "fallback": decision.get("fallback"),
                    "sha256": {n: sha256_file(tmp / n) for n in names}}
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
    parser.add_argument("--out", required=True, type=Path, help="folder for the problems, model and manifest.json")
    parser.add_argument("--source", choices=SOURCES, default=os.environ.get("GROUNDWORK_MATH_SOURCE") or "synthetic",
                        help="what to build (default: $GROUNDWORK_MATH_SOURCE, else synthetic)")
    parser.add_argument("--scale", default=os.environ.get("GROUNDWORK_SCALE") or "smoke",
                        help="size of the synthetic task (default: $GROUNDWORK_SCALE, else smoke)")
    parser.add_argument("--plan", action="store_true", help="only print what would be built, and why")
    parser.add_argument("--verify", action="store_true", help="only check the files' hashes")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.scale not in SYNTHETIC and args.scale != "full":
        parser.error(f"--scale {args.scale!r}: choose one of {', '.join([*SYNTHETIC, 'full'])}")
    t0 = time.time()
    ok, message = check(out)
    if args.verify:
        print(("verified: " if ok else "verify FAILED: ") + message, flush=True)
        return 0 if ok else 1
    decision = {**plan(args.source, args.scale), "source": args.source}
    if args.plan:
        print(json.dumps(decision, indent=2), flush=True)
        return 0
    existing = read_manifest(out) if ok else None
    if ok and existing["task"] == decision["task"]:
        print(f"already prepared: {message}", flush=True)
        return 0
    if ok and existing.get("fallback"):  # not retried on every run: the reason says how to
        print(f"already prepared: {message}; {existing['reason']}", flush=True)
        return 0
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in (read_manifest(out) or {}).get("sha256", {})
                         and p.name != "manifest.json")
        if foreign:
            print(f"prepare.py: {out} holds other files ({', '.join(foreign[:5])}); refusing to replace it",
                  file=sys.stderr)
            return 1
        if any(out.iterdir()):
            print(f"rebuilding {out} ({message}; task now: {decision['task']})", flush=True)
    print(f"building the {decision['task']} task: {decision['reason']}", flush=True)
    manifest = build(out, decision)
    print(f"prepared {out} ({manifest['task']}, {manifest['problems']['train']} train / "
          f"{manifest['problems']['heldout']} held-out problems) in {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
