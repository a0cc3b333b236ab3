"""Weights & Biases and MLflow: one tracker run per job, with the idea, its diff, the
result and the job's log attached as artifacts.

Exports are resumable: what was sent is remembered in `exports/<tracker>.json` in the run
folder, so exporting again (after new jobs finished, or after an interruption) sends only
what is new."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

from groundwork.export.jobs import JobRecord
from groundwork.store.artifacts import write_atomic


class TrackerNotReady(RuntimeError):
    """The tracker's library is missing or it is not configured; the message says how to fix it."""


class Tracker(Protocol):
    name: str

    def send(self, record: JobRecord) -> str:
        """Send one job; return the tracker's id (or address) of the run it made."""
        ...


class WandbTracker:
    name = "wandb"

    def __init__(self, project: str, entity: str | None = None, directory: Path | None = None):
        try:
            import wandb
        except ImportError:
            raise TrackerNotReady("Weights & Biases is not installed: pip install 'groundwork[trackers]'") from None
        mode = os.environ.get("WANDB_MODE", "")
        netrc = Path.home() / ".netrc"
        logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")
        if mode not in ("offline", "disabled", "dryrun") and not os.environ.get("WANDB_API_KEY") and not logged_in:
            raise TrackerNotReady(
                "Weights & Biases is not configured: set WANDB_API_KEY or run `wandb login` "
                "(or WANDB_MODE=offline to write runs locally and `wandb sync` them later)"
            )
        self.wandb = wandb
        self.project, self.entity, self.directory = project, entity, directory

    def send(self, record: JobRecord) -> str:
        wandb = self.wandb
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=record.name,
            group=record.group,
            job_type=str(record.params.get("prompt_kind", "job")),
            config=record.params,
            tags=[record.tags["groundwork.status"]],
            dir=str(self.directory) if self.directory else None,
            settings=wandb.Settings(silent=True, console="off"),
        )
        try:
            for step, values in record.curve:
                run.log(values, step=step)
            run.summary.update({**record.metrics, **record.tags})
            artifact = wandb.Artifact(_safe(f"{record.group}-{record.job_id}"), type="groundwork-job")
            with tempfile.TemporaryDirectory() as tmp:
                for name, text in record.files.items():
                    (Path(tmp) / name).write_text(text, encoding="utf-8")
                    artifact.add_file(str(Path(tmp) / name), name=name)
                run.log_artifact(artifact)
            return run.id
        finally:
            run.finish()


class MlflowTracker:
    name = "mlflow"

    def __init__(self, experiment: str, tracking_uri: str | None = None):
        try:
            import mlflow
        except ImportError:
            raise TrackerNotReady("MLflow is not installed: pip install 'groundwork[trackers]'") from None
        tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            raise TrackerNotReady(
                "MLflow is not configured: set MLFLOW_TRACKING_URI or pass --mlflow-uri "
                "(e.g. sqlite:///mlflow.db, http://host:5000, "
                "or file:///path/to/mlruns with MLFLOW_ALLOW_FILE_STORE=true)"
            )
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        self.mlflow = mlflow

    def send(self, record: JobRecord) -> str:
        mlflow = self.mlflow
        with mlflow.start_run(run_name=record.name, tags=record.tags) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in record.params.items()})
            for step, values in record.curve:
                mlflow.log_metrics(_metric_names(values), step=step)
            if record.metrics:
                mlflow.log_metrics(_metric_names(record.metrics))
            for name, text in record.files.items():
                mlflow.log_text(text, f"groundwork/{name}")
            return run.info.run_id


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def _metric_names(values: dict[str, float]) -> dict[str, float]:
    return {"".join(c if c.isalnum() or c in "-_./ " else "_" for c in k): v for k, v in values.items()}


def ledger_path(run_dir: Path, tracker: str) -> Path:
    return Path(run_dir) / "exports" / f"{tracker}.json"


def export_records(
    run_dir: Path, records: list[JobRecord], tracker: Tracker, on_sent=None, only_settled: bool = True
) -> tuple[int, int]:
    """Send what the tracker has not received yet; return (sent now, sent before).

    Jobs still queued or running are left for a later export unless only_settled is False."""
    path = ledger_path(run_dir, tracker.name)
    ledger: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    before = 0
    sent = 0
    for record in records:
        if record.job_id in ledger:
            before += 1
            continue
        if only_settled and record.tags["groundwork.job_state"] in ("queued", "leased", "running"):
            continue
        ledger[record.job_id] = tracker.send(record)
        write_atomic(path, json.dumps(ledger, indent=2))  # after every job: an interruption loses nothing
        sent += 1
        if on_sent is not None:
            on_sent(record)
    return sent, before
