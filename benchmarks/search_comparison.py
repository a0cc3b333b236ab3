#!/usr/bin/env python3
"""Evolution and steady-state search against best-of-N, at an equal number of executed
ideas, over paired seeds.

For each seed s every arm (strategy) makes one full research run with run seed s: the same
baseline training seed, the same catalog draw where the strategies ask for the same thing
(every arm's first batch), the same seed for every idea's training. The baseline's noise
floor is measured first (`--noise-seeds` runs), so verdicts and the exploit pool are
noise-aware. The JSON holds every run's best-so-far curve over executed ideas, per arm the
mean best-so-far gain after each executed idea with its 95% CI over seeds, and per arm
against best-of-N the paired difference with its CI and paired tests (Wilcoxon
signed-rank, exact permutation test, paired t-test; scipy). The plot shows both.

    .venv/bin/python benchmarks/search_comparison.py               # the committed run
    .venv/bin/python benchmarks/search_comparison.py --seeds 0 1 --epochs 2 --ideas-per-epoch 2   # a dry run

The profile must be compute-budgeted (training paced by tokens or steps), so one seed's
job gives the same metric whatever the machine's load; then a job already executed (same
patched codebase, profile, seed and budget) is served from a memo under --runs-dir instead
of trained again (`--no-job-cache` to train every job). Runs are kept under --runs-dir:
running the command again reuses finished runs and resumes unfinished ones, and the JSON
is written after each run, so a cut-short benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from scipy import stats  # noqa: E402

from groundwork.analysis.summary import save_noise_floor, summarize  # noqa: E402
from groundwork.comparison import Verdict, noise_margin  # noqa: E402
from groundwork.config import RunConfig  # noqa: E402
from groundwork.descriptors import idea_category  # noqa: E402
from groundwork.environments import load_environment  # noqa: E402
from groundwork.environments.manifest import Objective  # noqa: E402
from groundwork.loop import ResearchLoop  # noqa: E402
from groundwork.noise_floor import load_noise_floor  # noqa: E402
from groundwork.records import PromptKind, RunStatus  # noqa: E402
from groundwork.runs import create_run  # noqa: E402
from groundwork.search.budget import active_hours  # noqa: E402
from groundwork.store import RunStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_cache import CLOCK_MARGIN, CachingBackend, JobCache, served_jobs  # noqa: E402

HERE = Path(__file__).resolve().parent
CONTROL = "best-of-n"
REPLAY = "replay:nanogpt-tiny"  # the recording holds two epochs of four ideas
# Arms beyond the three strategies: a name and the run settings it stands for.
ARMS = {
    "islands-map-elites": {
        "search": "evolution",
        "islands": 2,
        "migrate_every": 1,
        "migrants": 1,
        "archive": "map-elites",
        "descriptors": ["category", "diff_size"],
    },
}
NOTES = [
    "Gains are against each run's own baseline; for a seed every arm's baseline is the same job (same codebase, "
    "seed and compute budget), so the arms are paired.",
    "Executed ideas count every idea with a result, failures (patch_failed, crashed) included, in the order they "
    "were proposed (within an epoch the order results arrive in depends on the moment). Arms are compared after "
    "the fewest executed ideas of any run with that ideator (`executed_ideas_compared`).",
    "Paired differences are arm minus best-of-N per seed, after each executed idea; the tests are on the last "
    "point. Wilcoxon drops zero differences (scipy's zero_method='wilcox'); the permutation test is exact "
    "(all sign flips) up to 2^16 of them.",
    "A job served from the job cache (`jobs_served_from_cache`) is one that an earlier run (of this invocation or "
    "an earlier one) had executed with the same patched codebase, profile, seed and compute budget; its result is "
    "that run's. Evolution and best-of-N propose only at epoch barriers, so a served result changes nothing they "
    "do. Steady-state runs never use the cache: they propose whenever a slot frees, so a result served at once "
    "would change what they propose; their schedule still depends on the order results arrive in.",
    "Improving idea kinds (`improving_kinds`) count the distinct categories (descriptors.py's labels: the "
    "idea's own, folded into six) of a run's ideas whose gain over the baseline exceeds the noise margin of one "
    "run against one baseline run (2 sd * sqrt 2 of the noise floor); their paired tests are on that count.",
    "The replayed recording (ideator replay:nanogpt-tiny, not a default) holds the answers of one evolution run; "
    "a request it lacks is answered with an unused answer of the same epoch. It exercises the strategies on "
    "model-written ideas offline; it is not a fair control. The catalog rows are.",
]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="nanogpt")
    ap.add_argument("--profile", default="micro")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(12)), help="paired run seeds")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--ideas-per-epoch", type=int, default=4)
    ap.add_argument(
        "--strategies", nargs="+", default=["evolution", CONTROL, "steady-state"], help=f"also: {', '.join(ARMS)}"
    )
    ap.add_argument("--ideators", nargs="+", default=["catalog"], help=f"catalog, and/or {REPLAY}")
    ap.add_argument("--noise-seeds", type=int, default=5, help="baseline runs for the noise floor")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--confirm-seeds", type=int, default=0, help="re-runs of the top idea (0: off)")
    ap.add_argument("--no-job-cache", action="store_true", help="train every job, even one already executed")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/search-comparison"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "search_comparison")
    args = ap.parse_args()
    if CONTROL not in args.strategies:
        ap.error(f"--strategies must include the control {CONTROL!r}: the paired differences are against it")
    return args


class Runner:
    """Makes or resumes one research run, through the job cache when there is one. A
    steady-state run never goes through it: it proposes whenever a slot frees, so a result
    served at once instead of after training would change what it proposes."""

    def __init__(self, runs_dir: Path, cache: JobCache | None):
        self.runs_dir = runs_dir
        self.cache = cache

    def __call__(self, config: RunConfig, name: str) -> RunStore:
        run_dir = self.runs_dir / name
        store = RunStore(run_dir) if (run_dir / "store.sqlite").is_file() else create_run(config, self.runs_dir, name)
        if store.run_info().status != RunStatus.FINISHED:
            loop = ResearchLoop(store)
            if self.cache is not None and config.search != "steady-state":
                loop.parts.backend = CachingBackend(loop.parts.backend, self.cache)
            loop.data_dir = loop.env.prepare(loop.profile, quiet=True)
            loop.run()
        return store


def measure_noise(args: argparse.Namespace, name: str, run: Runner) -> dict:
    """The baseline over --noise-seeds seeds, stored as the environment's noise floor (the
    runs that follow use it); a finished measurement in --runs-dir is reused."""
    config = RunConfig(
        environment=args.env, profile=args.profile, epochs=0, baseline_seeds=args.noise_seeds, slots=args.slots
    )
    store = run(config, f"{args.profile}-noise-floor-{args.noise_seeds}")
    budget = load_environment(args.env).profile(args.profile).budget
    save_noise_floor(summarize(store), budget)  # the runs look the floor up under their budget
    floor = load_noise_floor(name, args.profile, budget) or {}
    return {
        **floor,
        "seconds": round(active_hours(store.events()) * 3600, 1),
        "jobs_served_from_cache": served_jobs(store.run_dir),
    }


def curve(store: RunStore, objective: Objective) -> dict:
    """Best-so-far metric and gain over the baseline after each executed idea, in the
    order the ideas were proposed; an idea counts as executed when it has a result
    (failures included)."""
    results = store.results()
    ideas = [i for i in store.ideas() if i.prompt_kind not in (PromptKind.BASELINE, PromptKind.CONFIRM)]
    executed = sorted((i for i in ideas if i.id in results), key=lambda i: (i.epoch, i.index))
    baseline = results["baseline"].metric
    best, best_so_far, gains, metrics, kinds, ids = None, [], [], [], [], []
    for idea in executed:
        result = results[idea.id]
        metric = result.metric if result.valid else None
        metrics.append(metric)
        kinds.append(str(idea.prompt_kind))
        ids.append(idea.id)
        if metric is not None and (best is None or objective.better(metric, best)):
            best = metric
        best_so_far.append(best)
        gains.append(None if best is None or baseline is None else objective.signed_gain(best, baseline))
    return {
        "baseline": baseline,
        "ideas": ids,
        "metrics": metrics,
        "kinds": kinds,
        "best_so_far": best_so_far,
        "gain": gains,
    }


def clock_paced(store: RunStore, budget_s: float) -> int:
    """Executed jobs whose training ran to near the time budget: the clock, not the token
    cap, may have ended them, so their metric may follow the machine's load."""
    return sum(
        1
        for r in store.results().values()
        if "job_cache" not in r.flags and (r.flags.get("train_seconds") or 0) >= CLOCK_MARGIN * budget_s
    )


