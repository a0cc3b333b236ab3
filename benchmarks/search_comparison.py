#!/usr/bin/env python3
"""Evolutionary search against best-of-N at an equal number of executed ideas.

For each ideator (the offline catalog, and the recorded model answers replayed with
`replay:nanogpt-tiny`), each strategy and each seed, a full research run is made on the
given environment (nanogpt tiny by default). The baseline's noise floor is measured once
first (`--noise-seeds` runs), so verdicts and the exploit pool are noise-aware. The table
(JSON) holds every run's best-so-far curve over executed ideas and, per ideator and
strategy, the best gain over the baseline at the common number of executed ideas; the plot
shows the curves.

    .venv/bin/python benchmarks/search_comparison.py            # the committed run (~25 min on 2 CPU cores)
    .venv/bin/python benchmarks/search_comparison.py --full     # more seeds, epochs and ideas

Runs are kept under --runs-dir; running the command again reuses finished runs and
resumes unfinished ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from groundwork.analysis.summary import load_noise_floor, save_noise_floor, summarize  # noqa: E402
from groundwork.config import RunConfig  # noqa: E402
from groundwork.environments import load_environment  # noqa: E402
from groundwork.loop import ResearchLoop  # noqa: E402
from groundwork.records import PromptKind  # noqa: E402
from groundwork.runs import create_run  # noqa: E402
from groundwork.search.budget import active_hours  # noqa: E402
from groundwork.search.stats import Estimate  # noqa: E402
from groundwork.store import RunStore  # noqa: E402

HERE = Path(__file__).resolve().parent
SETTINGS = {  # ideas per run = epochs x ideas per epoch, the same for both strategies
    "default": {"seeds": [0, 1, 2], "catalog": (2, 3), "replay": (2, 4), "noise_seeds": 3},
    "full": {"seeds": [0, 1, 2, 3, 4], "catalog": (4, 4), "replay": (2, 4), "noise_seeds": 5},
}
REPLAY = "replay:nanogpt-tiny"  # the recording holds two epochs of four ideas
NOTES = [
    "Gains are against each run's own baseline. Training is time-budgeted, so on a shared CPU a busy machine "
    "trains fewer steps: compare baselines_across_runs with noise_floor (measured once, at one load).",
    "Executed ideas count every idea with a result, failures (timed_out, crashed) included; the table compares "
    "strategies after the fewest executed ideas of any run with that ideator.",
    "The replayed recording holds the answers of one evolution run (epoch 1: simple; epoch 2: exploit and "
    "explore). A request it lacks is answered with an unused answer of the same epoch: replayed best-of-N's "
    "epoch-2 prompt gets the recorded exploit ideas. The replay rows exercise both strategies on model-written "
    "ideas and diffs offline; they are not a fair control. The catalog rows are.",
]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="nanogpt")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--full", action="store_true", help="larger settings: 5 seeds, 4 epochs x 4 catalog ideas")
    ap.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    ap.add_argument("--ideators", nargs="+", default=["catalog", REPLAY])
    ap.add_argument("--strategies", nargs="+", default=["evolution", "best-of-n"])
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--confirm-seeds", type=int, default=0, help="re-runs of the top idea (0: off)")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/search-comparison"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "search_comparison")
    return ap.parse_args()


def measure_noise(args: argparse.Namespace, name: str, seeds: int, console: Console) -> dict:
    """The baseline over `seeds` seeds, stored as the environment's noise floor (the runs
    that follow use it); a finished measurement in --runs-dir is reused."""
    config = RunConfig(environment=args.env, profile=args.profile, epochs=0, baseline_seeds=seeds, slots=args.slots)
    store = _run_or_resume(config, args.runs_dir, "noise-floor", console)
    save_noise_floor(summarize(store))
    floor = load_noise_floor(name, args.profile) or {}
    return {**floor, "seconds": round(active_hours(store.events()) * 3600, 1)}


def _run_or_resume(config: RunConfig, runs_dir: Path, name: str, console: Console) -> RunStore:
    run_dir = runs_dir / name
    store = RunStore(run_dir) if (run_dir / "store.sqlite").is_file() else create_run(config, runs_dir, name)
    if store.run_info()["status"] != "finished":
        loop = ResearchLoop(store)
        loop.data_dir = loop.env.prepare(loop.profile, quiet=True)
        loop.run()
    return store


def curve(store: RunStore, direction: str) -> dict:
    """Best-so-far metric and gain over the baseline, after each executed idea (in the order
    results arrived); an idea counts as executed when it has a result (failures included)."""
    results = store.results()
    ideas = [i for i in store.ideas() if i.prompt_kind not in (PromptKind.BASELINE, PromptKind.CONFIRM)]
    executed = sorted((results[i.id].created_at, i) for i in ideas if i.id in results)
    sign = 1.0 if direction == "minimize" else -1.0
    baseline = results["baseline"].metric
    best, best_so_far, gains, metrics, kinds = None, [], [], [], []
    for _, idea in executed:
        metric = results[idea.id].metric if results[idea.id].valid else None
        metrics.append(metric)
        kinds.append(str(idea.prompt_kind))
        if metric is not None and (best is None or sign * metric < sign * best):
            best = metric
        best_so_far.append(best)
        gains.append(None if best is None or baseline is None else sign * (baseline - best))
    return {"baseline": baseline, "metrics": metrics, "kinds": kinds, "best_so_far": best_so_far, "gain": gains}


def main() -> int:
    args = parse_args()
    console = Console()
    settings = SETTINGS["full" if args.full else "default"]
    seeds = args.seeds or settings["seeds"]
    env = load_environment(args.env)
    profile = env.profile(args.profile)
    env.prepare(profile)
    started = time.time()
    noise = measure_noise(args, env.name, settings["noise_seeds"], console)
    console.print(f"noise floor: {noise.get('mean', float('nan')):.4f} +- {noise.get('std', float('nan')):.4f}")
    plan = [(ideator, strategy, seed) for ideator in args.ideators for strategy in args.strategies for seed in seeds]
    runs = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("runs", total=len(plan))
        for ideator, strategy, seed in plan:
            tag = "catalog" if ideator == "catalog" else "replay"
            epochs, per_epoch = settings[tag] if tag in settings else settings["catalog"]
            name = f"{tag}-{strategy}-s{seed}-{epochs}x{per_epoch}"
            progress.update(task, description=name)
            config = RunConfig(
                environment=args.env,
                profile=args.profile,
                search=strategy,
                ideator_llm=ideator,
                epochs=epochs,
                ideas_per_epoch=per_epoch,
                slots=args.slots,
                seed=seed,
                confirm_seeds=args.confirm_seeds,
                confirm_top=1,
            )
            try:
                store = _run_or_resume(config, args.runs_dir, name, console)
            except Exception as exc:  # e.g. a replay with no answer for a request: recorded, not hidden
                console.print(f"[red]{name} failed[/]: {type(exc).__name__}: {exc}")
                runs.append({"ideator": tag, "strategy": strategy, "seed": seed, "run": name, "error": str(exc)})
                progress.advance(task)
                continue
            summary = summarize(store)
            best = summary.best
            runs.append(
                {
                    "ideator": tag,
                    "strategy": strategy,
                    "seed": seed,
                    "run": name,
                    "ideas_proposed": summary.ideas_total,
                    "valid": summary.funnel.valid,
                    "best": None if best is None else {"id": best.id, "title": best.title, "values": best.values},
                    "verdict": None if best is None else summary.verdict(best),
                    "seconds": round(active_hours(store.events()) * 3600, 1),  # from the store: resumes add up
                    **curve(store, summary.direction),
                }
            )
            progress.advance(task)
    table = aggregate([r for r in runs if "error" not in r])
    out = {
        "benchmark": "search_comparison",
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "environment": args.env,
        "profile": args.profile,
        "metric": env.manifest.metric.name,
        "direction": env.manifest.metric.direction,
        "settings": {
            "seeds": seeds,
            "slots": args.slots,
            "epochs_x_ideas": {k: settings[k] for k in ("catalog", "replay")},
            "confirm_seeds": args.confirm_seeds,
            "noise_seeds": settings["noise_seeds"],
        },
        "noise_floor": {k: noise.get(k) for k in ("mean", "std", "seeds", "values")},
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "wall_seconds": round(sum(r.get("seconds", 0.0) for r in runs) + noise.get("seconds", 0.0), 1),
        "wall_seconds_this_invocation": round(time.time() - started, 1),
        "baselines_across_runs": spread([r["baseline"] for r in runs if r.get("baseline") is not None]),
        "notes": NOTES,
        "table": table,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    plot(out, args.out.with_suffix(".png"))
    print(json.dumps({"table": table, "wall_seconds": out["wall_seconds"]}, indent=2))
    return 0


def spread(values: list[float]) -> dict:
    """The baseline as each run measured it: on a shared CPU, load drifts between runs, and
    a time-budgeted job trains fewer steps when the machine is busy."""
    if len(values) < 2:
        return {"values": values}
    return {
        "mean": round(statistics.fmean(values), 5),
        "std": round(statistics.stdev(values), 5),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def aggregate(runs: list[dict]) -> list[dict]:
    """Per ideator and strategy: the best gain over the baseline after the same number of
    executed ideas (the fewest any run of that ideator executed), as mean ± 95% CI over seeds."""
    table = []
    for ideator in sorted({r["ideator"] for r in runs}):
        mine = [r for r in runs if r["ideator"] == ideator]
        at = min(len(r["gain"]) for r in mine)
        for strategy in sorted({r["strategy"] for r in mine}):
            rows = [r for r in mine if r["strategy"] == strategy]
            gains = [r["gain"][at - 1] for r in rows if at and r["gain"][at - 1] is not None]
            estimate = Estimate.of(gains) if gains else None
            table.append(
                {
                    "ideator": ideator,
                    "strategy": strategy,
                    "seeds": len(rows),
                    "executed_ideas_compared": at,
                    "best_gain_mean": None if estimate is None else round(estimate.mean, 5),
                    "best_gain_ci95": None
                    if estimate is None or estimate.half_width is None
                    else round(estimate.half_width, 5),
                    "best_gain_per_seed": gains,
                    "valid_ideas_mean": statistics.fmean(r["valid"] for r in rows),
                    "beyond_noise": sum(1 for r in rows if r["verdict"] == "better"),
                }
            )
    return table


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ideators = sorted({r["ideator"] for r in out["runs"]})
    fig, axes = plt.subplots(1, len(ideators), figsize=(5.5 * len(ideators), 4), squeeze=False)
    colors = {"evolution": "tab:blue", "best-of-n": "tab:orange", "steady-state": "tab:green"}
    noise = out["noise_floor"].get("std")
    for ax, ideator in zip(axes[0], ideators, strict=True):
        for r in (r for r in out["runs"] if r["ideator"] == ideator and "error" not in r):
            xs = [i + 1 for i, g in enumerate(r["gain"]) if g is not None]
            ys = [g for g in r["gain"] if g is not None]
            label = f"{r['strategy']}, one seed" if r["seed"] == min(x["seed"] for x in out["runs"]) else None
            ax.plot(xs, ys, marker="o", ms=3, lw=1, color=colors.get(r["strategy"], "gray"), alpha=0.45, label=label)
        for strategy in sorted({r["strategy"] for r in out["runs"] if r["ideator"] == ideator and "error" not in r}):
            mine = [r for r in out["runs"] if r["ideator"] == ideator and r["strategy"] == strategy]
            curves = [r["gain"] for r in mine if "error" not in r]
            length = min(len(c) for c in curves)
            xs = [k + 1 for k in range(length) if all(c[k] is not None for c in curves)]
            ys = [statistics.fmean(c[x - 1] for c in curves) for x in xs]
            ax.plot(xs, ys, lw=3, color=colors.get(strategy, "gray"), label=f"{strategy}, mean over seeds")
        if noise:
            ax.axhspan(-2 * noise, 2 * noise, color="gray", alpha=0.15, label="±2 sd noise")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{out['environment']} {out['profile']}: {ideator} ideas")
        ax.set_xlabel("executed ideas")
        ax.set_ylabel(f"best {out['metric']} gain over baseline")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
