"""Locked evaluation for the quadratic environment (hidden from ideators; never edited).

Run after train.py, in the same folder:  python evaluate.py

It reads GROUNDWORK_OUT_DIR/weights.json, plain numbers (train.py is never imported), and
scores the quadratic's loss there: sum of 0.5 * curvature * (w - target)^2, the curvatures
and targets fixed here. Sent to the job runner on the result channel (GROUNDWORK_RESULT_FD),
or, run by hand without one, written atomically to GROUNDWORK_RESULT_PATH:
  loss     the metric (lower is better)
  weights  the three weights scored
Weights that are not three finite numbers send nothing: the exit status is non-zero, with
the reason on stderr.
"""
import os
import sys

# Import nothing from the working folder by name (train.py could have left a json.py there).
if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import json  # noqa: E402
import math  # noqa: E402

CURVATURES = (1.0, 0.1, 0.01)
TARGET = (3.0, 3.0, 3.0)
MAX_BYTES = 1 << 16
CHANNEL_OPENING = b"groundwork-result-channel 1\n"
CHANNEL_TAMPERED = 3
WRITE, FSTAT, EXIT = os.write, os.fstat, os._exit


def fail(message: str) -> None:
    print(f"evaluate.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def read_weights(path: str) -> list[float]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        fail(f"cannot read the weights {path}: {exc}")
    if len(data) > MAX_BYTES:
        fail(f"{path} is larger than {MAX_BYTES} bytes")
    try:
        weights = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{path} is not JSON: {exc}")
    if type(weights) is not list or len(weights) != len(TARGET):
        fail(f"{path} must hold a list of {len(TARGET)} numbers, got {str(weights)[:80]}")
    for i, w in enumerate(weights):
        if type(w) not in (int, float) or not math.isfinite(w):
            fail(f"weight {i} is {w!r}, not a finite number")
    return [float(w) for w in weights]


def open_channel():
    value = os.environ.get("GROUNDWORK_RESULT_FD", "")
    if not value:
        return None
    try:
        fd = int(value)
        stat = FSTAT(fd)
        WRITE(fd, CHANNEL_OPENING)
    except (ValueError, OSError) as exc:
        fail(f"GROUNDWORK_RESULT_FD={value!r} is not an open pipe to write the result to: {exc}")
    return fd, (stat.st_dev, stat.st_ino)


def report(result: dict, channel) -> None:
    if channel is None:
        path = os.environ.get("GROUNDWORK_RESULT_PATH", "result.json")
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, path)
        return
    fd, identity = channel
    message = (json.dumps(result) + "\n").encode("ascii")
    try:
        if (FSTAT(fd).st_dev, FSTAT(fd).st_ino) != identity:
            raise OSError("it is no longer the pipe the runner gave")
        while message:
            message = message[WRITE(fd, message):]
    except OSError as exc:
        print(f"evaluate.py: error: the result channel was tampered with: {exc}", file=sys.stderr, flush=True)
        EXIT(CHANNEL_TAMPERED)
    EXIT(0)  # nothing train.py left behind runs after the result is sent


def main() -> None:
    channel = open_channel()  # before anything else runs
    weights = read_weights(os.path.join(os.environ.get("GROUNDWORK_OUT_DIR", "out"), "weights.json"))
    loss = math.fsum(0.5 * h * (w - t) ** 2 for w, h, t in zip(weights, CURVATURES, TARGET, strict=True))
    print(f"loss {loss:.6g} at weights {weights}", flush=True)
    report({"loss": loss, "weights": weights}, channel)


if __name__ == "__main__":
    main()
