"""The files `env init` drafts without a model: a data split that works for any file of
lines or bytes, and a locked evaluation that already loads the checkpoint the way the
training script saves it and leaves only the scoring to write."""

from __future__ import annotations

from pathlib import Path

from groundwork.environments.inference import Checkpoint

HELD_OUT_SHARE = 0.1


def split_names(data_file: str) -> tuple[str, str]:
    """(training part, held-out part) file names for a root data file."""
    path = Path(data_file)
    return f"train{path.suffix}", f"heldout{path.suffix}"


def prepare_split(data_file: str) -> str:
    train, held_out = split_names(data_file)
    return f'''"""Locked, drafted by `groundwork env init`: split {data_file} into DIR/{train} (the first
{1 - HELD_OUT_SHARE:.0%}) and DIR/{held_out} (the rest, cut at a line break), with their sha256 in
DIR/split.json. Training sees only {train}; the evaluation alone reads {held_out}.
Idempotent: a complete DIR is left alone."""
import argparse
import hashlib
import json
import os

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), {data_file!r})
PARTS = ({train!r}, {held_out!r})
HELD_OUT_SHARE = {HELD_OUT_SHARE!r}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check(out):
    try:
        with open(os.path.join(out, "split.json")) as f:
            expected = json.load(f)["sha256"]
        return all(sha256(os.path.join(out, name)) == expected[name] for name in PARTS)
    except (OSError, ValueError, KeyError):
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    if check(out):
        print(f"already prepared: {{out}}")
        return
    with open(SOURCE, "rb") as f:
        data = f.read()
    cut = int(len(data) * (1 - HELD_OUT_SHARE))
    newline = data.find(b"\\n", cut)
    cut = newline + 1 if 0 <= newline < len(data) - 1 else cut
    os.makedirs(out, exist_ok=True)
    for name, part in zip(PARTS, (data[:cut], data[cut:])):
        with open(os.path.join(out, name), "wb") as f:
            f.write(part)
    with open(os.path.join(out, "split.json"), "w") as f:
        json.dump({{"source": {data_file!r}, "sha256": {{n: sha256(os.path.join(out, n)) for n in PARTS}}}}, f)
    print(f"split {{len(data)}} bytes of {data_file} into {{out}}: {{cut}} for training, {{len(data) - cut}} held out")


if __name__ == "__main__":
    main()
'''


def _load_state(checkpoint: Checkpoint) -> str:
    if checkpoint.kind == "state_dict":
        pick = f"    state = state[{checkpoint.key!r}]  # the training script saves the state dict under this key\n"
        return (
            "    # The training script saves a state dict with torch.save: weights only, no code runs.\n"
            '    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)\n'
            + (pick if checkpoint.key else "")
            + "    return state\n"
        )
    if checkpoint.kind == "object":
        return (
            "    # The training script pickles a whole object with torch.save; loading it runs its code.\n"
            '    return torch.load(CHECKPOINT, map_location="cpu", weights_only=False)\n'
        )
    return (
        "    # How the training script saves its model was not recognised: load it here.\n"
        '    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)\n'
    )


def evaluation(train_script: str, checkpoint: Checkpoint, metric: str, held_out: str | None) -> str:
    filename = checkpoint.filename or "model.pt"
    module = Path(train_script).stem
    data = f"os.path.join(os.environ['GROUNDWORK_DATA_DIR'], {held_out!r})" if held_out else "None"
    return f'''"""Locked evaluation, drafted by `groundwork env init`: loads the checkpoint {train_script}
saves and writes {metric!r} to GROUNDWORK_RESULT_PATH. Write `score()`: rebuild the model with
{train_script}'s own code, load the state, and return {metric} on the held-out data."""
import os
import sys

# Nothing in the working folder may stand in for a module this file imports.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKPOINT = os.path.join(os.environ.get("GROUNDWORK_OUT_DIR", "out"), {filename!r})
HELD_OUT = {data}


def training_module():
    """{train_script} as a module (its __main__ guard keeps it from training)."""
    spec = importlib.util.spec_from_file_location({module!r}, os.path.join(HERE, {train_script!r}))
    module = importlib.util.module_from_spec(spec)
    sys.path.append(HERE)  # its own helpers resolve, last
    spec.loader.exec_module(module)
    return module


def load_checkpoint():
{_load_state(checkpoint)}

def score(train, state, held_out_path):
    """{metric} of the trained model on the held-out data (a finite number)."""
    raise NotImplementedError(
        "groundwork_eval.py: write score(): build the model with {train_script}'s code, "
        "load_state_dict(state), and return {metric} on held_out_path"
    )


def main():
    value = float(score(training_module(), load_checkpoint(), HELD_OUT))
    if not math.isfinite(value):
        sys.exit(f"groundwork_eval.py: non-finite {metric} {{value}}")
    path = os.environ.get("GROUNDWORK_RESULT_PATH", "result.json")
    with open(path + ".tmp", "w") as f:
        json.dump({{{metric!r}: value}}, f)
    os.replace(path + ".tmp", path)
    print(f"{metric} {{value:.5f}}")


if __name__ == "__main__":
    main()
'''
