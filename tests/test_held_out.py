"""No held-out data in training's reach, with `codebase = "."` and the whole data file in the
repository root: the file marked hidden is not in the work folder; inside the sandbox neither
the run's codebase snapshot nor the whole prepared folder exists either; without a sandbox the
result says its held-out data was reachable."""

from __future__ import annotations

import json

import pytest

from groundwork.environments import load_environment
from groundwork.execution import sandbox
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.runner import JobRunner
from test_placeholders import _write_env

# A training script that goes looking for the held-out line ("4") every way it can.
SNOOP = """
import json, os, sys
flags = dict(zip(sys.argv[1::2], sys.argv[2::2]))
places = {  # paths a script can guess (the data view's sibling, the snapshot's place)
    "work folder": "input.txt",
    "codebase snapshot": os.path.join(BASELINE, "input.txt"),
    "whole data folder": os.path.join(WHOLE, "val.txt"),
}
found = {}
for where, path in places.items():
    try:
        found[where] = "4" in open(path).read()
    except OSError:
        found[where] = False
json.dump(found, open(os.path.join(flags["--out"], "found.json"), "w"))
"""


@pytest.mark.parametrize("mode", ["required", "off"])
def test_training_cannot_read_the_held_out_data_file_in_the_repository_root(tmp_path, mode):
    if mode == "required" and not sandbox.probe().available:
        pytest.skip(f"no sandbox here: {sandbox.probe().detail}")
    root = _write_env(tmp_path / "repo")
    manifest = root / "environment.toml"
    manifest.write_text(
        manifest.read_text().replace('hidden = ["evaluate.py"]', 'hidden = ["evaluate.py", "input.txt"]')
    )
    env = load_environment(root)
    data_dir = env.prepare(env.profile(), quiet=True)
    paths = f"BASELINE = {str(env.codebase_dir.resolve())!r}\nWHOLE = {str(data_dir.resolve())!r}\n"
    (root / "train.py").write_text(paths + SNOOP.lstrip())
    job = tmp_path / "job"
    job.mkdir()
    spec = environment_job_spec(env, env.profile(), data_dir, job, job_id="j1", seed=1, sandbox=mode)
    outcome = JobRunner(spec).run()
    assert outcome.failure is None, outcome.detail
    found = json.loads((job / "work" / "out" / "found.json").read_text())
    assert found["work folder"] is False  # hidden: never in the work folder, whatever the codebase
    if mode == "required":
        assert found == {"work folder": False, "codebase snapshot": False, "whole data folder": False}
        assert outcome.flags["held_out_protected"] is True
    else:  # the same user can read anything: the result says so
        assert found["codebase snapshot"] and found["whole data folder"]
        assert outcome.flags["held_out_protected"] is False
    assert (job / "work" / "input.txt").is_file()  # the evaluation alone had it back
