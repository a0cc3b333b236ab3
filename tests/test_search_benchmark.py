"""The search comparison benchmark end to end on the toy environment (catalog ideas, one
seed): it measures the noise floor, runs both strategies, writes the JSON table and the
plot, and a second invocation reuses the finished runs."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, cli_env


def test_search_comparison_writes_its_table_and_plot_and_reuses_runs(toy_env, tmp_path):
    out = tmp_path / "out" / "comparison"
    args = [
        sys.executable,
        str(REPO / "benchmarks" / "search_comparison.py"),
        *("--env", str(toy_env), "--profile", "quick", "--seeds", "3", "--ideators", "catalog"),
        *("--runs-dir", str(tmp_path / "runs"), "--out", str(out)),
    ]
    first = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    table = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000
    rows = {(r["ideator"], r["strategy"]): r for r in table["table"]}
    assert set(rows) == {("catalog", "evolution"), ("catalog", "best-of-n")}
    assert all(r["seeds"] == 1 and r["executed_ideas_compared"] >= 1 for r in rows.values())
    assert table["noise_floor"]["seeds"] == 3 and table["noise_floor"]["std"] == 0.0
    runs = table["runs"]
    assert len(runs) == 2 and all(len(r["gain"]) == len(r["metrics"]) for r in runs)
    # toy: lr 0.2 is the best catalog entry (gain 0.3); only exploiting it (lr 0.28) goes beyond
    assert max(max(g for g in r["gain"] if g is not None) for r in runs if r["strategy"] == "best-of-n") <= 0.3 + 1e-9
    assert "search_comparison.py" in table["command"]
    again = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == runs  # reused, not re-run