def job_seconds(store: RunStore) -> list[float]:
    """Seconds of each executed job (served ones left out)."""
    return [
        r.seconds
        for r in store.results().values()
        if r.seconds is not None and r.seconds > 0 and "job_cache" not in (r.flags or {})
    ]


def improving_kinds(store: RunStore, direction: str, noise_std: float | None) -> list[str]:
    """The distinct categories of searched ideas whose gain is beyond one run's noise margin."""
    results = store.results()
    baseline = results["baseline"].metric
    if baseline is None:
        return []
    margin = noise_margin(noise_std, 1, 1) if noise_std else 0.0
    sign = 1.0 if direction == "minimize" else -1.0
    kinds = {
        idea_category(i)
        for i in store.ideas()
        if i.prompt_kind not in (PromptKind.BASELINE, PromptKind.CONFIRM)
        and i.id in results
        and results[i.id].valid
        and sign * (baseline - results[i.id].metric) > margin
    }
    return sorted(kinds)


def describe_run(
    store: RunStore, tag: str, strategy: str, seed: int, name: str, budget_s: float, noise_std: float | None = None
) -> dict:
    summary = summarize(store)
    best = summary.best
    kinds = improving_kinds(store, summary.direction, noise_std)
    return {
        "ideator": tag,
        "strategy": strategy,
        "seed": seed,
        "run": name,
        "ideas_proposed": summary.ideas_total,
        "valid": summary.funnel.valid,
        "best": None if best is None else {"id": best.id, "title": best.title, "values": best.values},
        "verdict": None if best is None else summary.verdict(best),
        "seconds": round(active_hours(store.events()) * 3600, 1),  # from the store: resumes add up
        "jobs": len(store.jobs()),
        "jobs_served_from_cache": served_jobs(store.run_dir),
        "job_seconds": [round(s, 2) for s in job_seconds(store)],
        "clock_paced_jobs": clock_paced(store, budget_s),
        "improving_kinds": len(kinds),
        "improving_kind_names": kinds,
        **curve(store, summary.objective),
    }


