"""The search comparison benchmark end to end on the toy environment (catalog ideas, two
paired seeds, three arms): the noise floor, the runs, the per-arm CI curves, the paired
differences from best-of-N with their tests, the plot; the job cache it shares between
runs; and a second invocation that reuses the finished runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, cli_env, requires, set_toy_sleep

sys.path.insert(0, str(REPO / "benchmarks"))
from job_cache import PROVENANCE_FILE, CachingBackend, JobCache, job_key  # noqa: E402
from search_comparison import paired_tests  # noqa: E402

ARMS = {"evolution", "best-of-n", "steady-state"}


def _benchmark(toy_env: Path, tmp_path: Path, runs: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "benchmarks" / "search_comparison.py"),
        *("--env", str(toy_env), "--profile", "quick", "--seeds", "0", "1", "--epochs", "2", "--ideas-per-epoch", "2"),
        *("--noise-seeds", "2", "--runs-dir", str(tmp_path / runs)),
        *extra,
    ]


def _compute_budgeted(toy_env: Path) -> Path:
    """The toy environment with its profile budgeted by compute, as the nanogpt CPU profiles are."""
    manifest = toy_env / "environment.toml"
    text = manifest.read_text().replace(
        "time_budget_s = 3", 'budget = "compute"\ncompute_budget = {steps = 1}\ntime_budget_s = 3'
    )
    manifest.write_text(text)
    set_toy_sleep(toy_env, 0.05)  # the comparison reads scores, not timings
    return toy_env


@requires("matplotlib", "benchmarks")
@pytest.mark.slow
@pytest.mark.e2e
def test_search_comparison_reports_paired_arms_and_reuses_runs(toy_env, tmp_path):
    toy_env = _compute_budgeted(toy_env)
    ledger = tmp_path / "ledger"  # one line per job that really trained
    env = cli_env({"TOY_LEDGER": str(ledger)})
    out = tmp_path / "out" / "comparison"
    args = _benchmark(toy_env, tmp_path, "runs", "--out", str(out))
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    table = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "search_comparison.py" in table["command"]
    assert table["runs_finished"] == table["runs_planned"] == 6
    assert table["noise_floor"]["seeds"] == 2 and table["noise_floor"]["std"] == 0.0
    [row] = table["table"]
    at = row["executed_ideas_compared"]
    assert at == 4 and set(row["arms"]) == ARMS
    for arm in row["arms"].values():
        assert arm["seeds"] == [0, 1] and len(arm["best_gain_after_each_idea"]) == at
        assert all(p["n"] == 2 and len(p["ci95"]) == 2 for p in arm["best_gain_after_each_idea"])
    assert set(row["paired"]) == {"evolution - best-of-n", "steady-state - best-of-n"}
    for pair in row["paired"].values():
        assert pair["seeds"] == [0, 1] and len(pair["after_each_idea"]) == at
        assert {"wilcoxon_p", "permutation_p", "t_test_p", "per_seed", "ci95"} <= set(pair["final"])
    # toy: lr 0.2 is the best catalog entry (gain 0.3); only exploiting it (lr 0.28, gain 0.396)
    # goes beyond, and evolution finds it with seed 1: a nonzero difference, so the tests ran
    runs = table["runs"]
    by = {(r["strategy"], r["seed"]): r for r in runs}
    assert max(max(g for g in r["gain"] if g is not None) for r in runs if r["strategy"] == "best-of-n") <= 0.3 + 1e-9
    evolution = row["paired"]["evolution - best-of-n"]["final"]
    assert evolution["per_seed"] == pytest.approx([0.0, by[("evolution", 1)]["gain"][-1] - 0.3])
    assert evolution["per_seed"][1] > 0 and 0 < evolution["permutation_p"] <= 1 and 0 < evolution["wilcoxon_p"] <= 1
    # paired: one baseline per seed; the job cache served what an earlier run had executed
    assert table["baselines"]["seeds_with_one_baseline"] == 2
    jobs = table["jobs"]
    assert jobs["served_from_cache"] > 0 and jobs["cache_entries"] > 0
    assert len(ledger.read_text().split()) == jobs["total"] - jobs["served_from_cache"]
    assert all(by[("best-of-n", seed)]["jobs_served_from_cache"] >= 1 for seed in (0, 1))
    assert all(by[("steady-state", seed)]["jobs_served_from_cache"] == 0 for seed in (0, 1))  # never served
    # the runs found the noise floor measured first (stored under their compute budget)
    assert all(r["verdict"] in ("better", "within noise", "worse") for r in runs), [r["verdict"] for r in runs]

    trained = ledger.read_text()
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == runs  # reused, not re-run
    assert ledger.read_text() == trained

    # Served results are what executing gives: the epoch strategies (their proposals do not
    # depend on when results arrive) make the same curves with every job trained.
    fresh_out = tmp_path / "fresh" / "comparison"
    fresh_args = _benchmark(toy_env, tmp_path, "runs-fresh", "--out", str(fresh_out), "--no-job-cache")
    fresh = subprocess.run(
        [*fresh_args, "--strategies", "evolution", "best-of-n"], capture_output=True, text=True, env=env, timeout=300
    )
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    uncached = json.loads(fresh_out.with_suffix(".json").read_text())
    assert uncached["jobs"]["served_from_cache"] == 0 and uncached["jobs"]["cache_entries"] is None
    for r in uncached["runs"]:
        cached = by[(r["strategy"], r["seed"])]
        assert (r["ideas"], r["metrics"], r["gain"]) == (cached["ideas"], cached["metrics"], cached["gain"])


def test_paired_tests_are_arm_minus_control_with_exact_p_values():
    arm, control = [1.0, 2.0, 3.0, 4.0, 5.5], [0.5, 1.0, 1.5, 2.0, 2.5]  # the arm wins on every seed
    result = paired_tests(arm, control)
    assert result["per_seed"] == [0.5, 1.0, 1.5, 2.0, 3.0] and result["wins"] == 5 and result["losses"] == 0
    assert result["mean"] == pytest.approx(1.6) and result["ci95"][0] > 0
    # all five signs agree: 2 of the 2^5 sign assignments are as extreme, both tests exact
    assert result["wilcoxon_p"] == pytest.approx(2 / 32) and result["permutation_p"] == pytest.approx(2 / 32)
    assert paired_tests(control, arm)["losses"] == 5
    assert paired_tests([1.0, 2.0], [1.0, 2.0])["tests_skipped"] == "every paired difference is zero"


def _toy_spec(toy_env: Path, job_dir: Path, job_id: str, seed: int = 0):
    from groundwork.environments import load_environment
    from groundwork.execution.job_spec import environment_job_spec
    from groundwork.patch.codebase import codebase_hash

    env = load_environment(toy_env)
    profile = env.profile("quick")
    data_dir = env.prepare(profile, quiet=True)
    return environment_job_spec(
        env, profile, data_dir, job_dir, job_id=job_id, seed=seed, codebase_hash=codebase_hash(env.codebase_dir)
    )


def _reports(backend, count: int) -> list:
    reports, deadline = [], time.time() + 60
    while len(reports) < count and time.time() < deadline:
        reports += backend.poll()
        time.sleep(0.05)
    return reports


def test_job_cache_serves_an_identical_job_once_executed_and_survives_a_restart(toy_env, tmp_path, monkeypatch):
    from groundwork.execution.local import LocalBackend

    ledger = tmp_path / "ledger"
    monkeypatch.setenv("TOY_LEDGER", str(ledger))
    monkeypatch.setenv("GROUNDWORK_SANDBOX_WRITABLE", str(ledger))
    cache = JobCache(tmp_path / "cache")
    first = _toy_spec(toy_env, tmp_path / "run-a" / "job", "job-a")
    same = _toy_spec(toy_env, tmp_path / "run-b" / "job", "job-b")
    other_seed = _toy_spec(toy_env, tmp_path / "run-c" / "job", "job-c", seed=1)
    assert job_key(first) == job_key(same) != job_key(other_seed)

    backend = CachingBackend(LocalBackend(slots=2), cache)
    backend.start(first)
    [executed] = _reports(backend, 1)
    assert executed.failure is None and "job_cache" not in executed.flags and len(cache) == 1

    assert backend.start(same).startswith("served from the job cache")
    backend.start(other_seed)  # another seed is another job: it trains
    reports = {r.job_id: r for r in _reports(backend, 2)}
    served = reports["job-b"]
    assert served.metric == executed.metric and served.curve == executed.curve
    assert served.flags["job_cache"]["job_id"] == "job-a" and backend.served == 1
    assert reports["job-c"].failure is None and "job_cache" not in reports["job-c"].flags
    assert ledger.read_text().split() == ["job-a", "job-c"]

    # A controller restarted before it recorded the served job adopts it from its folder.
    restarted = CachingBackend(LocalBackend(slots=2), cache)
    assert restarted.reattach(same)
    [adopted] = _reports(restarted, 1)
    assert adopted.job_id == "job-b" and adopted.metric == executed.metric
    assert (Path(same.job_dir) / PROVENANCE_FILE).is_file()


def test_job_cache_keeps_no_failure_and_no_job_the_clock_may_have_paced(toy_env, tmp_path):
    from dataclasses import replace

    from groundwork.records import FailureCategory, JobOutcome

    cache = JobCache(tmp_path / "cache")
    spec = _toy_spec(toy_env, tmp_path / "job", "job-a")  # a time budget of 3 s
    failed = JobOutcome(job_id="job-a", attempt=1, failure=FailureCategory.TIMED_OUT, started_at=0.0, ended_at=1.0)
    cache.put(job_key(spec), failed, spec)
    clock_paced = JobOutcome(
        job_id="job-a", attempt=1, metric=1.0, flags={"train_seconds": 2.9}, started_at=0, ended_at=3
    )
    cache.put(job_key(spec), clock_paced, spec)
    assert len(cache) == 0 and cache.get(job_key(spec)) is None
    compute = replace(spec, env={**spec.env, "GROUNDWORK_BUDGET": "compute"})  # the clock only kills it
    cache.put(job_key(compute), clock_paced, compute)
    capped = clock_paced.model_copy(update={"flags": {"train_seconds": 0.5}})  # a token cap ended it
    cache.put(job_key(spec), capped, spec)
    assert len(cache) == 2 and cache.get(job_key(spec))["outcome"]["metric"] == 1.0
