"""An evolutionary-search run's ideas, diffs, results and rewards exported as a dataset
(JSON Lines and Parquet) that Hugging Face `datasets` loads: search runs can seed RL."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import GROUNDWORK, cli_env, importable
from groundwork.rl.dataset import FIELDS, idea_rows, write_dataset
from groundwork.store import RunStore


@pytest.mark.slow
@pytest.mark.e2e
def test_a_search_run_exports_every_idea_with_its_diff_and_reward(toy_env, tmp_path):
    parquet = importable("pyarrow")  # Parquet needs the rl extra; JSON Lines is checked without it
    runs = tmp_path / "runs"
    done = subprocess.run(
        [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), "--name", "s", "--epochs", "1",
         "--ideas", "3"],
        env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    store = RunStore(runs / "s")
    results = store.results()
    base = results["baseline"].metric

    rows = idea_rows(runs / "s")
    assert [r["idea_id"] for r in rows] == ["e1-01", "e1-02", "e1-03"]  # the baseline is not an idea
    for row in rows:
        assert set(row) == set(FIELDS)
        result = results[row["idea_id"]]
        if result.valid:
            assert row["failure"] == "" and row["metric"] == result.metric
            assert row["reward"] == pytest.approx(base - result.metric)  # loss: lower is better; noise unknown
            assert row["diff"].startswith("--- a/train.py") or "a/train.py" in row["diff"]
        else:
            assert row["reward"] == -1.0 and row["failure"]
        assert row["origin"] == "catalog (no LLM)" and row["prompt"] == "" and row["reward_unit"].startswith("loss")

    also_parquet = ["--out", str(tmp_path / "s.parquet")] if parquet else []
    out = subprocess.run(
        [*GROUNDWORK, "dataset", "export", "s", "--runs-dir", str(runs), "--out", str(tmp_path / "s.jsonl"),
         *also_parquet, "--failure-reward", "-5"],
        env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0 and "wrote 3 ideas" in out.stdout, out.stdout + out.stderr
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["idea_id"] for r in lines] == ["e1-01", "e1-02", "e1-03"]
    if not parquet:
        pytest.skip("the Parquet export needs pyarrow, of the rl extra (pip install 'groundwork[rl]')")
    datasets = pytest.importorskip("datasets", reason="reading the export back needs the rl extra (datasets)")
    data = datasets.load_dataset("parquet", data_files=str(tmp_path / "s.parquet"), split="train")
    assert data.column_names == list(FIELDS) and data["idea_id"] == ["e1-01", "e1-02", "e1-03"]
    assert data["text"] == [r["text"] for r in rows]


def test_export_refuses_an_unknown_format_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"\.jsonl or a \.parquet"):
        write_dataset([], tmp_path / "ideas.csv")
