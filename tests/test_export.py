"""`groundwork export` of a real toy run to MLflow (file store) and Weights & Biases
(offline mode): one tracker run per job, the idea and its diff attached, nothing sent twice."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, GROUNDWORK, cli_env
from groundwork.export.trackers import MlflowTracker, TrackerNotReady, WandbTracker
from groundwork.store import RunStore


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One real toy run, shared by this module's tests (each exports to its own tracker)."""
    root = tmp_path_factory.mktemp("export")
    shutil.copytree(FIXTURES / "toyenv", root / "toyenv")
    proc = subprocess.run(
        [*GROUNDWORK, "run", "--env", str(root / "toyenv"), "--runs-dir", str(root / "runs"), "--name", "r",
         "--epochs", "1", "--ideas", "2"],
        capture_output=True,
        text=True,
        env=cli_env({"GROUNDWORK_CACHE": str(root / "cache")}),
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "runs" / "r"


def _export(run_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GROUNDWORK, "export", str(run_dir.resolve()), *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=run_dir.parent.parent,  # trackers may write beside the working folder (./mlruns, ./wandb)
        timeout=300,
    )


@pytest.mark.slow
def test_mlflow_gets_one_run_per_job_with_idea_and_diff(finished_run, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # for this test's own reading of the store
    # The file store: MLflow's offline store that needs no database (sqlite:/// works the same way).
    uri = (tmp_path / "mlruns").as_uri()
    env = {"MLFLOW_ALLOW_FILE_STORE": "true"}
    proc = _export(finished_run, "--to", "mlflow", "--mlflow-uri", uri, "--project", "toy-exp", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = RunStore(finished_run).jobs()
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

    again = _export(finished_run, "--to", "mlflow", "--mlflow-uri", uri, "--project", "toy-exp", env=env)
    assert again.returncode == 0 and "0 jobs exported, 3 sent before" in again.stdout
    assert len(client.search_runs([experiment.experiment_id])) == 3  # nothing sent twice


def _wandb_records(path: Path):
    """The records of an offline W&B run file (a leveldb-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    raw, pos, pending, block = path.read_bytes(), 7, b"", 32 * 1024  # 7: the ":W&B" header
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        pending += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.mark.slow
def test_wandb_offline_writes_one_run_per_job_with_idea_and_diff(finished_run, tmp_path):
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    proc = _export(finished_run, "--to", "wandb", "--project", "toy", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wandb: 3 jobs exported" in proc.stdout
    offline = sorted((finished_run / "exports" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 3  # ready for `wandb sync`
    seen = {}
    for path in offline:
        records = list(_wandb_records(path))
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        config = {item.key: json.loads(item.value_json) for item in run.config.update if item.key != "_wandb"}
        summary = {
            item.key: json.loads(item.value_json)
            for r in records
            if r.WhichOneof("record_type") == "summary"
            for item in r.summary.update
            if item.key
        }
        artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
        assert run.run_group == "r" and run.display_name == f"r/{config['idea_id']}"
        assert {"idea.md", "patch.diff", "result.json", "job.log"} <= {m.path for m in artifacts[0].manifest.contents}
        assert "loss" in summary and summary["groundwork.run"] == "r"
        seen[config["idea_id"]] = summary
    assert set(seen) == {"baseline", "e1-01", "e1-02"}
    assert "gain_vs_baseline" in seen["e1-01"] and "gain_vs_baseline" not in seen["baseline"]
    ledger = json.loads((finished_run / "exports" / "wandb.json").read_text())
    assert set(ledger) == {j.id for j in RunStore(finished_run).jobs()}
    again = _export(finished_run, "--to", "wandb", "--project", "toy", env=env)
    assert "0 jobs exported, 3 sent before" in again.stdout


def test_an_unconfigured_tracker_says_how_to_configure_it(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackerNotReady, match="MLFLOW_TRACKING_URI"):
        MlflowTracker("x")
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login either
    with pytest.raises(TrackerNotReady, match="WANDB_API_KEY.*WANDB_MODE=offline"):
        WandbTracker("x")


def test_export_refuses_an_unknown_tracker_before_sending_anything(finished_run):
    proc = _export(finished_run, "--to", "tensorboard", "--to", "wandb", env={"WANDB_MODE": "offline"})
    assert proc.returncode != 0 and "unknown tracker 'tensorboard'" in proc.stdout + proc.stderr
    assert "jobs exported" not in proc.stdout


def test_jobs_still_running_wait_for_a_later_export(finished_run, tmp_path):
    from groundwork.analysis.details import load_details
    from groundwork.export.jobs import job_records
    from groundwork.export.trackers import export_records

    class MockTracker:
        """A stand-in tracker for this test: remembers what it was sent."""

        name = "mock"

        def __init__(self):
            self.sent = []

        def send(self, record):
            self.sent.append(record.job_id)
            return f"mock-{len(self.sent)}"

    run_dir = tmp_path / "r"
    shutil.copytree(finished_run, run_dir)
    records = job_records(load_details(RunStore(run_dir)))
    records[-1].tags["groundwork.job_state"] = "running"  # as if its job had not ended yet
    tracker = MockTracker()
    assert export_records(run_dir, records, tracker) == (2, 0)
    records[-1].tags["groundwork.job_state"] = "done"
    assert export_records(run_dir, records, tracker) == (1, 2)
    assert tracker.sent == [r.job_id for r in records]  # each job once, in order


def test_a_key_a_job_printed_never_reaches_a_tracker(finished_run, tmp_path, monkeypatch):
    from groundwork.analysis.details import load_details
    from groundwork.export.jobs import job_records

    key, env_secret = "hf_" + "H" * 34, "a-value-of-the-controllers-own-secret"
    monkeypatch.setenv("MY_SERVICE_PASSWORD", env_secret)  # masked by its value wherever it shows up
    run_dir = tmp_path / "r"
    shutil.copytree(finished_run, run_dir)
    logs = sorted(run_dir.glob("jobs/*/attempt-*/job.log"))
    assert logs
    for log in logs:
        log.write_text(log.read_text() + f"token {key}\npassword {env_secret}\n")
    records = job_records(load_details(RunStore(run_dir)))
    assert records and all("job.log" in r.files for r in records)
    for record in records:
        assert "[redacted]" in record.files["job.log"]
        assert key not in record.files["job.log"] and env_secret not in record.files["job.log"]
