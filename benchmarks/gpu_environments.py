"""Run the built-in environments' `small` profiles on the GPU present and write JSON.

    python benchmarks/gpu_environments.py [--profile small] [--envs nanogpt grpo] [--out FILE]
                                          [--env-profile grpo=math-smoke ...] [--time-budget S]

For each environment: prepare its data (with progress; downloads only where the profile
needs them), run the unmodified baseline once through the real job runner (training under
the profile's budget, then the locked evaluation) and record the wall time and the metric.
For nanogpt also the training throughput in tokens/s over the timed window (compile
warm-up excluded: train.py starts its clock after it) and the model-FLOPs utilisation
against the GPU's dense bf16 peak (the estimate of the PaLM paper, as nanoGPT computes it:
6 x non-embedding parameters + 12 x layers x width x context FLOPs per token).
For grpo's math codebase (small, full, math-smoke): GRPO steps, rollouts/s and sampled
tokens/s over the rollout phases (from train.py's train_log.jsonl).
`--env-profile ENV=PROFILE` runs one environment at another profile than `--profile`
(grpo's CPU check of the math codebase is `math-smoke`, nanogpt's is `smoke`).
An environment without the profile is reported as skipped, not silently left out.
`--time-budget S` trains S seconds instead of each profile's budget (throughput settles
within a minute; the metric then is not the profile's): each result records the budget it
ran under and the profile's own.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from groundwork.environments import load_environment
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.runner import JobRunner

# Dense bf16 tensor-core peaks in FLOP/s, matched against torch.cuda.get_device_name().
BF16_PEAK_FLOPS = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
]


def device_description() -> tuple[str, int, float | None]:
    """(device name, GPU count, bf16 peak FLOP/s per GPU or None when unknown)."""
    try:
        import torch

        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            peak = next((flops for key, flops in BF16_PEAK_FLOPS if key in name), None)
            return name, torch.cuda.device_count(), peak
    except ImportError:
        pass
    return f"cpu ({platform.processor() or platform.machine()})", 0, None


def flops_per_token(model_args: dict, n_params: int) -> float:
    """Training FLOPs per token: 6 N (N without the position embedding) + 12 L d T (attention)."""
    non_embedding = n_params - model_args["block_size"] * model_args["n_embd"]
    return 6 * non_embedding + 12 * model_args["n_layer"] * model_args["n_embd"] * model_args["block_size"]


def nanogpt_throughput(checkpoint: Path, peak: float | None) -> dict:
    """Tokens/s over train.py's timed window and model-FLOPs utilisation, from the checkpoint it saved."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    args = ckpt["model_args"]
    n_params = sum(t.numel() for k, t in ckpt["state_dict"].items() if k != "lm_head.weight" or not args["tie_weights"])
    tokens_per_s = ckpt["tokens_seen"] / ckpt["train_seconds"]
    per_token = flops_per_token(args, n_params)
    ranks = max(1, int(ckpt.get("world_size", 1)))
    mfu = per_token * tokens_per_s / (peak * ranks) if peak else None
    return {
        "model_args": args,
        "tokens_per_s": round(tokens_per_s, 1),
        "tokens_seen": ckpt["tokens_seen"],
        "train_seconds": round(ckpt["train_seconds"], 3),
        "parameters": n_params,
        "flops_per_token": per_token,
        "bf16_peak_flops_per_gpu": peak,
        "ranks": ranks,
        "mfu": round(mfu, 4) if mfu is not None else None,
    }


def grpo_rollouts(work: Path) -> dict | None:
    """Steps and sampling throughput of a math-codebase run, from its train_log.jsonl."""
    path = work / "out" / "train_log.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    steps = [r for r in rows if "rollout_s" in r]
    if not steps:
        return None  # the tiny codebase logs no rollout timings
    seconds = sum(r["rollout_s"] for r in steps)
    rollouts = round(sum(r["rollouts"] for r in steps))
    tokens = round(sum(r["sample_tokens"] for r in steps))
    return {
        "steps": max(r["step"] for r in rows),
        "rollouts": rollouts,
        "sample_tokens": tokens,
        "rollout_seconds": round(seconds, 3),
        "rollouts_per_s": round(rollouts / seconds, 2) if seconds else None,
        "sample_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "train_seconds": max(r.get("elapsed_s", 0.0) for r in rows),
    }


