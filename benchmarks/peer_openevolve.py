#!/usr/bin/env python3
"""Groundwork beside OpenEvolve 0.4.0 on the same circle-packing task: the same starting
program (circle_packing's baseline pack.py), the same locked validator, the same model
endpoint, the same number of proposals and parallel workers.

Harness figure (the default, offline): peer_stub.py, a local OpenAI-compatible server,
answers both systems with the same fixed programs (the circle_packing catalog's
strategies applied to the baseline; OpenEvolve in full-rewrite mode, Groundwork by
SEARCH/REPLACE blocks), so both evaluate the same candidates and the difference is each
system's own overhead. Measured per system: wall time (process start to exit), peak RSS
of its whole process tree, candidates evaluated, the evaluation's own time (each
program's run plus validation, timed alone beforehand, median of --eval-repeats), the
overhead per candidate = (wall - eval time / workers) / candidates, candidates/s, and
makespan over ideal = wall / (eval time / workers): each from the median of --rounds runs of
each system, alternated (a shared machine's load changes between runs). For Groundwork also
a breakdown of where its time goes, from the run's store and its jobs' outcomes (see
`breakdown`).

Search figure (--llm openai-compatible:MODEL@URL): both systems ask that model; the JSON
holds the best sum of radii after each proposal and the plot shows both.

    .venv/bin/python benchmarks/peer_openevolve.py                      # the committed harness figure
    .venv/bin/python benchmarks/peer_openevolve.py --llm openai-compatible:qwen@http://localhost:8000/v1 --proposals 100

OpenEvolve is the `peers` extra (pip install 'groundwork[peers]'), or any folder holding
it (--openevolve-path, e.g. one made by pip install --target).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import peer_oe_evaluator  # noqa: E402
from peer_stub import ENV_DIR, StubModel, load_strategies, start_server  # noqa: E402

PROFILES = {"n26": ("26", "square"), "n21-rect": ("21", "rect-perimeter-4"), "smoke": ("12", "square")}


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass  # a child that exited between listing and reading
    return total


def run_measured(cmd: list[str], env: dict, log: Path, timeout_s: float) -> dict:
    """Run cmd to its end, sampling its process tree's RSS every 50 ms."""
    started, started_at = time.monotonic(), time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        ps, peak, done = psutil.Process(proc.pid), 0, threading.Event()

        def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(ps))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        done.set()
        sampler.join()
    if rc != 0:
        raise RuntimeError(f"{cmd[:4]} exited with {rc}; its log: {log}\n{log.read_text()[-2000:]}")
    return {"wall_s": time.monotonic() - started, "peak_rss_mb": peak / 2**20, "span": (started_at, time.time())}


def eval_costs(strategies, circles: str, container: str, repeats: int) -> dict[str, float]:
    """Each program's own run plus validation, timed alone (median of repeats)."""
    os.environ.update(GROUNDWORK_CIRCLES=circles, GROUNDWORK_CONTAINER=container, PEER_PYTHON=sys.executable)
    os.environ.pop("PEER_EVAL_LOG", None)
    costs, scores = {}, {}
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"peer-costs-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    programs = {"baseline": (ENV_DIR / "baseline/pack.py").read_text(), **{s.id: s.program for s in strategies}}
    for sid, program in programs.items():
        path = work / f"{sid}.py"
        path.write_text(program)
        times = []
        for _ in range(repeats):
            t = time.monotonic()
            scores[sid] = peer_oe_evaluator.evaluate(str(path))["sum_radii"]
            times.append(time.monotonic() - t)
        costs[sid] = statistics.median(times)
    shutil.rmtree(work)
    return costs, scores


def run_openevolve(model: str, url: str, args, work: Path, circles: str, container: str) -> dict:
    out = work / "openevolve"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "initial_program.py").write_text((ENV_DIR / "baseline/pack.py").read_text())
    config = {
        "max_iterations": args.proposals, "checkpoint_interval": 10**6, "log_level": "WARNING", "random_seed": 0,
        "diff_based_evolution": args.llm is not None, "max_code_length": 100000,
        "llm": {"api_base": url, "api_key": "unused", "models": [{"name": model, "weight": 1.0}],
                "timeout": 600, "retries": 1},
        "evaluator": {"timeout": 120, "cascade_evaluation": False, "parallel_evaluations": args.workers,
                      "use_llm_feedback": False},
    }  # fmt: skip
    (out / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    log = out / "evaluations.jsonl"
    env = dict(os.environ, PYTHONPATH=args.openevolve_path or "", OPENAI_API_KEY="unused", PEER_EVAL_LOG=str(log),
               PEER_PYTHON=sys.executable, GROUNDWORK_CIRCLES=circles, GROUNDWORK_CONTAINER=container)  # fmt: skip
    cmd = [sys.executable, "-m", "openevolve.cli", str(out / "initial_program.py"),
           str(HERE / "peer_oe_evaluator.py"), "--config", str(out / "config.yaml"),
           "--output", str(out / "output"), "--iterations", str(args.proposals)]  # fmt: skip
    measured = run_measured(cmd, env, out / "stdout.log", args.timeout_s)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    rows.sort(key=lambda r: r["end"])
    measured.pop("span")
    return {**measured, "candidates": len(rows), "scores": [r["sum_radii"] for r in rows],
            "eval_seconds_inside": sum(r["end"] - r["start"] for r in rows)}  # fmt: skip


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 3) if values else 0.0


