"""Locked evaluation for the nanogpt environment (hidden from ideators; never edited by ideas).

Run after training, in the same folder as train.py:  python evaluate.py

It rebuilds the model through the (possibly edited) `train.build_model`, loads the
checkpoint strictly, and measures the mean next-byte cross-entropy on a FIXED slice of
val.bin: the profile's `eval_tokens` bytes to predict (SETTINGS below, chosen by
GROUNDWORK_PROFILE; nothing a training run can change), taken as segments of 1024 bytes
spread evenly over the whole file (so the score covers many source files, not the first
one), each cut into consecutive non-overlapping windows of the model's context length (at
most 1024). Every model is scored on exactly the same bytes, and val.bin must match the
hash recorded when the data was prepared. The loss is computed here with an explicit
float64 log_softmax + gather, so no function that train.py could change enters the metric.

Token profiles (small, full: GPT-2 tokens in llm.c shards) score the first `eval_tokens`
tokens of val_000000.bin in consecutive windows of the model's context, on the GPU in bf16
when there is one (one process: the same average as splitting the windows over ranks), and
report val_loss in nats per token and val_bpb over the bytes those tokens stand for.

Causality guard: for a few of the scored batches, the same batch is run again with every
row's bytes after a cut point replaced by bytes from another scored window; the logits up to
the cut must not move. A model that reads later bytes fails, however low its loss.

The result goes to the job runner on the result channel (GROUNDWORK_RESULT_FD, a pipe: see
"The result channel" below): opened before train.py is imported, sent once with functions
bound before that import, and the process ends the moment it is sent, so nothing train.py
left behind (an atexit handler, a timer, a thread, a forked child) can rewrite it. Beside
val_bpb it carries val_loss, eval_tokens and eval_bytes and the relation between them
(`checks`), which the runner verifies. Run by hand (no channel), the result is written
atomically to GROUNDWORK_RESULT_PATH. On any error nothing is sent or written and the exit
status is non-zero.

Environment: GROUNDWORK_DATA_DIR (required), GROUNDWORK_PROFILE (default "tiny"),
GROUNDWORK_OUT_DIR (default "out"), GROUNDWORK_RESULT_FD (from the job runner),
GROUNDWORK_RESULT_PATH (default "result.json", without a channel), GROUNDWORK_NUM_THREADS
(default 1).
"""
import os
import sys

# Import nothing from the working folder by name (a patch or train.py could have left a
# json.py or a torch/ there): drop the script's folder from the import path; train.py and the
# locked prepare.py are loaded from their files below. (os and sys are loaded before any
# script runs, so they cannot be shadowed.)
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
# Byte profiles score `eval_tokens` bytes in segments spread over val.bin; token profiles score
# the FIRST `eval_tokens` tokens of val_000000.bin (or all of it when it is shorter).
SETTINGS = {
    "tiny": {"eval_tokens": 65536, "device": "cpu", "batch": 32},
    "micro": {"eval_tokens": 32768, "device": "cpu", "batch": 32},
    "smoke": {"eval_tokens": 8192, "device": "cpu", "batch": 32},
    "small": {"eval_tokens": 10_485_760, "device": "cuda", "batch": 16},
    "full": {"eval_tokens": 10_485_760, "device": "cuda", "batch": 16},
}
MAX_WINDOW = 1024
SEGMENT = 1024  # bytes predicted per evaluation segment
GUARD_BATCHES = 3  # scored batches re-run with their tails replaced (first, middle, last)
GUARD_TOLERANCE = {"cpu": 1e-4, "cuda": 2e-2}  # cuda: bf16 autocast
HERE = os.path.dirname(os.path.abspath(__file__))
# Bound before train.py is imported, so an edited train.py cannot swap the functions that
# compute the metric by reassigning torch attributes at import time.
LOG_SOFTMAX, GATHER, ALLCLOSE = torch.log_softmax, torch.gather, torch.allclose
LN2 = math.log(2)  # (math.log too)


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