def run_profile(
    name: str, profile_name: str, work_root: Path, gpus: int, peak: float | None, time_budget_s: float | None = None
) -> dict:
    env = load_environment(name)
    if profile_name not in env.manifest.profiles:
        return {"environment": name, "profile": profile_name, "skipped": f"{name} has no {profile_name!r} profile"}
    env = env.for_profile(profile_name)
    profile = env.profile()
    print(f"== {name} ({profile_name}): preparing data in {env.data_dir(profile)}", flush=True)
    prepare_started = time.time()
    try:
        data = env.prepare(profile)
    except RuntimeError as exc:  # reported like a failed job, so the other environments still run
        return {"environment": name, "profile": profile_name, "failure": "prepare", "detail": str(exc)[-2000:]}
    prepare_s = round(time.time() - prepare_started, 2)
    job_dir = work_root / name
    job_dir.mkdir(parents=True)
    m = env.manifest
    spec = environment_job_spec(
        env,
        profile,
        data,
        job_dir,
        job_id=f"bench-{name}",
        seed=0,
        threads=1 if gpus == 0 else 4,
        gpu_ids=range(min(gpus, profile.resources.gpus)),
        time_budget_s=time_budget_s,
    )
    print(f"== {name} ({profile_name}): training {spec.time_budget_s:g}s, then the locked evaluation", flush=True)
    started = time.time()
    outcome = JobRunner(spec).run()
    report = {
        "environment": name,
        "profile": profile_name,
        "time_budget_s": spec.time_budget_s,
        "profile_time_budget_s": profile.time_budget_s,
        "prepare_s": prepare_s,
        "wall_s": round(time.time() - started, 2),
        "train_wall_s": outcome.flags.get("train_seconds"),
        "failure": outcome.failure.value if outcome.failure else None,
        "sandbox": outcome.flags.get("sandbox"),  # "bwrap" where the job ran sandboxed (GPUs included)
        "detail": outcome.detail[-2000:] if outcome.failure else "",
        "metric": {m.metric.name: outcome.metric},
        "metrics": outcome.metrics,
        "job_log": str(job_dir / "job.log"),
    }
    if name == "nanogpt" and outcome.failure is None:
        report["training"] = nanogpt_throughput(job_dir / "work" / "out" / "ckpt.pt", peak)
    if name == "grpo" and outcome.failure is None:
        report["training"] = grpo_rollouts(job_dir / "work")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small", help="profile to run (default: small)")
    parser.add_argument("--envs", nargs="+", default=["nanogpt", "grpo"], help="environments to run")
    parser.add_argument("--out", type=Path, default=Path("gpu_environments.json"), help="JSON file to write")
    parser.add_argument("--work", type=Path, default=None, help="folder for the jobs (default: a temporary one)")
    parser.add_argument(
        "--env-profile",
        action="append",
        default=[],
        metavar="ENV=PROFILE",
        help="run ENV at PROFILE instead of --profile (repeatable)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="train this long instead of each profile's budget (recorded in the JSON)",
    )
    args = parser.parse_args(argv)
    if args.time_budget is not None and args.time_budget <= 0:
        parser.error(f"--time-budget {args.time_budget:g}: give a positive number of seconds")
    chosen = {}
    for item in args.env_profile:
        name, sep, profile = item.partition("=")
        if not sep or not name or not profile:
            parser.error(f"--env-profile {item!r}: write ENV=PROFILE, e.g. grpo=math-smoke")
        chosen[name] = profile

    device, gpus, peak = device_description()
    work = args.work or Path(tempfile.mkdtemp(prefix="groundwork-bench-"))
    started = time.time()
    report = {
        "device": device,
        "gpus": gpus,
        "python": sys.version.split()[0],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": None,
        "results": [],
    }
    results = report["results"]
    for name in args.envs:
        results.append(run_profile(name, chosen.get(name, args.profile), work, gpus, peak, args.time_budget))
        report["wall_s"] = round(time.time() - started, 2)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # after each: a run cut short keeps what it measured
    print(json.dumps(report, indent=2))
    failed = [r["environment"] for r in results if r.get("failure")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
