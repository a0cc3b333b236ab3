"""Locked evaluation of the grpo environment's math profiles (hidden from ideators).

Run after training, in the same folder as train.py:  python evaluate.py

It loads the policy train.py saved with save_pretrained (GROUNDWORK_OUT_DIR/policy,
safetensors only, no remote code), checks that its config is the starting model's (the
architecture is fixed) and that every weight is finite, decodes greedily (stopping after
"</answer>", at most `max_new_tokens`) the r1_zero prompt of each of the first
`eval_problems` held-out problems (SETTINGS below, by GROUNDWORK_PROFILE and the prepared
task), with the starting model's tokenizer from the data folder, and grades each
completion with the locked math_grader.py. The data folder's files must match the hashes
in its manifest. train.py is never imported; its reward plays no part in the score.
Decoding uses vLLM when it is installed and the profile runs on CUDA, else Hugging Face
generate (bf16 on CUDA, float32 on CPU); the result names which.

Sent to the job runner on the result channel (GROUNDWORK_RESULT_FD, a pipe: see "The result
channel" below; sent once, then the process ends at once), or, run by hand without one,
written atomically to GROUNDWORK_RESULT_PATH:
  accuracy                 share of held-out problems answered correctly in the format (the metric)
  format_rate              share of completions in the r1_zero format, right or wrong
  eval_problems, task      how many held-out problems were scored, and of which task
  correct                  how many of them were right; the runner checks accuracy = correct /
                           eval_problems (`checks`)
  max_train_eval_accuracy  the best of train.py's validation accuracies (train_log.jsonl),
                           reported apart: a maximum over noisy evaluations is inflated, and
                           train.py computes it (it is not checked)
  steps, train_seconds     as train.py saved them (policy/train_state.json)
On any error nothing is sent or written and the exit status is non-zero.
"""
import os
import sys

# Run as a script, import nothing from the working folder by name (train.py could have left
# a json.py or a transformers/ there); the locked prepare.py and math_grader.py are loaded
# from their files below.
if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
sys.dont_write_bytecode = True

import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NoReturn  # noqa: E402

# Evaluation settings per profile and prepared task: locked here, never read from anything
# a run can write.
SETTINGS = {
    "math-smoke": {"synthetic": {"eval_problems": 50, "max_new_tokens": 48}},
    "small": {"math": {"eval_problems": 200, "max_new_tokens": 1024},
              "synthetic": {"eval_problems": 500, "max_new_tokens": 64}},
    "full": {"math": {"eval_problems": 500, "max_new_tokens": 1024}},
}
BATCH = {"cpu": 64, "cuda": 128}
STOP = "</answer>"
# Config keys that say how a model was saved, not what it is.
CONFIG_NOISE = {"torch_dtype", "dtype", "transformers_version", "_name_or_path", "use_cache", "architectures",
                "_attn_implementation_autoset", "_commit_hash"}
HERE = os.path.dirname(os.path.abspath(__file__))


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
    path = os.path.join(HERE, f"{name}.py")
    if getattr(sys.modules.get(name), "__file__", None) == path:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


P = load_local("prepare")
G = load_local("math_grader")


def prepared_task(data_dir: str) -> tuple[dict, list]:
    """(manifest, held-out problems) of a data folder whose small files match its hashes."""
    if not data_dir or not os.path.isdir(data_dir):
        fail(f"GROUNDWORK_DATA_DIR must name a prepared data folder (got {data_dir!r})")
    manifest = P.read_manifest(Path(data_dir))
    if manifest is None:
        fail(f"no readable manifest in {data_dir}; prepare it again")
    # Everything but the (large) starting weights, which the evaluation does not use.
    names = tuple(n for n in manifest["sha256"] if not n.endswith(".safetensors"))
    ok, message = P.check(Path(data_dir), names)
    if not ok:
        fail(f"the data folder does not match its manifest ({message}); prepare it again")
    with open(os.path.join(data_dir, "heldout.jsonl")) as f:
        return manifest, [json.loads(line) for line in f]


