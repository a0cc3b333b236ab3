"""Held-out data stays out of training's reach in a repository-shaped environment
(`codebase = "."`, the raw data file in the repository root, a locked preparation that
splits it): the raw file is hidden, so it is absent from the work folder while training
runs; the prepared held-out split is outside training's data view; inside the sandbox it is
outside the file system altogether. Real job runner, real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import patched_job
from groundwork.environments import load_environment
from groundwork.execution import sandbox
from groundwork.execution.runner import JobRunner

MANIFEST = """
name = "byo"
description = "a repository whose data file sits in its root"
goal = "Lower the held-out loss."
codebase = "."
default_profile = "quick"

[metric]
name = "test_loss"
direction = "minimize"
plausible_range = [0.0, 10.0]

[files]
editable = ["train.py"]
hidden = ["input.txt", "evaluate.py", "prepare.py"]
locked = ["input.txt", "evaluate.py", "prepare.py"]

[data]
training_files = ["train.txt"]

[run]
prepare = ["{python}", "prepare.py", "{data_dir}"]
train = ["{python}", "train.py"]
evaluate = ["{python}", "evaluate.py"]
grace_s = 5
eval_timeout_s = 20

[profiles.quick]
time_budget_s = 20
"""

PREPARE = """
import sys
from pathlib import Path
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
lines = Path("input.txt").read_text().splitlines()
(out / "train.txt").write_text("\\n".join(lines[:8]))
(out / "test.txt").write_text("\\n".join(lines[8:]))
"""

# Training records every way it tried to reach the held-out lines, and what each gave.
SPY = """
import json, os
from pathlib import Path
data = Path(os.environ["GROUNDWORK_DATA_DIR"])
tries = {
    "raw file in the work folder": Path("input.txt"),
    "held-out split beside the training split": data / "test.txt",
    "held-out split in the prepared folder": Path(os.environ["FULL_DATA_DIR"]) / "test.txt",
    "raw file in the run's snapshot": Path(os.environ["SNAPSHOT"]) / "input.txt",
}
seen = {}
for name, path in tries.items():
    try:
        seen[name] = "HELD-OUT" in path.read_text()
    except OSError as exc:
        seen[name] = type(exc).__name__
seen["training split"] = (data / "train.txt").read_text().count("train line")
Path("seen.json").write_text(json.dumps(seen))
"""

EVALUATE = """
import json, os
json.dump({"test_loss": 1.0}, open(os.environ["GROUNDWORK_RESULT_PATH"], "w"))
"""


@pytest.fixture
def repo_env(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "environment.toml").write_text(MANIFEST)
    (repo / "prepare.py").write_text(PREPARE)
    (repo / "train.py").write_text("print('baseline')\n")
    (repo / "evaluate.py").write_text(EVALUATE)
    (repo / "input.txt").write_text("\n".join([f"train line {i}" for i in range(8)] + ["HELD-OUT answer"] * 4))
    env = load_environment(repo)
    data_dir = env.prepare(env.profile(), quiet=True)
    return env, data_dir


def _spied_job(env, data_dir: Path, tmp_path: Path, mode: str):
    spec = patched_job(env, data_dir, tmp_path, {"train.py": SPY}, sandbox=mode, job_id="spy", seed=1)
    spec.env.update({"FULL_DATA_DIR": str(data_dir), "SNAPSHOT": str(env.codebase_dir)})
    return spec


def test_training_cannot_read_the_held_out_data_in_the_sandbox(tmp_path, repo_env):
    if not sandbox.probe().available:
        pytest.skip(f"no sandbox here: {sandbox.probe().detail}")
    env, data_dir = repo_env
    outcome = JobRunner(_spied_job(env, data_dir, tmp_path, "required")).run()
    assert outcome.failure is None, outcome.detail
    assert outcome.flags["sandbox"] == "bwrap"
    seen = json.loads((tmp_path / "job" / "work" / "seen.json").read_text())
    assert seen.pop("training split") == 8  # training still has its own data
    assert all(result in ("FileNotFoundError", "PermissionError") for result in seen.values()), seen


def test_without_the_sandbox_the_held_out_files_are_still_out_of_training_s_folders(tmp_path, repo_env):
    """Without bwrap nothing stops a process from reading any path it can name (the result's
    flags say the job ran unsandboxed); what Groundwork itself hands training holds no
    held-out data: the raw file is gone from the work folder and training's data folder holds
    only the training split."""
    env, data_dir = repo_env
    outcome = JobRunner(_spied_job(env, data_dir, tmp_path, "off")).run()
    assert outcome.failure is None, outcome.detail
    assert outcome.flags["sandbox"] != "bwrap"
    seen = json.loads((tmp_path / "job" / "work" / "seen.json").read_text())
    assert seen["training split"] == 8
    assert seen["raw file in the work folder"] == "FileNotFoundError"
    assert seen["held-out split beside the training split"] == "FileNotFoundError"


def test_a_data_file_the_preparation_reads_must_be_hidden(tmp_path, repo_env):
    """Left visible, the raw data file would be copied into every job's work folder: the
    manifest is refused, naming the file and the fix."""
    from groundwork.environments.manifest import ManifestError

    env, _ = repo_env
    manifest = env.root / "environment.toml"
    text = manifest.read_text().replace('hidden = ["input.txt", ', "hidden = [")
    manifest.write_text(text.replace('locked = ["input.txt", ', "locked = ["))
    with pytest.raises(ManifestError, match=r"files.hidden: 'input.txt' is read by the data preparation"):
        load_environment(env.root)
