"""`groundwork resume --address/--artifacts-url`: a stopped run continues on another
cluster or artifact store; a change the run cannot take is refused with what to do."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import GROUNDWORK, cli_env
from groundwork.reconnect import reconnect
from groundwork.records import JobState
from groundwork.runs import run_config
from groundwork.store import ArtifactStore, RunStore
from job_queue import queue_jobs


def _run(tmp_path, **config) -> RunStore:
    """A run with two queued jobs, stored with `config`."""
    store = queue_jobs(tmp_path / "run", {"a": {"gpus": 0, "cpus": 1}, "b": {"gpus": 0, "cpus": 1}})
    store.update_config(**config)
    return store


def _config_events(store: RunStore) -> list[str]:
    return [e["detail"] for e in store.events("run") if e["to_state"] == "config"]


def test_a_new_ray_address_is_stored_and_recorded_and_running_jobs_are_requeued(tmp_path):
    store = _run(tmp_path, backend="ray", address="ray://old-head:10001")
    store.transition_job("a", JobState.LEASED, "slot 0", slot=0, job_dir="jobs/a/attempt-1")
    store.transition_job("a", JobState.RUNNING, "", worker="ray worker x")

    changed = reconnect(store, address="ray://new-head:10001")

    assert changed == {"address": "'ray://old-head:10001' -> 'ray://new-head:10001'"}
    assert run_config(store).address == "ray://new-head:10001"
    assert any("ray://new-head:10001" in detail for detail in _config_events(store))
    moved = store.job("a")
    assert (moved.state, moved.attempt) == (JobState.QUEUED, 2)  # the old cluster's worker is out of reach
    assert store.job("b").attempt == 1


def test_the_same_settings_change_nothing(tmp_path):
    store = _run(tmp_path, backend="ray", address="auto")
    events = len(store.events())
    assert reconnect(store, address="auto", artifacts_url=None) == {}
    assert len(store.events()) == events


def test_an_address_is_refused_for_a_run_that_is_not_on_ray(tmp_path):
    store = _run(tmp_path, backend="local")
    with pytest.raises(ValueError, match="'local' backend; leave --address out"):
        reconnect(store, address="auto")
    assert run_config(store).address is None


def test_a_new_artifact_store_must_already_hold_the_runs_artifacts(tmp_path):
    old, new = tmp_path / "old-store", tmp_path / "new-store"
    store = _run(tmp_path, backend="ray", artifacts_url=str(old))
    artifacts = ArtifactStore(store.run_dir, str(old), on_put=store.record_artifact)
    artifacts.put_text("patches/a.attempt-1.diff", "--- a\n+++ b\n")
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "train.py").write_text("print(1)\n")
    artifacts.put_tree("baseline", baseline)
    new.mkdir()

    with pytest.raises(ValueError) as refused:
        reconnect(store, artifacts_url=str(new))
    message = str(refused.value)
    assert "lacks 2 artifact(s)" in message and "patches/a.attempt-1.diff" in message
    assert "copy baseline/ patches/" in message and f"cp -r {old}/. {new}/" in message
    assert run_config(store).artifacts_url == str(old)  # nothing changed

    shutil.copytree(old, new, dirs_exist_ok=True)  # what the error says to do
    assert reconnect(store, artifacts_url=str(new)) == {"artifacts_url": f"{str(old)!r} -> {str(new)!r}"}
    assert run_config(store).artifacts_url == str(new)
    assert any(str(new) in detail for detail in _config_events(store))


def test_resume_refuses_an_address_for_a_local_run_with_the_fix(tmp_path):
    store = _run(tmp_path, backend="local")
    done = subprocess.run(
        [*GROUNDWORK, "resume", str(store.run_dir), "--address", "auto"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert done.returncode != 0
    assert "leave --address out" in done.stdout + done.stderr
    assert run_config(store).address is None
