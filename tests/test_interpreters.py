"""An environment's own interpreter: built from its manifest's requirements (offline, from a
local wheel), cached, recorded as a lock, used as `{python}` by every command; a requirement
that cannot be met fails before any job, and a worker builds its own from the spec."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from groundwork.environments import load_environment
from groundwork.environments.interpreters import LOCK_NAME, InterpreterError
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.runner import JobRunner
from groundwork.execution.worker_data import WorkerDataError, worker_interpreter
from test_placeholders import _write_env

USES_PACKAGE = """
import json, os, sys
import gwtiny  # the environment's own requirement: not in Groundwork's interpreter
flags = dict(zip(sys.argv[1::2], sys.argv[2::2]))
seen = {"value": gwtiny.VALUE, "python": sys.executable}
json.dump(seen, open(os.path.join(flags["--out"], "train_flags.json"), "w"))
"""


def _wheel(folder: Path, name: str, version: str, body: str) -> Path:
    """A pure-Python wheel written by hand (no build tool, no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_in_zip, text in {**files, f"{dist}/RECORD": "\n".join(record) + "\n"}.items():
            zf.writestr(name_in_zip, text)
    return path


def _env_with_requirements(tmp_path: Path, requirement: str) -> Path:
    root = _write_env(tmp_path / "repo")
    (root / "train.py").write_text(USES_PACKAGE.lstrip())
    _wheel(root / "wheels", "gwtiny", "0.1", "VALUE = 41\n")
    (root / "requirements.txt").write_text(f"# the repository's own\n{requirement}\n")
    with open(root / "environment.toml", "a") as fh:
        fh.write('\n[dependencies]\nrequirements_file = "requirements.txt"\nfind_links = ["wheels"]\nno_index = true\n')
    return root


def test_the_environment_runs_with_its_own_requirements(tmp_path):
    env = load_environment(_env_with_requirements(tmp_path, "gwtiny==0.1"))
    data_dir = env.prepare(env.profile(), quiet=True)  # builds the interpreter first
    built = env.interpreter()
    assert built is not None and "gwtiny==0.1" in built.lock
    assert "gwtiny==0.1" in (Path(built.python).parent.parent / LOCK_NAME).read_text()
    marker = Path(built.python).parent.parent / ".groundwork-complete"
    stamp = marker.stat().st_mtime_ns
    assert env.interpreter() == built and marker.stat().st_mtime_ns == stamp  # cached, not rebuilt
    spec = environment_job_spec(env, env.profile(), data_dir, tmp_path / "job", job_id="j1", seed=1, sandbox="auto")
    assert spec.python == built.python and spec.interpreter["requirements"] == ["gwtiny==0.1"]
    (tmp_path / "job").mkdir()
    outcome = JobRunner(spec).run()
    assert outcome.failure is None, outcome.detail
    seen = json.loads((tmp_path / "job" / "work" / "out" / "train_flags.json").read_text())
    assert seen == {"value": 41, "python": built.python}


def test_an_unsatisfiable_requirement_fails_before_any_job_and_names_it(tmp_path):
    env = load_environment(_env_with_requirements(tmp_path, "gwtiny==9.9"))
    with pytest.raises(InterpreterError) as caught:
        env.prepare(env.profile(), quiet=True)
    assert "gwtiny==9.9" in str(caught.value) and "'flags'" in str(caught.value)
    print(caught.value)


def test_a_worker_builds_the_interpreter_from_the_spec(tmp_path, monkeypatch):
    env = load_environment(_env_with_requirements(tmp_path, "gwtiny==0.1"))
    data_dir = env.prepare(env.profile(), quiet=True)
    spec = environment_job_spec(env, env.profile(), data_dir, tmp_path / "job", job_id="j1", seed=1)
    # A node that shares nothing: another cache, and the controller's interpreter path unknown there.
    monkeypatch.setenv("GROUNDWORK_CACHE", str(tmp_path / "node-cache"))
    here = worker_interpreter(dataclasses.replace(spec, python="/controller/only/bin/python"))
    assert Path(here.python).is_relative_to(tmp_path / "node-cache")
    printed = subprocess.run([here.python, "-c", "import gwtiny; print(gwtiny.VALUE)"], capture_output=True, text=True)
    assert printed.stdout.strip() == "41"
    broken = {**spec.interpreter, "requirements": ["gwtiny==9.9"]}
    with pytest.raises(WorkerDataError, match=r"gwtiny==9\.9"):
        worker_interpreter(dataclasses.replace(spec, interpreter=broken))
