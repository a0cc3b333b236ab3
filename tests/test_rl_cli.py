"""`groundwork rl` through the real CLI and real job processes on the built-in `quadratic`
environment: a tiny random policy, killed with SIGKILL after it learned a step, resumed
to the end; then its ideas, diffs and rewards exported as a dataset."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from conftest import GROUNDWORK, KNOB_WORDS, cli_env  # noqa: E402
from groundwork.analysis.rl_steps import rl_diversity_table, rl_step_table  # noqa: E402
from groundwork.rl.tiny import build_tiny_model  # noqa: E402
from groundwork.store import RunStore  # noqa: E402

STEPS, GROUP = 2, 3


def _learned_steps(run_dir: Path) -> int:
    try:
        conn = sqlite3.connect(run_dir / "store.sqlite", timeout=10)
        try:
            return conn.execute("SELECT COUNT(*) FROM rl_steps").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
@pytest.mark.e2e
def test_rl_cli_runs_real_jobs_survives_a_kill_and_exports(tmp_path):
    model = build_tiny_model(tmp_path / "tiny", KNOB_WORDS, seed=0)
    runs = tmp_path / "runs"
    args = [
        *GROUNDWORK, "rl", "run", "--model", str(model), "--env", "quadratic",
        "--implementer", "knobs", "--steps", str(STEPS), "--group-size", str(GROUP), "--lr", "3e-3",
        "--max-new-tokens", "6", "--prompt", "goal", "--embedding-model", "none", "--slots", "2",
        "--runs-dir", str(runs), "--name", "r",
    ]  # fmt: skip
    run_dir = runs / "r"
    controller = subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while _learned_steps(run_dir) < 1 and controller.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert controller.poll() is None, controller.stdout.read().decode()  # still going when it learned step 1
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()

    # an RL run is refused by the plain resume, with the right command in the message
    plain = subprocess.run([*GROUNDWORK, "resume", str(run_dir)], env=cli_env(), capture_output=True, text=True)
    assert plain.returncode == 2 and "groundwork rl resume" in plain.stdout

    resumed = subprocess.run(
        [*GROUNDWORK, "rl", "resume", str(run_dir)], env=cli_env(), capture_output=True, text=True, timeout=400
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"RL steps learned {STEPS}/{STEPS}" in resumed.stdout

    store = RunStore(run_dir)
    ideas = [i for i in store.ideas() if i.epoch > 0]
    assert len(ideas) == STEPS * GROUP and set(store.results()) >= {i.id for i in ideas}  # nothing lost
    assert store.run_info().status == "finished"
    assert all(i.origin.startswith("rl:") and "rl" in i.payload for i in ideas)
    assert (run_dir / "rl" / "checkpoints" / f"step-{STEPS:05d}" / "optimizer.pt").is_file()
    table = rl_step_table(run_dir)
    assert [r["step"] for r in table] == list(range(1, STEPS + 1))
    assert all(0 <= r["execution_rate"] <= 1 and r["distinct_2"] is not None for r in table)
    assert set(rl_diversity_table(run_dir)[0]) == {
        "step", "distinct_1", "distinct_2", "pairwise_similarity", "embedding_spread",
    }  # fmt: skip

    # every idea, with its diff and reward, as a dataset Hugging Face `datasets` loads
    datasets = pytest.importorskip("datasets")
    out = subprocess.run(
        [*GROUNDWORK, "dataset", "export", str(run_dir), "--out", str(tmp_path / "d.jsonl"),
         "--out", str(tmp_path / "d.parquet")],
        env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    for kind, name in (("json", "d.jsonl"), ("parquet", "d.parquet")):
        data = datasets.load_dataset(kind, data_files=str(tmp_path / name), split="train")
        assert len(data) == STEPS * GROUP
        applied = [r for r in data if r["patch_applied"]]
        assert applied and all("b/train.py" in r["diff"] for r in applied)
        assert all(r["prompt"] and r["reward"] is not None for r in data)
        assert {r["failure"] == "" for r in data} <= {True, False}

    # the run's report shows the per-step rewards and diversity
    html_path = tmp_path / "report.html"
    report = subprocess.run(
        [*GROUNDWORK, "report", str(run_dir), "--categories-by", "keywords", "--out", str(html_path)],
        env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    page = html_path.read_text()
    assert 'id="rl"' in page and "RL reward and diversity per step" in page
    assert "<th>distinct 2</th>" in page and f"{run_dir.name}: {STEPS} steps" in page  # the per-step table
