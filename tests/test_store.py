from __future__ import annotations

import sqlite3

import pytest

from groundwork.records import (
    FailureCategory,
    Idea,
    IdeaState,
    Job,
    JobOutcome,
    JobState,
    Patch,
    PatchStatus,
    PromptKind,
    Result,
    RunStatus,
)
from groundwork.store import InvalidTransition, RunStore, StoreError


def _store(tmp_path) -> RunStore:
    return RunStore.create(tmp_path / "run", "r1", {"epochs": 1}, {"environment": "toy"})


def _idea(i: int) -> Idea:
    return Idea(
        id=f"e1-{i:02d}", epoch=1, index=i, title=f"idea {i}", text="t", prompt_kind=PromptKind.SIMPLE, origin="test"
    )


def _patch(idea_id: str, status=PatchStatus.APPLIED) -> Patch:
    return Patch(
        id=f"{idea_id}.p1",
        idea_id=idea_id,
        attempt=1,
        implementer="test",
        status=status,
        diff_path=f"patches/{idea_id}.diff",
        diff_sha256="0",
    )


def _outcome(job: Job, failure=None, metric=1.5) -> JobOutcome:
    return JobOutcome(job_id=job.id, attempt=job.attempt, failure=failure, metric=metric, started_at=1.0, ended_at=2.0)


def test_store_uses_wal_and_survives_reopen(tmp_path):
    store = _store(tmp_path)
    store.add_epoch(1, [_idea(1), _idea(2)])
    store.close()
    conn = sqlite3.connect(tmp_path / "run" / "store.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = RunStore(tmp_path / "run")
    assert [i.id for i in again.ideas()] == ["e1-01", "e1-02"]
    assert again.epoch_proposed(1) and not again.epoch_proposed(2)


def test_an_unsynced_transaction_is_committed_for_other_readers_and_later_ones_sync_again(tmp_path):
    store = _store(tmp_path)
    store.add_epoch(1, [_idea(1)])
    with store.transaction(sync=False) as c:
        c.execute("UPDATE run SET status = 'running'")
    assert RunStore(tmp_path / "run").run_info().status == "running"  # another connection sees it
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for what follows


def test_run_status_follows_its_transition_table_and_is_stored_as_its_string(tmp_path):
    store = _store(tmp_path)
    assert store.run_info().status is RunStatus.CREATED
    with pytest.raises(InvalidTransition, match="run r1: cannot go from 'created' to 'finished'"):
        store.set_run_status(RunStatus.FINISHED)
    for status in (RunStatus.RUNNING, RunStatus.INTERRUPTED, RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.FINISHED):
        store.set_run_status(status)  # resumed after Ctrl+C, then taken over after a controller died
    with pytest.raises(InvalidTransition, match="cannot go from 'finished' to 'failed'"):
        store.set_run_status(RunStatus.FAILED)
    with pytest.raises(ValueError, match="'stopped' is not a valid RunStatus"):
        store.set_run_status("stopped")  # type: ignore[arg-type]
    assert store._conn.execute("SELECT status FROM run").fetchone()[0] == "finished"
    moves = [(e["from_state"], e["to_state"]) for e in store.events() if e["entity"] == "run"]
    assert moves[-1] == ("running", "finished") and len(moves) == 5


def test_epoch_is_proposed_once(tmp_path):
    store = _store(tmp_path)
    store.add_epoch(1, [_idea(1)])
    with pytest.raises(StoreError, match="already proposed"):
        store.add_epoch(1, [_idea(2)])
    assert [i.id for i in store.ideas()] == ["e1-01"]


def test_job_lifecycle_and_single_result(tmp_path):
    store = _store(tmp_path)
    store.add_epoch(1, [_idea(1)])
    job = Job(id="job-e1-01", idea_id="e1-01", patch_id="e1-01.p1", backend="local")
    store.record_implementation("e1-01", [_patch("e1-01")], job, None)
    assert store.idea("e1-01").state == IdeaState.IMPLEMENTED
    assert store.job(job.id).state == JobState.QUEUED
    store.transition_job(job.id, JobState.LEASED, slot=0, job_dir="jobs/x")
    store.transition_job(job.id, JobState.RUNNING)
    job = store.job(job.id)
    store.finish_job(_outcome(job), Result(idea_id="e1-01", job_id=job.id, metric=1.5))
    assert store.job(job.id).state == JobState.DONE
    assert store.results()["e1-01"].metric == 1.5
    with pytest.raises(InvalidTransition, match="from 'done' to 'running'"):
        store.transition_job(job.id, JobState.RUNNING)
    with pytest.raises(StoreError, match="already has a result"):
        store.finish_job(_outcome(job), Result(idea_id="e1-01", job_id=job.id, metric=1.0))
    transitions = [(e["from_state"], e["to_state"]) for e in store.events("job")]
    assert transitions == [(None, "queued"), ("queued", "leased"), ("leased", "running"), ("running", "done")]


def test_invalid_transitions_are_refused(tmp_path):
    store = _store(tmp_path)
    store.add_epoch(1, [_idea(1)])
    job = Job(id="j", idea_id="e1-01", patch_id="e1-01.p1", backend="local")
    store.record_implementation("e1-01", [_patch("e1-01")], job, None)
    with pytest.raises(InvalidTransition):
        store.transition_job("j", JobState.RUNNING)  # queued jobs must be leased first
    with pytest.raises(InvalidTransition):
        store.transition_job("j", JobState.DONE)
    assert store.job("j").state == JobState.QUEUED


def test_requeue_starts_a_new_attempt_and_stale_outcomes_are_refused(tmp_path):
    store = _store(tmp_path)
    store.add_epoch(1, [_idea(1)])
    job = Job(id="j", idea_id="e1-01", patch_id="e1-01.p1", backend="local")
    store.record_implementation("e1-01", [_patch("e1-01")], job, None)
    store.transition_job("j", JobState.LEASED, slot=1, job_dir="jobs/j/attempt-1")
    old = store.transition_job("j", JobState.RUNNING)
    new = store.requeue_job("j", "worker lost")
    assert new.state == JobState.QUEUED and new.attempt == 2 and new.slot is None and new.job_dir == ""
    with pytest.raises(StoreError, match="attempt 1"):
        store.finish_job(_outcome(old), Result(idea_id="e1-01", job_id="j", metric=1.0))
    assert store.results() == {}


def test_failed_implementation_records_the_result_atomically(tmp_path):
    store = _store(tmp_path)
    store.add_epoch(1, [_idea(1)])
    failure = Result(idea_id="e1-01", failure=FailureCategory.PATCH_FAILED, detail="hunk 1 failed")
    with pytest.raises(StoreError):
        store.record_implementation("e1-01", [_patch("e1-01", PatchStatus.FAILED)], None, None)
    store.record_implementation("e1-01", [_patch("e1-01", PatchStatus.FAILED)], None, failure)
    assert store.idea("e1-01").state == IdeaState.PATCH_FAILED
    assert store.results()["e1-01"].failure == FailureCategory.PATCH_FAILED
    assert store.jobs() == []
    with pytest.raises(InvalidTransition):  # an idea is implemented once
        store.record_implementation("e1-01", [], None, failure)


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no run store"):
        RunStore(tmp_path)