def load_policy(policy_dir: str, data_dir: str, device: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if not os.path.isfile(os.path.join(policy_dir, "config.json")):
        fail(f"no policy at {policy_dir} (config.json and *.safetensors from save_pretrained): did training finish?")
    start = {k: v for k, v in AutoConfig.from_pretrained(data_dir).to_dict().items() if k not in CONFIG_NOISE}
    saved = {k: v for k, v in AutoConfig.from_pretrained(policy_dir).to_dict().items() if k not in CONFIG_NOISE}
    if saved != start:
        diff = sorted(k for k in set(start) | set(saved) if start.get(k) != saved.get(k))
        fail(f"the policy's config differs from the starting model's in {', '.join(diff[:8])}: the architecture is fixed")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(policy_dir, torch_dtype=dtype, use_safetensors=True,
                                                 trust_remote_code=False)
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        diverged("the policy has non-finite weights (NaN or inf)")
    return model.to(device).eval()


def decode_hf(model, tokenizer, prompts: list, max_new_tokens: int, device: str) -> list:
    import torch

    tokenizer.padding_side = "left"
    texts = []
    for i in range(0, len(prompts), BATCH[device]):
        batch = tokenizer(prompts[i:i + BATCH[device]], return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, stop_strings=[STOP],
                                 tokenizer=tokenizer, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
        texts += tokenizer.batch_decode(out[:, batch["input_ids"].size(1):], skip_special_tokens=True)
    return texts


def decode_vllm(policy_dir: str, data_dir: str, prompts: list, max_new_tokens: int) -> list:
    """Greedy decoding with vLLM (never run in the test suite: it needs CUDA)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=policy_dir, tokenizer=data_dir, dtype="bfloat16", seed=0, trust_remote_code=False)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=[STOP], include_stop_str_in_output=True)
    return [o.outputs[0].text for o in llm.generate(prompts, params)]


def max_train_eval(out_dir: str):
    best = None
    try:
        with open(os.path.join(out_dir, "train_log.jsonl"), errors="replace") as f:
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


def train_state(policy_dir: str) -> dict:
    try:
        with open(os.path.join(policy_dir, "train_state.json")) as f:
            state = json.load(f)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def main() -> None:
    channel = open_channel()
    data_dir = os.environ.get("GROUNDWORK_DATA_DIR", "")
    out_dir = os.environ.get("GROUNDWORK_OUT_DIR", "out")
    result_path = os.environ.get("GROUNDWORK_RESULT_PATH", "result.json")
    profile = os.environ.get("GROUNDWORK_PROFILE", "math-smoke")
    t0 = time.time()
    manifest, heldout = prepared_task(data_dir)
    task = manifest["task"]
    if task not in SETTINGS.get(profile, {}):
        fail(f"no evaluation settings for profile {profile!r} on the {task} task; evaluate.py knows: "
             + ", ".join(f"{p} ({', '.join(t)})" for p, t in SETTINGS.items()))
    settings = SETTINGS[profile][task]
    problems = heldout[:settings["eval_problems"]]

    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(int(os.environ.get("GROUNDWORK_NUM_THREADS", "1")))
    device = "cuda" if os.environ.get("GROUNDWORK_DEVICE") == "cuda" and torch.cuda.is_available() else "cpu"
    policy_dir = os.path.join(out_dir, "policy")
    tokenizer = AutoTokenizer.from_pretrained(data_dir)
    model = load_policy(policy_dir, data_dir, device)
    prompts = [P.R1_ZERO_PROMPT.format(question=p["problem"]) for p in problems]
    backend = "hf-generate"
    if device == "cuda" and importlib.util.find_spec("vllm") is not None:
        del model
        torch.cuda.empty_cache()
        completions, backend = decode_vllm(policy_dir, data_dir, prompts, settings["max_new_tokens"]), "vllm"
    else:
        completions = decode_hf(model, tokenizer, prompts, settings["max_new_tokens"], device)
    graded = [G.grade_r1_zero(c, p["answer"]) for c, p in zip(completions, problems)]
    n = max(1, len(problems))
    correct = sum(right for _, right in graded)
    accuracy = correct / n
    state = train_state(policy_dir)
    result = {
        "accuracy": accuracy,
        "format_rate": sum(formed for formed, _ in graded) / n,
        "eval_problems": len(problems),
        "correct": correct,
        "eval_profile": profile,
        "task": task,
        "eval_backend": backend,
        "max_train_eval_accuracy": max_train_eval(out_dir),
        "steps": state.get("steps"),
        "train_seconds": state.get("train_seconds"),
        "eval_seconds": round(time.time() - t0, 3),
        # The runner checks accuracy = correct / eval_problems (a rewritten metric breaks it).
        "checks": [{"value": "accuracy", "product_of": {"correct": 1, "eval_problems": -1}}] if problems else [],
    }
    print(f"accuracy {accuracy:.4f} on {len(problems)} held-out {task} problems (greedy, {backend}) | "
          f"format {result['format_rate']:.3f} | {time.time() - t0:.1f}s -> "
          f"{result_path if channel is None else 'the result channel'}", flush=True)
    report(result, result_path, channel)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as exc:  # any failure: clear message, no result, non-zero exit
        fail(f"{type(exc).__name__}: {exc}")