def breakdown(store, span: tuple[float, float], costs: dict[str, float] | None, by_title: dict[str, str]) -> dict:
    """Where Groundwork's wall time goes, from the store's timestamped state changes and each
    job's outcome (its runner's own clock and step timings). Per job, in seconds (means):
    runner_start: from the controller starting the runner process to the runner working
    (interpreter start, imports, the spec read); setup: the codebase copied, the patch applied,
    the locked files restored and hash-checked; train and evaluate: each phase's process under
    the sandbox, start-up included; in_runner_other: the rest of the runner (sandbox probe,
    checks, the result read); report: from the runner's end to the controller recording it
    (process exit, outcome write, the controller noticing); beyond_program: train + evaluate
    less the program's own time alone (bwrap, the evaluation's interpreter). Run-wide:
    start_to_run (process start to the run created: imports, model client, environment
    snapshot), baseline_job (the baseline's job, before any idea: ideation waits for it),
    baseline_to_first_idea_job (ideation and implementation), finish_to_exit (the summary)."""
    events = store.events()
    run_ts = [e["ts"] for e in events if e["entity"] == "run"]
    job_ev: dict[str, dict[str, float]] = {}
    for e in events:
        if e["entity"] == "job":
            job_ev.setdefault(e["entity_id"], {})[e["to_state"]] = e["ts"]
    ideas = {i.id: i.title for i in store.ideas()}
    per_job: dict[str, list[float]] = {}
    for job in store.jobs():
        path = store.run_dir / job.job_dir / "outcome.json" if job.job_dir else None
        if path is None or not path.is_file() or job.id not in job_ev:
            continue
        outcome = json.loads(path.read_text())
        flags, ev = outcome["flags"], job_ev[job.id]
        steps = {
            "runner_start": outcome["started_at"] - ev["running"],
            "setup": flags.get("setup_seconds", 0.0),
            "train": flags.get("train_seconds", 0.0),
            "evaluate": flags.get("eval_seconds", 0.0),
        }
        steps["in_runner_other"] = (
            outcome["ended_at"] - outcome["started_at"] - sum(steps[k] for k in ("setup", "train", "evaluate"))
        )
        steps["report"] = ev["done"] - outcome["ended_at"]
        program = "baseline" if job.idea_id == "baseline" else by_title.get(ideas.get(job.idea_id, ""))
        if costs and program in costs:
            steps["beyond_program"] = steps["train"] + steps["evaluate"] - costs[program]
        for key, value in steps.items():
            per_job.setdefault(key, []).append(value)
    base = job_ev.get("job-baseline", {})
    first_idea = min((ev["leased"] for j, ev in job_ev.items() if j != "job-baseline" and "leased" in ev), default=None)
    run_wide = {
        "start_to_run": run_ts[0] - span[0] if run_ts else None,
        "baseline_job": base["done"] - base["leased"] if {"leased", "done"} <= set(base) else None,
        "baseline_to_first_idea_job": first_idea - base["done"] if first_idea and "done" in base else None,
        "finish_to_exit": span[1] - run_ts[-1] if run_ts else None,
    }
    return {
        "per_job_mean_s": {k: _mean(v) for k, v in per_job.items()},
        "run_s": {k: None if v is None else round(v, 3) for k, v in run_wide.items()},
    }


def run_groundwork(spec: str, args, work: Path, edit_format: str, costs=None, by_title=None) -> dict:
    runs = work / "groundwork"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    cmd = [sys.executable, "-c", "from groundwork.cli import main; main()", "run", "--env", "circle_packing",
           "--profile", args.profile, "--search", "best-of-n", "--epochs", "1", "--ideas", str(args.proposals),
           "--slots", str(args.workers), "--llm", spec, "--edit-format", edit_format, "--max-revisions", "0",
           "--max-debug-rounds", "0", "--runs-dir", str(runs), "--name", "peer"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    measured = run_measured(cmd, env, runs / "stdout.log", args.timeout_s)
    from groundwork.store import RunStore

    store = RunStore(runs / "peer")
    results = sorted(store.results().values(), key=lambda r: r.created_at)
    ideas = {i.id: i.title for i in store.ideas()}
    jobs = [j for j in store.jobs() if j.started_at and j.ended_at]
    # where the time goes: a job's own span (sandbox, pack.py, evaluate.py) against the program's cost
    measured["job_seconds"] = sum(j.ended_at - j.started_at for j in jobs)
    measured["breakdown"] = breakdown(store, measured.pop("span"), costs, by_title or {})
    return {**measured, "candidates": len(results), "scores": [r.metric or 0.0 for r in results],
            "titles": [ideas.get(r.idea_id, r.idea_id) for r in results]}  # fmt: skip


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower middle one for an even count), with every round's wall time."""
    chosen = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    return {**chosen, "wall_s_rounds": [r["wall_s"] for r in runs]}


