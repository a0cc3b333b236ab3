"""Training throughput and model-FLOPs utilisation of nanogpt's train.py at other knob settings.

    python benchmarks/nanogpt_shapes.py [--profile small] [--seconds 30] [--out FILE]
                                        [--shape n_layer=6,n_embd=768,n_head=6 ...]

Each `--shape` is one candidate: train.py's knobs as NAME=VALUE pairs (Python literals),
set over the profile's preset. Without `--shape` the profile's own preset runs, then a few
wider and shallower ones that usually use a GPU's matrix units better. Every candidate runs
the real training loop of train.py (data loading, optimizer, `torch.compile` warmed up
before the clock, as in a job) in its own process for `--seconds` on the profile's
prepared data, and the figures come from the checkpoint it saves, as in
`gpu_environments.py`: tokens/s over the timed window and model-FLOPs utilisation against
the GPU's dense bf16 peak. No evaluation runs: this measures speed, not loss.

Use it to choose a profile's preset before changing it; `gpu_environments.py` then measures
the whole job (training under the full budget, the locked evaluation).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_environments import device_description, nanogpt_throughput

from groundwork.environments import load_environment
from groundwork.implementation.knob_implementer import knobs_of

# Candidates tried after the profile's own preset when none are named: wider matrices and
# 128-wide attention heads keep the tensor cores busier than the 512-wide preset does.
DEFAULT_SHAPES = {
    "small": [
        "",  # the preset itself: 8 layers, 512 wide, 64-wide heads
        "n_layer=6,n_embd=768,n_head=6",
        "n_layer=8,n_embd=768,n_head=6",
        "n_layer=8,n_embd=1024,n_head=8",
        "n_layer=12,n_embd=768,n_head=12",  # GPT-2 124M on one GPU: the usual reference point
    ],
}


def parse_shape(text: str) -> dict[str, object]:
    """'n_layer=6,n_embd=768' -> {'n_layer': 6, 'n_embd': 768}; a clear error for anything else."""
    knobs: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--shape {text!r}: {item!r} is not NAME=VALUE (e.g. n_layer=6,n_embd=768)")
        try:
            knobs[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"--shape {text!r}: {value.strip()!r} is not a Python literal") from None
    return knobs


def load_train_module(path: Path):
    spec = importlib.util.spec_from_file_location("train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the profile's preset is applied here, from its environment variables
    return module


def train_once(train_py: Path, knobs: dict[str, object], out_dir: Path) -> None:
    """In this process: train.py's main() with `knobs` set over its preset."""
    unknown = sorted(set(knobs) - set(knobs_of(train_py.parent, [train_py.name])))
    if unknown:
        raise SystemExit(f"nanogpt_shapes: train.py has no knob {', '.join(unknown)}")
    train = load_train_module(train_py)
    for name, value in knobs.items():
        setattr(train, name, value)
    train.OUT_DIR = str(out_dir)
    train.main()


def measure(train_py: Path, env: dict[str, str], shape: str, seconds: float, work: Path, peak) -> dict:
    """One candidate in its own process (a fresh GPU context and compilation); its figures."""
    out_dir = Path(tempfile.mkdtemp(prefix="shape-", dir=work))
    command = [sys.executable, __file__, "--child", str(train_py), "--child-out", str(out_dir), "--shape", shape]
    child_env = {**os.environ, **env, "GROUNDWORK_TIME_BUDGET_S": str(seconds), "PYTHONUNBUFFERED": "1"}
    result = {"shape": shape or "(preset)", "knobs": parse_shape(shape)}
    started = time.time()
    try:  # compilation comes on top of the timed window
        proc = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=seconds + 900)
    except subprocess.TimeoutExpired as exc:
        return {**result, "failure": f"no checkpoint after {exc.timeout:g}s"}
    result["wall_s"] = round(time.time() - started, 2)
    if proc.returncode != 0 or not (out_dir / "ckpt.pt").is_file():
        result["failure"] = f"exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-1500:]}"
        return result
    result.update(nanogpt_throughput(out_dir / "ckpt.pt", peak))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small", help="nanogpt profile whose preset, data and settings to use")
    parser.add_argument("--shape", action="append", default=None, help="knobs as NAME=VALUE,... (repeatable)")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed training window per candidate")
    parser.add_argument("--out", type=Path, default=Path("nanogpt_shapes.json"), help="JSON file to write")
    parser.add_argument("--work", type=Path, default=None, help="folder for the checkpoints (default: temporary)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: train one candidate here
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        train_once(args.child, parse_shape((args.shape or [""])[0]), args.child_out)
        return 0

    shapes = args.shape if args.shape is not None else DEFAULT_SHAPES.get(args.profile, [""])
    try:
        for shape in shapes:
            parse_shape(shape)
    except ValueError as exc:
        parser.error(str(exc))
    env = load_environment("nanogpt").for_profile(args.profile)
    profile = env.profile()
    print(f"== nanogpt ({args.profile}): preparing data in {env.data_dir(profile)}", flush=True)
    data = env.prepare(profile)
    device, gpus, peak = device_description()
    work = args.work or Path(tempfile.mkdtemp(prefix="groundwork-shapes-"))
    work.mkdir(parents=True, exist_ok=True)
    # One process, one GPU: a multi-GPU profile (full) is measured per GPU.
    job_env = {
        **profile.env,
        "GROUNDWORK_DATA_DIR": str(env.training_data_dir(data)),
        "GROUNDWORK_SEED": "0",
        "GROUNDWORK_NPROC": "1",
    }
    job_env.setdefault("GROUNDWORK_NUM_THREADS", "1" if gpus == 0 else "4")
    results = []
    for shape in shapes:
        print(f"== {shape or '(preset)'}: {args.seconds:g}s of training", flush=True)
        results.append(measure(env.codebase_dir / "train.py", job_env, shape, args.seconds, work, peak))
        print(json.dumps(results[-1]), flush=True)
    report = {
        "device": device,
        "gpus": gpus,
        "profile": args.profile,
        "seconds_per_candidate": args.seconds,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any("failure" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