# ---- statistics (scipy) ---------------------------------------------------------------


def mean_ci(values: list[float]) -> dict:
    """Mean and Student-t 95% CI over seeds (no interval from fewer than two)."""
    out: dict = {"n": len(values), "mean": round(statistics.fmean(values), 6) if values else None}
    if len(values) >= 2 and len(set(values)) > 1:
        ci = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
        out["ci95"] = [round(float(ci.low), 6), round(float(ci.high), 6)]
    elif len(values) >= 2:  # every seed agrees: a zero-width interval
        out["ci95"] = [out["mean"], out["mean"]]
    else:
        out["ci95"] = None
    return out


def paired_tests(arm: list[float], control: list[float]) -> dict:
    """Arm minus control over paired seeds: mean and 95% CI of the difference, and p-values
    of the Wilcoxon signed-rank test, an exact permutation test (sign flips of the
    differences) and the paired t-test, all two-sided."""
    diffs = [a - c for a, c in zip(arm, control, strict=True)]
    out: dict = {
        **mean_ci(diffs),
        "per_seed": [round(d, 6) for d in diffs],
        "wins": sum(d > 0 for d in diffs),
        "ties": sum(d == 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
    }
    nonzero = [d for d in diffs if d != 0]
    if len(diffs) < 2 or not nonzero:
        why = "fewer than two seeds" if len(diffs) < 2 else "every paired difference is zero"
        return {**out, "wilcoxon_p": None, "permutation_p": None, "t_test_p": None, "tests_skipped": why}
    out["wilcoxon_p"] = float(stats.wilcoxon(arm, control, zero_method="wilcox").pvalue)
    perm = stats.permutation_test(
        (np.asarray(arm), np.asarray(control)),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=2**16,
        alternative="two-sided",
        random_state=0,
    )
    out["permutation_p"] = float(perm.pvalue)
    t = stats.ttest_rel(arm, control)
    out["t_test_p"] = None if math.isnan(t.pvalue) else float(t.pvalue)
    return out


def aggregate(runs: list[dict], seeds: list[int]) -> list[dict]:
    """Per ideator: each arm's best-so-far gain after each executed idea (mean and CI over
    seeds), and each arm's paired difference from best-of-N over the seeds both finished."""
    table = []
    for ideator in sorted({r["ideator"] for r in runs}):
        mine = [r for r in runs if r["ideator"] == ideator]
        at = min(len(r["gain"]) for r in mine)
        by_arm = {s: {r["seed"]: r for r in mine if r["strategy"] == s} for s in sorted({r["strategy"] for r in mine})}
        arms = {}
        for strategy, per_seed in by_arm.items():
            points = [mean_ci([r["gain"][k] for r in per_seed.values() if r["gain"][k] is not None]) for k in range(at)]
            final = [r["gain"][at - 1] for r in per_seed.values() if at and r["gain"][at - 1] is not None]
            arms[strategy] = {
                "seeds": sorted(per_seed),
                "best_gain_after_each_idea": points,
                "final": mean_ci(final) if final else None,
                "valid_ideas_mean": statistics.fmean(r["valid"] for r in per_seed.values()),
                "beyond_noise": sum(1 for r in per_seed.values() if r["verdict"] == Verdict.BETTER),
                "improving_kinds": mean_ci([float(r["improving_kinds"]) for r in per_seed.values()]),
            }
        paired = {}
        control = by_arm.get(CONTROL, {})
        for strategy, per_seed in by_arm.items():
            if strategy == CONTROL:
                continue
            both = [s for s in seeds if s in per_seed and s in control]
            after_each = []
            for k in range(at):
                pairs = [
                    (per_seed[s]["gain"][k], control[s]["gain"][k])
                    for s in both
                    if per_seed[s]["gain"][k] is not None and control[s]["gain"][k] is not None
                ]
                after_each.append(mean_ci([a - c for a, c in pairs]))
            pairs = [
                (per_seed[s]["gain"][at - 1], control[s]["gain"][at - 1])
                for s in both
                if at and per_seed[s]["gain"][at - 1] is not None and control[s]["gain"][at - 1] is not None
            ]
            final = paired_tests([a for a, _ in pairs], [c for _, c in pairs]) if pairs else None
            kinds = paired_tests(
                [float(per_seed[s]["improving_kinds"]) for s in both],
                [float(control[s]["improving_kinds"]) for s in both],
            )
            paired[f"{strategy} - {CONTROL}"] = {
                "seeds": both,
                "after_each_idea": after_each,
                "final": final,
                "improving_kinds": kinds,
            }
        table.append({"ideator": ideator, "executed_ideas_compared": at, "arms": arms, "paired": paired})
    return table


def spread(values: list[float]) -> dict:
    if len(values) < 2:
        return {"values": values}
    return {
        "mean": round(statistics.fmean(values), 5),
        "std": round(statistics.stdev(values), 5),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def baseline_check(runs: list[dict]) -> dict:
    """Whether each seed's arms measured the same baseline (a compute budget promises it;
    with the job cache the later arms are served the first one's, so this checks the runs
    made without it)."""
    by_seed: dict[int, set] = {}
    for r in runs:
        if r.get("baseline") is not None:
            by_seed.setdefault(r["seed"], set()).add(r["baseline"])
    return {
        "seeds_with_one_baseline": sum(1 for v in by_seed.values() if len(v) == 1),
        "seeds": len(by_seed),
        "across_seeds": spread(sorted({b for v in by_seed.values() for b in v})),
    }


# ---- the benchmark --------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    console = Console()
    env = load_environment(args.env)
    profile = env.profile(args.profile)
    env.prepare(profile)
    started = time.time()
    cache = None if args.no_job_cache else JobCache(args.runs_dir / "job-cache")
    run = Runner(args.runs_dir, cache)
    noise = measure_noise(args, env.name, run)
    console.print(f"noise floor: {noise.get('mean', float('nan')):.4f} +- {noise.get('std', float('nan')):.4f}")
    # Seed by seed, so that a benchmark cut short holds whole pairs.
    plan = [(i, seed, s) for i in args.ideators for seed in args.seeds for s in args.strategies]
    runs: list[dict] = []
    for n, (ideator, seed, strategy) in enumerate(plan, start=1):
        tag = "catalog" if ideator == "catalog" else "replay"
        name = f"{args.profile}-{tag}-{strategy}-s{seed}-{args.epochs}x{args.ideas_per_epoch}"
        arm = ARMS.get(strategy, {"search": strategy})
        config = RunConfig(
            environment=args.env,
            profile=args.profile,
            **arm,
            ideator_llm=ideator,
            epochs=args.epochs,
            ideas_per_epoch=args.ideas_per_epoch,
            slots=args.slots,
            seed=seed,
            confirm_seeds=args.confirm_seeds,
            confirm_top=1,
        )
        t0 = time.time()
        try:
            store = run(config, name)
        except Exception as exc:  # e.g. a replay with no answer for a request: recorded, not hidden
            console.print(f"[red]{name} failed[/]: {type(exc).__name__}: {exc}")
            runs.append({"ideator": tag, "strategy": strategy, "seed": seed, "run": name, "error": str(exc)})
            continue
        clock_budget_s = profile.time_budget_s if profile.budget == "time" else math.inf  # compute: no clock pacing
        runs.append(describe_run(store, tag, strategy, seed, name, clock_budget_s, noise.get("std")))
        last = runs[-1]
        console.print(
            f"[{n}/{len(plan)}] {name}: best gain {last['gain'][-1] if last['gain'] else None} "
            f"({last['jobs_served_from_cache']}/{last['jobs']} jobs served, {time.time() - t0:.0f} s)"
        )
        write(args, env, noise, runs, started, cache)
    write(args, env, noise, runs, started, cache)
    return 0


def write(args, env, noise: dict, runs: list[dict], started: float, cache: JobCache | None) -> None:
    done = [r for r in runs if "error" not in r]
    table = aggregate(done, args.seeds) if done else []
    executed = [s for r in done for s in r["job_seconds"]]
    out = {
        "benchmark": "search_comparison",
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "environment": args.env,
        "profile": args.profile,
        "metric": env.manifest.metric.name,
        "direction": env.manifest.metric.direction,
        "settings": {
            "seeds": args.seeds,
            "strategies": args.strategies,
            "ideators": args.ideators,
            "epochs": args.epochs,
            "ideas_per_epoch": args.ideas_per_epoch,
            "slots": args.slots,
            "confirm_seeds": args.confirm_seeds,
            "noise_seeds": args.noise_seeds,
            "job_cache": cache is not None,
        },
        "noise_floor": {k: noise.get(k) for k in ("mean", "std", "seeds", "values")},
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "runs_finished": len(done),
        "runs_planned": len(args.ideators) * len(args.seeds) * len(args.strategies),
        "wall_seconds": round(sum(r.get("seconds", 0.0) for r in runs) + noise.get("seconds", 0.0), 1),
        "wall_seconds_this_invocation": round(time.time() - started, 1),
        "jobs": {
            "total": sum(r["jobs"] for r in done) + (noise.get("seeds") or 0),
            "served_from_cache": sum(r["jobs_served_from_cache"] for r in done) + noise["jobs_served_from_cache"],
            "executed_seconds_mean": round(statistics.fmean(executed), 2) if executed else None,
            "clock_paced": sum(r["clock_paced_jobs"] for r in done),
            "cache_entries": len(cache) if cache is not None else None,
        },
        "baselines": baseline_check(done),
        "notes": NOTES,
        "table": table,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    if table:
        plot(out, args.out.with_suffix(".png"))


COLORS = {"evolution": "tab:blue", CONTROL: "tab:orange", "steady-state": "tab:green", "islands-map-elites": "tab:red"}


def _band(ax, points: list[dict], color: str, label: str) -> None:
    xs = [k + 1 for k, p in enumerate(points) if p["mean"] is not None]
    ax.plot(xs, [points[x - 1]["mean"] for x in xs], lw=2.5, marker="o", ms=3, color=color, label=label)
    low = [(x, points[x - 1]["ci95"]) for x in xs if points[x - 1]["ci95"] is not None]
    if low:
        ax.fill_between(
            [x for x, _ in low], [c[0] for _, c in low], [c[1] for _, c in low], color=color, alpha=0.18, lw=0
        )


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = out["table"]
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 4.3 * len(rows)), squeeze=False)
    noise = out["noise_floor"].get("std")
    for (left, right), row in zip(axes, rows, strict=True):
        for strategy, arm in row["arms"].items():
            n = len(arm["seeds"])
            _band(left, arm["best_gain_after_each_idea"], COLORS.get(strategy, "gray"), f"{strategy} (n={n})")
        if noise:
            left.axhspan(-2 * noise, 2 * noise, color="gray", alpha=0.15, label="±2 sd baseline noise")
        left.axhline(0, color="black", lw=0.8)
        left.set_title(f"{out['environment']} {out['profile']}, {row['ideator']} ideas: best so far (mean, 95% CI)")
        left.set_xlabel("executed ideas")
        left.set_ylabel(f"best {out['metric']} gain over baseline")
        left.legend(fontsize=8)
        for name, pair in row["paired"].items():
            final = pair["final"] or {}
            label = f"{name}: Wilcoxon p={_p(final.get('wilcoxon_p'))}, permutation p={_p(final.get('permutation_p'))}"
            _band(right, pair["after_each_idea"], COLORS.get(name.split(" - ")[0], "gray"), label)
        right.axhline(0, color="black", lw=0.8)
        right.set_title("paired difference from best-of-N (same seed; mean, 95% CI)")
        right.set_xlabel("executed ideas")
        right.set_ylabel(f"difference in best {out['metric']} gain")
        right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
