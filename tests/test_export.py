"""`groundwork export` of a real toy run to MLflow (file store) and Weights & Biases
(offline mode): one tracker run per job, the idea and its diff attached, nothing sent twice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import GROUNDWORK, cli_env
from groundwork.store import RunStore


@pytest.fixture
def toy_run(toy_env, tmp_path) -> Path:
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            *GROUNDWORK,
            "run",
            "--env",
            str(toy_env),
            "--runs-dir",
            str(runs),
            "--name",
            "r",
            "--epochs",
            "1",
            "--ideas",
            "2",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return runs / "r"


def _export(run_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GROUNDWORK, "export", str(run_dir), *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=300,
    )


def test_mlflow_file_store_gets_one_run_per_job_with_idea_and_diff(toy_run, tmp_path):
    pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    proc = _export(toy_run, "--to", "mlflow", "--mlflow-uri", uri, "--project", "toy-exp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = RunStore(toy_run).jobs()
    assert f"mlflow: {len(jobs)} jobs exported" in proc.stdout

    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("toy-exp")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == len(jobs) == 3
    by_idea = {r.data.params["idea_id"]: r for r in found}
    assert set(by_idea) == {"baseline", "e1-01", "e1-02"}
    idea = by_idea["e1-01"]
    assert idea.data.tags["groundwork.run"] == "r" and idea.info.run_name == "r/e1-01"
    assert "loss" in idea.data.metrics and "gain_vs_baseline" in idea.data.metrics
    history = client.get_metric_history(idea.info.run_id, "loss")  # the training curve, by step
    assert history and history[0].step == 1
    files = {a.path for a in client.list_artifacts(idea.info.run_id, "groundwork")}
    assert {"groundwork/idea.md", "groundwork/patch.diff", "groundwork/result.json", "groundwork/job.log"} <= files
    diff = mlflow.artifacts.load_text(f"{idea.info.artifact_uri}/groundwork/patch.diff")
    assert "+++ b/train.py" in diff

    again = _export(toy_run, "--to", "mlflow", "--mlflow-uri", uri, "--project", "toy-exp")
    assert again.returncode == 0 and "0 jobs exported, 3 sent before" in again.stdout
    assert len(client.search_runs([experiment.experiment_id])) == 3  # nothing sent twice


def test_wandb_offline_writes_one_run_per_job(toy_run, tmp_path):
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    proc = _export(toy_run, "--to", "wandb", "--project", "toy", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wandb: 3 jobs exported" in proc.stdout
    offline = sorted((toy_run / "exports" / "wandb").glob("offline-run-*"))
    assert len(offline) == 3
    configs = []
    for folder in offline:
        assert list(folder.glob("run-*.wandb"))  # the run's record, ready for `wandb sync`
        config = (folder / "files" / "config.yaml").read_text()
        configs.append(config)
    assert sum("e1-01" in c for c in configs) == 1 and sum("baseline" in c for c in configs) >= 1
    ledger = json.loads((toy_run / "exports" / "wandb.json").read_text())
    assert set(ledger) == {j.id for j in RunStore(toy_run).jobs()}


def test_an_unconfigured_tracker_says_how_to_configure_it(toy_run, tmp_path):
    proc = _export(toy_run, "--to", "mlflow", env={"MLFLOW_TRACKING_URI": ""})
    assert proc.returncode == 2 and "MLFLOW_TRACKING_URI" in proc.stdout
    proc = _export(toy_run, "--to", "wandb", env={"WANDB_MODE": "", "WANDB_API_KEY": "", "HOME": str(tmp_path)})
    assert proc.returncode == 2 and "WANDB_API_KEY" in proc.stdout and "WANDB_MODE=offline" in proc.stdout
    proc = _export(toy_run, "--to", "tensorboard")
    assert proc.returncode != 0 and "unknown tracker" in proc.stdout + proc.stderr
