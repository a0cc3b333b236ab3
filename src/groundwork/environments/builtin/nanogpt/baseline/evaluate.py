"""Locked evaluation for the nanogpt environment (hidden from ideators; never edited by ideas).

Run after training, in the same folder as train.py:  python evaluate.py

It rebuilds the model through the (possibly edited) `train.build_model`, loads the
checkpoint strictly, and measures the mean next-byte cross-entropy on a FIXED slice of
val.bin: GROUNDWORK_EVAL_TOKENS bytes to predict, taken as segments of 1024 bytes spread
evenly over the whole file (so the score covers many source files, not the first one),
each cut into consecutive non-overlapping windows of the model's context length (at most
1024). Every model is scored on exactly the same bytes. The loss is computed here with an
explicit float64 log_softmax + gather, so no function that train.py could change enters
the metric. The result is written atomically; on any error nothing is written and the exit
status is non-zero.

Environment: GROUNDWORK_DATA_DIR (required), GROUNDWORK_OUT_DIR (default "out"),
GROUNDWORK_RESULT_PATH (default "result.json"), GROUNDWORK_EVAL_TOKENS (default 65536),
GROUNDWORK_NUM_THREADS (default 1).
"""
import json
import math
import os
import sys
import time
from typing import NoReturn

import torch

MAX_WINDOW = 1024
SEGMENT = 1024  # bytes predicted per evaluation segment
WINDOWS_PER_BATCH = 32
# Bound before train.py is imported, so an edited train.py cannot swap the functions that
# compute the metric by reassigning torch attributes at import time.
LOG_SOFTMAX, GATHER = torch.log_softmax, torch.gather


def fail(message: str) -> NoReturn:
    print(f"evaluate.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    data_dir = os.environ.get("GROUNDWORK_DATA_DIR", "")
    out_dir = os.environ.get("GROUNDWORK_OUT_DIR", "out")
    result_path = os.environ.get("GROUNDWORK_RESULT_PATH", "result.json")
    eval_tokens = int(os.environ.get("GROUNDWORK_EVAL_TOKENS", "65536"))
    torch.set_num_threads(int(os.environ.get("GROUNDWORK_NUM_THREADS", "1")))
    if eval_tokens < 1:
        fail(f"GROUNDWORK_EVAL_TOKENS must be positive, got {eval_tokens}")
    val_path = os.path.join(data_dir, "val.bin")
    if not data_dir or not os.path.isfile(val_path):
        fail(f"GROUNDWORK_DATA_DIR must name a folder with val.bin (got {data_dir!r})")
    ckpt_path = os.path.join(out_dir, "ckpt.pt")
    if not os.path.isfile(ckpt_path):
        fail(f"no checkpoint at {ckpt_path}: did training finish?")

    t0 = time.time()
    # The edited training file defines the architecture; importing it must not train.
    sys.path.insert(0, os.getcwd())
    try:
        import train  # noqa: E402
    except SystemExit as exc:
        fail(f"importing train.py called sys.exit({exc.code}); it must only define things")

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model_args = ckpt["model_args"]
    model = train.build_model(model_args)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model = model.float().eval()

    with open(val_path, "rb") as f:
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    if len(data) < SEGMENT + 1:
        fail(f"{val_path} holds fewer than {SEGMENT + 1} bytes")
    segments = max(1, math.ceil(eval_tokens / SEGMENT))
    span = len(data) - (SEGMENT + 1)  # last possible segment start
    seg_starts = [span * k // max(1, segments - 1) for k in range(segments)] if segments > 1 else [0]
    window = min(int(model_args.get("block_size", 128)), MAX_WINDOW)

    # Causality guard: changing the second half of a window must not move the first half's
    # logits, or the model would be reading the bytes it is asked to predict.
    with torch.no_grad():
        probe = data[:window].unsqueeze(0)
        half = probe.size(1) // 2
        if half > 0:
            altered = probe.clone()
            altered[:, half:] = (altered[:, half:] + 1) % 256
            before, after = model(probe), model(altered)
            before, after = (t[0] if isinstance(t, (tuple, list)) else t for t in (before, after))
            if not torch.allclose(before[:, :half], after[:, :half], rtol=1e-4, atol=1e-4):
                fail("model is not causal: logits at a position depend on later bytes")

    # Windows: inputs data[s:s+w], targets data[s+1:s+w+1]; never crossing a segment's end.
    by_length: dict[int, list[int]] = {}
    for seg in seg_starts:
        for offset in range(0, SEGMENT, window):
            length = min(window, SEGMENT - offset)
            by_length.setdefault(length, []).append(seg + offset)
    expected = segments * SEGMENT
    total_nll, counted = 0.0, 0
    with torch.no_grad():
        for length, starts in sorted(by_length.items()):
            for i in range(0, len(starts), WINDOWS_PER_BATCH):
                batch = starts[i:i + WINDOWS_PER_BATCH]
                x = torch.stack([data[s:s + length] for s in batch])
                y = torch.stack([data[s + 1:s + length + 1] for s in batch])
                logits = model(x)
                if isinstance(logits, (tuple, list)):
                    logits = logits[0]
                if tuple(logits.shape) != (len(batch), length, 256):
                    fail(f"model returned logits of shape {tuple(logits.shape)}, expected {(len(batch), length, 256)}")
                logp = LOG_SOFTMAX(logits.to(torch.float64), dim=-1)
                nll = -GATHER(logp, -1, y.unsqueeze(-1)).squeeze(-1)
                total_nll += nll.sum().item()
                counted += y.numel()
    if counted != expected:
        fail(f"internal error: scored {counted} positions, expected {expected}")
    val_loss = total_nll / counted
    if not math.isfinite(val_loss):
        fail(f"non-finite validation loss {val_loss}")

    result = {
        "val_loss": val_loss,
        "val_bpb": val_loss / math.log(2),
        "eval_tokens": counted,
        "train_seconds": ckpt.get("train_seconds"),
        "tokens_seen": ckpt.get("tokens_seen"),
        "steps": ckpt.get("steps"),
    }
    tmp = f"{result_path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, result_path)
    print(f"val_loss {val_loss:.4f} nats/byte | val_bpb {result['val_bpb']:.4f} | "
          f"{counted} tokens in {time.time() - t0:.1f}s -> {result_path}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as exc:  # any failure: clear message, no result, non-zero exit
        fail(f"{type(exc).__name__}: {exc}")
