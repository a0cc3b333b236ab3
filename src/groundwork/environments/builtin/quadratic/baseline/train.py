"""Gradient descent on a fixed quadratic; the knobs below are what ideas change."""

import json
import os

lr = 1e-2  # peak learning rate
warmup = 10  # steps of linear warmup

CURVATURES = [1.0, 0.1, 0.01]  # ill-conditioned: a small lr leaves the flat directions unsolved
TARGET = [3.0, 3.0, 3.0]

if __name__ == "__main__":
    steps = int(os.environ.get("GROUNDWORK_COMPUTE_STEPS", "100"))  # the profile's compute budget
    w = [0.0, 0.0, 0.0]
    out = os.environ.get("GROUNDWORK_OUT_DIR", "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "train_log.jsonl"), "w") as log:
        for step in range(steps):
            rate = lr * min(1.0, (step + 1) / warmup) if warmup > 0 else lr
            w = [wi - rate * h * (wi - t) for wi, h, t in zip(w, CURVATURES, TARGET, strict=True)]
            if any(abs(wi) > 1e6 for wi in w):
                break  # diverged; the evaluation scores the weights it reached
            if step % 20 == 0:
                log.write(json.dumps({"step": step, "w": w}) + "\n")
    with open(os.path.join(out, "weights.json"), "w") as fh:
        json.dump(w, fh)
