"""The artifact store on fsspec: the run folder by default, any fsspec URL otherwise, with
the run store's index of where each artifact lives."""

from __future__ import annotations

import pickle
import uuid

import pytest

from groundwork.store import ArtifactStore, RunStore
from groundwork.store.artifacts import RemoteArtifacts


@pytest.fixture
def run_store(tmp_path):
    return RunStore.create(tmp_path / "run", "r", {}, {})


def test_default_store_is_the_run_folder_and_is_indexed(run_store):
    artifacts = ArtifactStore(run_store.run_dir, on_put=run_store.record_artifact)
    sha = artifacts.put_text("patches/a.diff", "--- a\n+++ b\n")
    assert (run_store.run_dir / "patches" / "a.diff").read_text() == "--- a\n+++ b\n"
    assert artifacts.get_text("patches/a.diff") == "--- a\n+++ b\n"
    row = run_store.artifacts()["patches/a.diff"]
    assert row["url"] == str(run_store.run_dir.resolve() / "patches" / "a.diff")
    assert row["sha256"] == sha and row["size"] == 12


def test_any_fsspec_url_holds_the_artifacts_and_the_index_says_where(run_store):
    url = f"memory://groundwork-{uuid.uuid4().hex}/runs/r"
    artifacts = ArtifactStore(run_store.run_dir, url, on_put=run_store.record_artifact)
    artifacts.put_text("patches/a.diff", "diff text")
    assert artifacts.remote.get_bytes("patches/a.diff") == b"diff text"
    assert artifacts.path("patches/a.diff").read_text() == "diff text"  # the controller's copy
    assert run_store.artifacts()["patches/a.diff"]["url"] == f"{url}/patches/a.diff"
    # a worker's upload, fetched back into the run folder
    artifacts.remote.put_bytes("jobs/j/attempt-1/job.log", b"log line\n")
    assert artifacts.fetch("jobs/j/attempt-1/job.log").read_text() == "log line\n"
    assert run_store.artifacts()["jobs/j/attempt-1/job.log"]["url"] == f"{url}/jobs/j/attempt-1/job.log"


def test_trees_travel_both_ways_and_the_remote_side_pickles_without_its_connection(tmp_path):
    source = tmp_path / "codebase"
    (source / "pkg").mkdir(parents=True)
    (source / "train.py").write_text("print('train')\n")
    (source / "pkg" / "util.py").write_text("X = 1\n")
    remote = RemoteArtifacts(str(tmp_path / "store"))
    assert remote.put_tree("codebase/baseline", source) == 2
    clone = pickle.loads(pickle.dumps(remote))
    assert clone.get_tree("codebase/baseline", tmp_path / "copy") == 2
    assert (tmp_path / "copy" / "pkg" / "util.py").read_text() == "X = 1\n"
    assert (tmp_path / "copy" / "train.py").read_text() == "print('train')\n"


@pytest.mark.parametrize("bad", ["../outside.txt", "/etc/passwd", ""])
def test_paths_must_stay_inside_the_store(tmp_path, bad):
    with pytest.raises(ValueError, match="must be relative"):
        RemoteArtifacts(str(tmp_path)).put_bytes(bad, b"x")