def load_file(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def logits_of(model, x):
    if x.is_cuda:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
    else:
        logits = model(x)
    return logits[0] if isinstance(logits, (tuple, list)) else logits


def check_causal(model, x, logits, salt: int, tolerance: float) -> None:
    """Re-run a scored batch with each row's bytes after a cut replaced by real bytes from
    another row (same shape, natural content); the logits before the cut must not move."""
    rows, length = x.shape
    gen = torch.Generator().manual_seed(1000 + salt)
    cuts = torch.randint(1, length, (rows,), generator=gen).to(x.device)
    donor = x.roll(1, dims=0) if rows > 1 else x.flip(1)
    keep = torch.arange(length, device=x.device)[None, :] < cuts[:, None]
    altered = torch.where(keep, x, donor)
    changed = altered != x
    if not changed.any():
        altered = torch.where(keep, x, (x + 1) % 256)  # (same bytes everywhere: any change will do)
    after = logits_of(model, altered)
    for r in range(rows):
        c = int(cuts[r])
        if not ALLCLOSE(logits[r, :c].float(), after[r, :c].float(), rtol=tolerance, atol=tolerance):
            fail(f"model is not causal: changing the bytes after position {c} moved the logits before it; "
                 "a model that reads the bytes it predicts gets no score")


def byte_windows(data_dir: str, eval_tokens: int, window: int):
    """val.bin: segments of SEGMENT bytes spread evenly over the file, cut into windows."""
    val_path = os.path.join(data_dir, "val.bin")
    with open(val_path, "rb") as f:
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    if len(data) < SEGMENT + 1:
        fail(f"{val_path} holds fewer than {SEGMENT + 1} bytes")
    segments = max(1, math.ceil(eval_tokens / SEGMENT))
    span = len(data) - (SEGMENT + 1)  # last possible segment start
    seg_starts = [span * k // max(1, segments - 1) for k in range(segments)] if segments > 1 else [0]
    starts = [(min(window, SEGMENT - offset), seg + offset) for seg in seg_starts for offset in range(0, SEGMENT, window)]
    return data, starts, None


def token_windows(data_dir: str, eval_tokens: int, window: int, prepare):
    """val_000000.bin: consecutive windows over its first eval_tokens (+1) tokens."""
    import numpy as np

    tokens = prepare.read_token_shard(Path(data_dir) / "val_000000.bin")
    n = min(eval_tokens, (len(tokens) - 1) // window * window)
    if n < window:
        fail(f"the validation shard holds {len(tokens)} tokens, fewer than one window of {window} + 1")
    data = torch.from_numpy(np.array(tokens[:n + 1], dtype=np.int64))
    token_bytes = torch.from_numpy(np.fromfile(os.path.join(data_dir, "token_bytes.bin"), dtype=np.uint16).astype(np.int64))
    return data, [(window, s) for s in range(0, n, window)], token_bytes


def main() -> None:
    channel = open_channel()
    data_dir = os.environ.get("GROUNDWORK_DATA_DIR", "")
    out_dir = os.environ.get("GROUNDWORK_OUT_DIR", "out")
    result_path = os.environ.get("GROUNDWORK_RESULT_PATH", "result.json")
    profile = os.environ.get("GROUNDWORK_PROFILE", "tiny")
    if profile not in SETTINGS:
        fail(f"no evaluation settings for profile {profile!r}; evaluate.py knows: {', '.join(SETTINGS)}")
    settings = SETTINGS[profile]
    eval_tokens = settings["eval_tokens"]
    device = "cuda" if settings["device"] == "cuda" and torch.cuda.is_available() else "cpu"
    torch.set_num_threads(int(os.environ.get("GROUNDWORK_NUM_THREADS", "1")))
    if not data_dir or not os.path.isdir(data_dir):
        fail(f"GROUNDWORK_DATA_DIR must name a prepared data folder (got {data_dir!r})")
    tokens = os.path.isfile(os.path.join(data_dir, "val_000000.bin"))
    prepare = load_file("prepare", os.path.join(HERE, "prepare.py"))
    ok, message = prepare.check(Path(data_dir), shards=("val_000000.bin", "token_bytes.bin") if tokens else ("val.bin",))
    if not ok:
        fail(f"the validation data is not as prepared ({message}); prepare it again")
    ckpt_path = os.path.join(out_dir, "ckpt.pt")
    if not os.path.isfile(ckpt_path):
        fail(f"no checkpoint at {ckpt_path}: did training finish?")

    t0 = time.time()
    # The edited training file defines the architecture; importing it must not train. Its
    # folder goes to the END of the import path: its own helper modules resolve, but nothing
    # there can stand in for an installed module.
    sys.path.append(HERE)
    try:
        train = load_file("train", os.path.join(HERE, "train.py"))
    except SystemExit as exc:
        fail(f"importing train.py called sys.exit({exc.code}); it must only define things")

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model_args = ckpt["model_args"]
    model = train.build_model(model_args)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model = model.float().eval().to(device)
    vocab = 256 if not tokens else int(model_args.get("vocab_size", 0))
    if tokens and vocab < prepare.GPT2_VOCAB:
        fail(f"model_args vocab_size = {vocab}: a GPT-2 token model needs at least {prepare.GPT2_VOCAB}")

    window = min(int(model_args.get("block_size", 128)), MAX_WINDOW)
    if tokens:
        data, starts, token_bytes = token_windows(data_dir, eval_tokens, window, prepare)
    else:
        data, starts, token_bytes = byte_windows(data_dir, eval_tokens, window)
    # Windows: inputs data[s:s+w], targets data[s+1:s+w+1]; batches of one window length.
    by_length: dict[int, list[int]] = {}
    for length, start in starts:
        by_length.setdefault(length, []).append(start)
    per_batch = settings["batch"]
    batches = [(length, group[i:i + per_batch])
               for length, group in sorted(by_length.items()) for i in range(0, len(group), per_batch)]
    guarded = {round(k * (len(batches) - 1) / max(1, GUARD_BATCHES - 1)) for k in range(GUARD_BATCHES)}
    expected = len(starts) and sum(length for length, _ in starts)
    total_nll, counted, scored_bytes = 0.0, 0, 0
    # Bytes: float64 log-probabilities; tokens (vocabulary 50k): float32, summed in float64.
    logit_dtype = torch.float64 if not tokens else torch.float32
    with torch.no_grad():
        for b, (length, batch) in enumerate(batches):
            x = torch.stack([data[s:s + length] for s in batch]).to(device)
            y = torch.stack([data[s + 1:s + length + 1] for s in batch]).to(device)
            logits = logits_of(model, x)
            if tuple(logits.shape) != (len(batch), length, vocab):
                fail(f"model returned logits of shape {tuple(logits.shape)}, expected {(len(batch), length, vocab)}")
            # Before the causality guard: NaN logits fail every comparison, which would
            # blame causality for a model that simply diverged.
            if not bool(torch.isfinite(logits).all()):
                diverged("the model's logits hold NaN or infinite values")
            if b in guarded and length > 1:
                check_causal(model, x, logits, b, GUARD_TOLERANCE[device])
            logp = LOG_SOFTMAX(logits.to(logit_dtype), dim=-1)
            nll = -GATHER(logp, -1, y.unsqueeze(-1)).squeeze(-1)
            total_nll += nll.to(torch.float64).sum().item()
            counted += y.numel()
            if token_bytes is not None:
                scored_bytes += int(token_bytes[y.cpu()].sum())
    if counted != expected:
        fail(f"internal error: scored {counted} positions, expected {expected}")
    val_loss = total_nll / counted
    if not math.isfinite(val_loss):
        diverged(f"non-finite validation loss {val_loss}")
    # Bits per byte: for bytes, the loss in bits; for tokens, all the bits over all the bytes.
    val_bpb = val_loss / LN2 if token_bytes is None else total_nll / LN2 / scored_bytes

    result = {
        "val_loss": val_loss,
        "val_bpb": val_bpb,
        "eval_tokens": counted,
        "eval_bytes": counted if token_bytes is None else scored_bytes,
        "eval_profile": profile,
        "eval_device": device,
        "train_seconds": ckpt.get("train_seconds"),
        "tokens_seen": ckpt.get("tokens_seen"),
        "steps": ckpt.get("steps"),
        # How val_bpb follows from the loss: the runner checks it (a rewritten metric breaks it).
        "checks": [{"value": "val_bpb", "factor": 1 / LN2,
                    "product_of": {"val_loss": 1} if token_bytes is None
                    else {"val_loss": 1, "eval_tokens": 1, "eval_bytes": -1}}],
    }
    unit = "nats/byte" if token_bytes is None else "nats/token"
    print(f"val_loss {val_loss:.4f} {unit} | val_bpb {val_bpb:.4f} | "
          f"{counted} tokens on {device} in {time.time() - t0:.1f}s -> "
          f"{result_path if channel is None else 'the result channel'}", flush=True)
    report(result, result_path, channel)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as exc:  # any failure: clear message, no result, non-zero exit
        fail(f"{type(exc).__name__}: {exc}")