def figures(system: dict, eval_s: float, workers: int) -> dict:
    ideal = eval_s / workers
    n = system["candidates"]
    return {
        "eval_seconds": eval_s,
        "overhead_per_candidate_s": (system["wall_s"] - ideal) / n,
        "candidates_per_s": n / system["wall_s"],
        "makespan_over_ideal": system["wall_s"] / ideal,
    }


def best_so_far(scores: list[float]) -> list[float]:
    best, out = 0.0, []
    for s in scores:
        best = max(best, s)
        out.append(best)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("groundwork", "openevolve"):
        curve = result[name]["best_so_far"]
        ax.plot(range(len(curve)), curve, label=name)
    ax.set_xlabel("candidates evaluated (0: the starting program)")
    ax.set_ylabel("best sum of radii")
    ax.set_title(f"circle_packing {result['profile']}, {result['model']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llm", help="openai-compatible:MODEL@URL: the search figure with a real model (default: the stub)")
    p.add_argument("--profile", default="n26", choices=sorted(PROFILES))
    p.add_argument("--proposals", type=int, default=None, help="default: the catalog's size (stub), 100 (--llm)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--eval-repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="stub figure: runs of each system, alternated (median kept)")
    p.add_argument("--openevolve-path", help="a folder holding openevolve, when it is not installed")
    p.add_argument("--work", type=Path, default=Path("/tmp/peer_openevolve"))
    p.add_argument("--timeout-s", type=float, default=3600)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    circles, container = PROFILES[args.profile]
    strategies = load_strategies()
    if args.proposals is None:
        args.proposals = len(strategies) if args.llm is None else 100
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"profile": args.profile, "proposals": args.proposals, "workers": args.workers,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}  # fmt: skip
    if args.llm is None:
        if args.proposals != len(strategies):
            sys.exit(f"--proposals {args.proposals}: the stub's fixed set is {len(strategies)} programs; omit it")
        costs, scores = eval_costs(strategies, circles, container, args.eval_repeats)
        eval_s = costs["baseline"] + sum(costs[s.id] for s in strategies)  # both evaluate exactly these programs
        by_title = {s.title: s.id for s in strategies}
        oe_runs, gw_runs = [], []
        for _ in range(args.rounds):  # alternated: a shared machine's load changes by the minute
            stub = StubModel(strategies)  # a fresh one per round: it hands the programs out in turn
            server, url = start_server(stub)
            try:
                oe_runs.append(run_openevolve("stub", url, args, args.work, circles, container))
                gw_runs.append(
                    run_groundwork(f"openai-compatible:stub@{url}", args, args.work, "search_replace", costs, by_title)
                )
            finally:
                server.shutdown()
            for name, system in (("openevolve", oe_runs[-1]), ("groundwork", gw_runs[-1])):
                if sorted(round(s, 9) for s in system["scores"]) != sorted(round(s, 9) for s in scores.values()):
                    raise RuntimeError(f"{name} did not evaluate exactly the fixed programs: {system['scores']}")
        oe, gw = median_run(oe_runs), median_run(gw_runs)
        result.update(model="stub", program_eval_seconds=costs, program_scores=scores, stub_requests=stub.counts)
        out = args.out or HERE / "results/peer_openevolve.json"
    else:
        kind, _, rest = args.llm.partition(":")
        model, _, url = rest.rpartition("@")
        if kind != "openai-compatible" or not model or not url.startswith("http"):
            sys.exit(f"--llm {args.llm!r}: write openai-compatible:MODEL@http://host:port/v1 (both systems need it)")
        oe = run_openevolve(model, url, args, args.work, circles, container)
        gw = run_groundwork(args.llm, args, args.work, "diff")
        eval_s = None
        result["model"] = model
        out = args.out or HERE / f"results/peer_openevolve_{args.profile}_llm.json"
    for name, system in (("openevolve", oe), ("groundwork", gw)):
        system["best_so_far"] = best_so_far(system["scores"])
        if eval_s is not None:
            system.update(figures(system, eval_s, args.workers))
        result[name] = system
    if eval_s is not None:
        result["overhead_ratio_groundwork_over_openevolve"] = (
            gw["overhead_per_candidate_s"] / oe["overhead_per_candidate_s"]
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if args.llm is not None:
        plot(result, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k not in ("openevolve", "groundwork")}, indent=1))
    for name in ("openevolve", "groundwork"):
        print(name, {k: v for k, v in result[name].items() if k not in ("scores", "best_so_far", "titles")})


if __name__ == "__main__":
    main()
