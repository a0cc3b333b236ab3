"""Locked evaluation for the grpo environment (hidden from ideators; never edited by ideas).

Run after training, in the same folder as train.py:  python evaluate.py

It loads GROUNDWORK_OUT_DIR/policy.pt into model.py's network (the config must be
model.CONFIG, the state dict must load strictly, every weight must be finite), decodes
greedily (model.generate at temperature 0, at most 20 new tokens) on the first
`eval_problems` (SETTINGS below, by GROUNDWORK_PROFILE) of the fixed held-out split (prepare.split(), rebuilt
here from its rule and checked against the data folder, whose files must also match the
hashes in its manifest), and grades each completion with
this file's own strict grader. train.py is never imported, and its reward function plays
no part in the score.

Sent to the job runner on the result channel (GROUNDWORK_RESULT_FD, a pipe: see "The result
channel" below; sent once, then the process ends at once), or, run by hand without one,
written atomically to GROUNDWORK_RESULT_PATH:
  accuracy                 share of held-out problems answered correctly in the exact format (the metric)
  eval_problems            how many held-out problems were scored
  correct                  how many of them were right; the runner checks accuracy = correct /
                           eval_problems (`checks`)
  format_rate              share of greedy completions in the exact format, right or wrong
  sampled_accuracy         accuracy of one sample per problem at temperature 1 (fixed seed), for reference
  max_train_eval_accuracy  the best of train.py's periodic validation accuracies (train_log.jsonl);
                           reported apart because a maximum over noisy evaluations is inflated,
                           and because train.py computes it (it is not checked)
  steps, train_seconds     as saved by train.py
On any error nothing is sent or written and the exit status is non-zero.

Environment: GROUNDWORK_DATA_DIR (required), GROUNDWORK_OUT_DIR (default "out"),
GROUNDWORK_RESULT_FD (from the job runner), GROUNDWORK_RESULT_PATH (default "result.json",
without a channel), GROUNDWORK_PROFILE (default "tiny"),
GROUNDWORK_NUM_THREADS (default 1).
"""
import os
import sys

# Run as a script, import nothing from the working folder by name (train.py could have left
# a json.py or a torch.py there); the locked model.py and prepare.py are loaded from their
# files below. (os and sys are loaded before any script runs, so they cannot be shadowed.)
if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NoReturn  # noqa: E402

import torch  # noqa: E402

# Evaluation settings per profile: locked here, never read from anything a run can write.
SETTINGS = {
    "tiny": {"eval_problems": 1000},
    "smoke": {"eval_problems": 100},
}
MAX_NEW_TOKENS = 20
BATCH = 500
SAMPLE_SEED = 0


