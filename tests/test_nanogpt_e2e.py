"""End-to-end smoke runs of the real nanogpt environment (smoke profile: seconds-long
training, real data preparation, real locked evaluation) through the CLI."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import GROUNDWORK, cli_env
from groundwork.store import RunStore

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_nanogpt_smoke_run_end_to_end(nanogpt_smoke_run):
    proc, runs = nanogpt_smoke_run
    assert "catalog (no LLM)" in proc.stdout and "execution rate:" in proc.stdout
    store = RunStore(runs / "smoke")
    results = store.results()
    assert set(results) == {"baseline", "e1-01", "e1-02"}
    baseline = results["baseline"]
    assert baseline.valid, baseline.detail
    assert 0.3 < baseline.metric < 8.5
    assert baseline.metrics["val_bpb"] == baseline.metric and "val_loss" in baseline.metrics
    assert baseline.curve and "loss" in baseline.curve[0]
    job_dir = runs / "smoke" / store.job("job-baseline").job_dir
    assert "groundwork: evaluate (locked)" in (job_dir / "job.log").read_text()
    assert json.loads((job_dir / "outcome.json").read_text())["metric"] == baseline.metric


def test_env_commands(tmp_path):
    listing = subprocess.run([*GROUNDWORK, "env", "list"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert listing.returncode == 0 and "nanogpt" in listing.stdout and "val_bpb" in listing.stdout
    show = subprocess.run(
        [*GROUNDWORK, "env", "show", "nanogpt"], capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert show.returncode == 0 and "train.py" in show.stdout and "tiny" in show.stdout
    check = subprocess.run(
        [*GROUNDWORK, "env", "check", "nanogpt"], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "is ready" in check.stdout
    bad = subprocess.run(
        [*GROUNDWORK, "run", "--env", "nanogtp"], capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert bad.returncode == 2 and "unknown environment 'nanogtp'" in bad.stdout
