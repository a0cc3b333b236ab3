"""Early abort from the learning curve: the rule built from the baseline seeds' curves, and
a real run whose trailing ideas are stopped while the others run to the end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from conftest import GROUNDWORK, REPO, cli_env
from groundwork.config import RunConfig
from groundwork.execution.early_abort import compute_share, rule_from_baselines
from groundwork.records import FailureCategory
from groundwork.store import RunStore


def _curve(scale: float, jitter: float = 0.0, steps: int = 20) -> list[dict]:
    return [{"step": s, "tokens": 100 * s, "loss": scale * (1 + 2 / (1 + s)) + jitter} for s in range(1, steps + 1)]


def test_the_rule_stops_only_a_curve_that_trails_beyond_the_spread_after_the_warmup():
    rule = rule_from_baselines([_curve(1.0, -0.01), _curve(1.0, 0.01), _curve(1.0)], k=3.0, warmup=0.3, patience=2)
    assert rule is not None and rule.x_key == "tokens" and rule.y_key == "loss" and rule.minimize
    assert rule.seeds == 3 and rule.warmup_x == pytest.approx(600)
    assert rule.verdict(_curve(1.0, 0.02)) is None  # within 3 sd (sd 0.01) and the 1% floor
    assert rule.verdict(_curve(0.8)) is None  # ahead of the baseline
    worse = _curve(1.2)
    reason = rule.verdict(worse)
    assert reason is not None and "tokens 700 of 2000" in reason and "3 seeds" in reason
    assert rule.verdict(worse[:5]) is None  # before the warmup (600 tokens) nothing is judged
    assert rule.verdict(worse[:6]) is None  # one trailing point: patience 2 waits for a second
    assert rule.verdict(worse[:7]) == reason
    assert compute_share(rule, worse[:7]) == pytest.approx(0.35)
    # a single bad point between good ones never stops a job
    spiky = _curve(1.0)
    spiky[10] = {**spiky[10], "loss": 9.0}
    assert rule.verdict(spiky) is None
    # higher-is-better curves trail from below
    up = rule_from_baselines([[{"step": s, "reward": 0.1 * s + d} for s in range(10)] for d in (0.0, 0.02)], k=2)
    assert up is not None and not up.minimize
    assert up.verdict([{"step": s, "reward": 0.05 * s} for s in range(10)]) is not None
    assert up.verdict([{"step": s, "reward": 0.1 * s} for s in range(10)]) is None


def test_without_two_baseline_curves_there_is_no_rule_and_the_option_says_so():
    assert rule_from_baselines([_curve(1.0)]) is None
    assert rule_from_baselines([_curve(1.0), [{"step": 1, "other": 2}]]) is None
    with pytest.raises(ValidationError, match="needs --baseline-seeds 2 or more"):
        RunConfig(early_abort=True)
    assert RunConfig(early_abort=True, baseline_seeds=2).early_abort


TRAIN = """import json
import math
import os
import time

lr = 0.1  # the toy optimum is 0.3
width = 4  # the toy optimum is 8

if __name__ == "__main__":
    seed = int(os.environ.get("GROUNDWORK_SEED", "0"))
    final = 10 * (lr - 0.3) ** 2 + 0.01 * (width - 8) ** 2 + 1.0  # what the evaluation will score
    out = os.environ.get("GROUNDWORK_OUT_DIR", "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "train_log.jsonl"), "w") as log:
        for step in range(1, 31):
            loss = final * (1 + 2 / (1 + step)) + 0.005 * ((seed * 7 + step) % 3 - 1)
            log.write(json.dumps({"step": step, "loss": loss}) + "\\n")
            log.flush()
            time.sleep(0.15)
    with open(os.path.join(out, "ckpt.json"), "w") as fh:
        json.dump({"lr": lr, "width": width}, fh)
"""


@pytest.mark.slow
def test_a_run_with_early_abort_stops_the_ideas_that_trail_and_keeps_the_others(toy_env, tmp_path):
    # 30 steps of 0.08 s: a job spans several of the runner's 0.5 s looks at its curve
    (toy_env / "baseline" / "train.py").write_text(TRAIN.replace("time.sleep(0.15)", "time.sleep(0.08)"))
    manifest = toy_env / "environment.toml"
    manifest.write_text(manifest.read_text().replace("time_budget_s = 3", "time_budget_s = 30"))
    runs = tmp_path / "runs"
    args = [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), "--name", "r"]
    args += ["--search", "best-of-n", "--epochs", "1", "--ideas", "4", "--baseline-seeds", "2", "--early-abort"]
    done = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    store = RunStore(runs / "r")
    results = store.results()
    ideas = [i for i in store.ideas() if i.epoch == 1]
    baseline = results["baseline"].metric
    aborted = 0
    for idea in ideas:
        result = results[idea.id]
        if result.failure == FailureCategory.PATCH_FAILED:  # a catalog edit the toy's train.py lacks
            continue
        final = json.loads((runs / "r" / store.job(f"job-{idea.id}").job_dir / "spec.json").read_text())["abort_rule"]
        assert final is not None and final["seeds"] == 2
        if result.failure == FailureCategory.ABORTED_TRAILING:
            aborted += 1
            assert "trailing the baseline at step" in result.detail
            assert 0 < result.flags["aborted_at"] < 1 and result.curve and result.curve[-1]["step"] < 30
            # it would have scored worse than the baseline (the toy's curve is its final loss, scaled)
            knobs = (runs / "r" / store.job(f"job-{idea.id}").job_dir / "work" / "train.py").read_text()
            assert "lr = 0.1" not in knobs or "width = 4" not in knobs
        else:
            assert result.valid and result.metric <= baseline * 1.01 + 1e-9, (idea.title, result)
    assert aborted >= 1
    assert f"early abort: {aborted} jobs stopped trailing the baseline" in done.stdout
    assert all(results[b].valid and results[b].failure is None for b in ("baseline", "baseline-seed1"))


@pytest.mark.slow
def test_the_benchmark_replays_the_rule_on_ideas_run_to_completion(toy_env, tmp_path):
    (toy_env / "baseline" / "train.py").write_text(TRAIN.replace("time.sleep(0.15)", "time.sleep(0.01)"))
    out = tmp_path / "early_abort.json"
    args = [sys.executable, str(REPO / "benchmarks" / "early_abort.py"), "--env", str(toy_env)]
    args += ["--ideas", "4", "--baseline-seeds", "2", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    table = json.loads(out.read_text())
    assert table["benchmark"] == "early_abort" and table["targets"]["false_abort_rate"] == "< 0.05"
    assert {(s["k"], s["patience"]) for s in table["settings"]} >= {(3.0, 2), (1.0, 1), (6.0, 3)}
    rows = table["default_rows"]
    assert rows and all(r["beats"] == (r["metric"] < 1.56) for r in rows)  # the toy baseline scores 1.56
    for row in rows:  # on the toy, a curve trails exactly when its final loss is worse
        assert (row["stop"] is not None) == (row["metric"] > 1.56 * 1.05), row
    default = next(s for s in table["settings"] if (s["k"], s["patience"]) == (3.0, 2))
    assert default["false_aborts"] == 0
    if default["doomed"]:
        assert default["compute_saved_on_doomed"] > 0
