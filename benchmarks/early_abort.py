#!/usr/bin/env python3
"""Early abort, measured: run a set of ideas to completion, then replay the abort rule on
their stored training curves.

One best-of-N run of catalog ideas (every idea runs its whole budget; no abort) with the
baseline over several seeds. Then, for each setting of the rule (k, patience; the warm-up
share fixed), the rule built from the baseline seeds' curves (`execution/early_abort.py`,
the same code the job runner asks while a job trains) is replayed on every idea's curve:

- doomed ideas: a valid metric that does not beat the baseline's mean, or no valid metric
  (crashed, timed out); compute saved on them = the share of their budget after the point
  the rule would have stopped them, summed, over their number;
- false aborts: ideas that beat the baseline's mean and would have been stopped, over the
  ideas that beat it.

Targets: at least 30% of the compute of doomed jobs saved, under 5% false aborts.

    .venv/bin/python benchmarks/early_abort.py                 # nanogpt, its default CPU profile
    .venv/bin/python benchmarks/early_abort.py --profile tiny --ideas 24

The run is kept under --runs-dir; the command run again reuses it (or resumes it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from groundwork.config import RunConfig  # noqa: E402
from groundwork.execution.early_abort import compute_share, rule_from_baselines  # noqa: E402
from groundwork.loop import ResearchLoop  # noqa: E402
from groundwork.records import PromptKind, RunStatus  # noqa: E402
from groundwork.runs import create_run  # noqa: E402
from groundwork.store import RunStore  # noqa: E402

HERE = Path(__file__).resolve().parent
KS = (1.0, 2.0, 3.0, 4.0, 6.0)
PATIENCES = (1, 2, 3)
DEFAULT = {"k": 3.0, "patience": 2, "warmup": 0.3}  # RunConfig's defaults


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="nanogpt")
    ap.add_argument("--profile", default=None, help="default: the environment's default profile")
    ap.add_argument("--ideas", type=int, default=24, help="catalog ideas run to completion")
    ap.add_argument("--baseline-seeds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=DEFAULT["warmup"])
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/early-abort"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "early_abort.json")
    return ap.parse_args()


def run_ideas(args: argparse.Namespace) -> RunStore:
    config = RunConfig(
        environment=args.env,
        profile=args.profile,
        search="best-of-n",
        epochs=1,
        ideas_per_epoch=args.ideas,
        baseline_seeds=args.baseline_seeds,
        slots=args.slots,
        seed=args.seed,
    )
    name = f"{args.env}-{args.profile or 'default'}-{args.ideas}ideas-s{args.seed}"
    run_dir = args.runs_dir / name
    store = RunStore(run_dir) if (run_dir / "store.sqlite").is_file() else create_run(config, args.runs_dir, name)
    if store.run_info().status != RunStatus.FINISHED:
        loop = ResearchLoop(store)
        loop.data_dir = loop.env.prepare(loop.profile, quiet=True)
        loop.run()
    return store


def replay(store: RunStore, k: float, patience: int, warmup: float, minimize: bool) -> dict:
    results = store.results()
    ideas = store.ideas()
    baselines = [results[i.id] for i in ideas if i.prompt_kind == PromptKind.BASELINE and i.id in results]
    rule = rule_from_baselines([b.curve for b in baselines if b.valid], k=k, warmup=warmup, patience=patience)
    if rule is None:
        return {"k": k, "patience": patience, "error": "fewer than two baseline curves"}
    base = [float(b.metric) for b in baselines if b.valid]
    mean = sum(base) / len(base)
    rows = []
    for idea in ideas:
        if idea.prompt_kind in (PromptKind.BASELINE, PromptKind.CONFIRM) or idea.id not in results:
            continue
        result = results[idea.id]
        if not result.curve:  # never trained (patch failed): nothing to stop
            continue
        beats = result.valid and (result.metric < mean if minimize else result.metric > mean)
        stop = None
        for n in range(1, len(result.curve) + 1):  # the curve as the runner would have seen it grow
            if rule.verdict(result.curve[:n]):
                stop = compute_share(rule, result.curve[:n])
                break
        rows.append({"id": idea.id, "title": idea.title, "metric": result.metric, "beats": beats, "stop": stop})
    doomed = [r for r in rows if not r["beats"]]
    winners = [r for r in rows if r["beats"]]
    false = [r for r in winners if r["stop"] is not None]
    saved = sum(1.0 - r["stop"] for r in doomed if r["stop"] is not None)
    return {
        "k": k,
        "patience": patience,
        "warmup": warmup,
        "ideas": len(rows),
        "doomed": len(doomed),
        "winners": len(winners),
        "aborted": sum(1 for r in rows if r["stop"] is not None),
        "compute_saved_on_doomed": round(saved / len(doomed), 4) if doomed else None,
        "compute_saved_overall": round(saved / len(rows), 4) if rows else None,
        "false_aborts": len(false),
        "false_abort_rate": round(len(false) / len(winners), 4) if winners else None,
        "false_aborted_ideas": [f"{r['id']} {r['title']}" for r in false],
        "rows": rows,
    }


def main() -> int:
    args = parse_args()
    started = time.time()
    store = run_ideas(args)
    info = store.run_info().info
    from groundwork.runs import run_environment

    metric = run_environment(store).manifest.metric
    minimize = metric.lower_is_better
    settings = [replay(store, k, p, args.warmup, minimize) for k in KS for p in PATIENCES]
    default = next(s for s in settings if s["k"] == DEFAULT["k"] and s["patience"] == DEFAULT["patience"])
    meets = (
        default.get("compute_saved_on_doomed") is not None
        and default["compute_saved_on_doomed"] >= 0.30
        and (default.get("false_abort_rate") or 0.0) < 0.05
    )
    out = {
        "benchmark": "early_abort",
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "environment": info["environment"],
        "profile": info["profile"],
        "metric": metric.name,
        "run": store.run_dir.name,
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"compute_saved_on_doomed": ">= 0.30", "false_abort_rate": "< 0.05"},
        "default_rule": {**DEFAULT, "warmup": args.warmup},
        "default_meets_targets": meets,
        "settings": [{k: v for k, v in s.items() if k != "rows"} for s in settings],
        "default_rows": default.get("rows", []),
        "wall_seconds_this_invocation": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps(
            {k: out[k] for k in ("environment", "profile", "default_meets_targets")}
            | {"default": {k: v for k, v in default.items() if k != "rows"}},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