def fail(message: str) -> NoReturn:
    print(f"evaluate.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


DIVERGED_EXIT = 4  # the runner reports this exit as `diverged`, not as a crash


def diverged(message: str) -> NoReturn:
    print(f"evaluate.py: error: training diverged: {message}", file=sys.stderr, flush=True)
    sys.exit(DIVERGED_EXIT)


# The result channel (GROUNDWORK_RESULT_FD, given by the job runner): a pipe, opened before
# any code a run can edit is imported. The result is serialised and sent through functions
# bound here, before that import, so a patched json, open, os.write or repr cannot touch it;
# it is sent once and the process ends at once (os._exit), so no atexit handler, signal
# handler, finaliser or thread left behind by imported code runs after it, and what was sent
# cannot be rewritten. Without the variable (run by hand) the result goes to the result file.
CHANNEL_OPENING = b"groundwork-result-channel 1\n"
CHANNEL_TAMPERED = 3  # exit status: the channel was closed or replaced under the evaluation
WRITE, FSTAT, EXIT, TYPE, ISFINITE = os.write, os.fstat, os._exit, type, math.isfinite
INT_TEXT, FLOAT_TEXT = int.__repr__, float.__repr__
QUOTE = json.encoder.c_encode_basestring_ascii or json.encoder.py_encode_basestring_ascii


def encode(value) -> str:
    """JSON text of a result (dicts, lists, strings, numbers, None) from the bound primitives."""
    kind = TYPE(value)
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if kind is int:
        return INT_TEXT(value)
    if kind is float:
        return FLOAT_TEXT(value) if ISFINITE(value) else "null"
    if kind is str:
        return QUOTE(value)
    if kind is list or kind is tuple:
        return "[" + ", ".join([encode(item) for item in value]) + "]"
    if kind is dict:
        return "{" + ", ".join([QUOTE(key) + ": " + encode(item) for key, item in value.items()]) + "}"
    fail(f"the result holds a {kind.__name__}, which the result channel does not carry")


def send_all(fd: int, data: bytes) -> None:
    while data:
        data = data[WRITE(fd, data):]


def open_channel():
    """(fd, identity of the pipe) when the runner gave one, after sending the opening line."""
    value = os.environ.get("GROUNDWORK_RESULT_FD", "")
    if not value:
        return None
    try:
        stat = FSTAT(int(value))
        send_all(int(value), CHANNEL_OPENING)
    except (ValueError, OSError) as exc:
        fail(f"GROUNDWORK_RESULT_FD={value!r} is not an open pipe to write the result to: {exc}")
    return int(value), (stat.st_dev, stat.st_ino)


def report(result: dict, result_path: str, channel) -> None:
    """Send the result on the channel and end the process there, or write the result file."""
    if channel is None:
        tmp = f"{result_path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp, result_path)
        return
    fd, identity = channel
    message = (encode(result) + "\n").encode("ascii")
    try:
        stat = FSTAT(fd)
        if (stat.st_dev, stat.st_ino) != identity:
            raise OSError("it is no longer the pipe the runner gave")
        send_all(fd, message)
    except OSError as exc:  # closed or replaced by code this process ran: exit status 3 says so
        print(f"evaluate.py: error: the result channel was tampered with: {exc}", file=sys.stderr, flush=True)
        EXIT(CHANNEL_TAMPERED)
    EXIT(0)


def load_local(name: str):
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == os.path.join(
            os.path.dirname(os.path.abspath(__file__)), f"{name}.py"):
        return sys.modules[name]
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


M = load_local("model")


def grade(prompt: str, completion_ids) -> tuple[bool, bool]:
    """(well_formed, correct) for one completion: exactly <think>W</think><answer>N</answer>
    then EOS, W free of tags, N in plain decimal (no sign, spaces or leading zeros);
    correct when N is the sum asked for."""
    ids = completion_ids.tolist() if torch.is_tensor(completion_ids) else list(completion_ids)
    if M.EOS not in ids:
        return False, False
    ids = ids[:ids.index(M.EOS)]
    tag_ids = (M.THINK_OPEN, M.THINK_CLOSE, M.ANSWER_OPEN, M.ANSWER_CLOSE)
    tags = [i for i, t in enumerate(ids) if t in tag_ids]
    if len(tags) != 4 or [ids[i] for i in tags] != list(tag_ids):
        return False, False
    if tags[0] != 0 or tags[3] != len(ids) - 1 or tags[2] != tags[1] + 1:
        return False, False
    if any(t in (M.PAD, M.BOS, M.EOS) for t in ids):
        return False, False
    digits = "".join(M.VOCAB[t] for t in ids[tags[2] + 1:tags[3]])
    if not (digits.isascii() and digits.isdigit()) or (len(digits) > 1 and digits[0] == "0"):
        return False, False
    a, b = int(prompt[0:2]), int(prompt[3:5])
    return True, int(digits) == a + b


def score(model, problems: list, temperature: float = 0.0, seed: int = SAMPLE_SEED) -> tuple[float, float]:
    """(accuracy, format_rate) of one completion per problem."""
    right, formed = count(model, problems, temperature, seed)
    n = max(1, len(problems))
    return right / n, formed / n


@torch.no_grad()
def count(model, problems: list, temperature: float = 0.0, seed: int = SAMPLE_SEED) -> tuple[int, int]:
    """(correct, well-formed) completions, one per problem."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    right = formed = 0
    for i in range(0, len(problems), BATCH):
        chunk = problems[i:i + BATCH]
        out = M.generate(model, M.encode_prompts([p["prompt"] for p in chunk]), MAX_NEW_TOKENS, temperature, gen)
        for p, row in zip(chunk, out):
            ok_format, ok_answer = grade(p["prompt"], row)
            formed += ok_format
            right += ok_answer
    return right, formed


def heldout_problems(data_dir: str) -> list:
    prepare = load_local("prepare")
    _, heldout = prepare.split()
    if not data_dir or not os.path.isdir(data_dir):
        fail(f"GROUNDWORK_DATA_DIR must name a prepared data folder (got {data_dir!r})")
    ok, message = prepare.check(Path(data_dir))  # the shared data folder must be as prepared
    if not ok:
        fail(f"the data folder does not match its manifest ({message}); prepare it again")
    path = os.path.join(data_dir, "heldout.jsonl")
    with open(path) as f:
        stored = [json.loads(line) for line in f]
    if stored != heldout:
        fail(f"{path} does not match the held-out split rule: the data folder was changed; prepare it again")
    return heldout


def max_train_eval(out_dir: str):
    path = os.path.join(out_dir, "train_log.jsonl")
    best = None
    try:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    value = json.loads(line).get("accuracy")
                except (ValueError, AttributeError):
                    continue
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    best = value if best is None else max(best, value)
    except OSError:
        return None
    return best


def main() -> None:
    channel = open_channel()
    data_dir = os.environ.get("GROUNDWORK_DATA_DIR", "")
    out_dir = os.environ.get("GROUNDWORK_OUT_DIR", "out")
    result_path = os.environ.get("GROUNDWORK_RESULT_PATH", "result.json")
    profile = os.environ.get("GROUNDWORK_PROFILE", "tiny")
    if profile not in SETTINGS:
        fail(f"no evaluation settings for profile {profile!r}; evaluate.py knows: {', '.join(SETTINGS)}")
    n_eval = SETTINGS[profile]["eval_problems"]
    torch.set_num_threads(int(os.environ.get("GROUNDWORK_NUM_THREADS", "1")))
    t0 = time.time()
    problems = heldout_problems(data_dir)[:n_eval]

    policy_path = os.path.join(out_dir, "policy.pt")
    if not os.path.isfile(policy_path):
        fail(f"no policy at {policy_path}: did training finish?")
    ckpt = torch.load(policy_path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        fail(f"{policy_path} must hold a dict with 'config' and 'state_dict'")
    if dict(ckpt["config"]) != M.CONFIG:
        fail(f"policy config {ckpt['config']} is not the environment's network {M.CONFIG}")
    model = M.build_model(M.CONFIG)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model = model.float().eval()
    if not all(torch.isfinite(p).all() for p in model.state_dict().values()):
        diverged("the policy has non-finite weights (NaN or inf)")

    correct, formed = count(model, problems)
    accuracy, format_rate = correct / max(1, len(problems)), formed / max(1, len(problems))
    sampled_accuracy, _ = score(model, problems, temperature=1.0)
    result = {
        "accuracy": accuracy,
        "eval_problems": len(problems),
        "correct": correct,
        "eval_profile": profile,
        "format_rate": format_rate,
        "sampled_accuracy": sampled_accuracy,
        "max_train_eval_accuracy": max_train_eval(out_dir),
        "steps": ckpt.get("steps"),
        "train_seconds": ckpt.get("train_seconds"),
        "eval_seconds": round(time.time() - t0, 3),
        # The runner checks accuracy = correct / eval_problems (a rewritten metric breaks it).
        "checks": [{"value": "accuracy", "product_of": {"correct": 1, "eval_problems": -1}}] if problems else [],
    }
    print(f"accuracy {accuracy:.4f} on {len(problems)} held-out problems (greedy) | format {format_rate:.3f} | "
          f"sampled T=1 {sampled_accuracy:.4f} | {time.time() - t0:.1f}s -> "
          f"{result_path if channel is None else 'the result channel'}", flush=True)
    report(result, result_path, channel)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as exc:  # any failure: clear message, no result, non-zero exit
        fail(f"{type(exc).__name__}: {exc}")
