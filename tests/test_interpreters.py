"""An environment's own interpreter: built from its manifest's requirements (offline, from a
local wheel), cached, recorded as a lock, used as `{python}` by every command; a requirement
that cannot be met fails before any job, and a worker builds its own from the spec. With
`inherit_packages` it sees the packages of Groundwork's own interpreter (a venv's too) and
installs only what they do not already satisfy."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sysconfig
from pathlib import Path

import pytest

from groundwork.environments import load_environment
from groundwork.environments.interpreters import LOCK_NAME, InterpreterError
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.runner import JobRunner
from groundwork.execution.worker_data import WorkerDataError, worker_interpreter
from test_placeholders import _write_env
from wheels import write_wheel

USES_PACKAGE = """
import json, os, sys
import gwtiny  # the environment's own requirement: not in Groundwork's interpreter
flags = dict(zip(sys.argv[1::2], sys.argv[2::2]))
seen = {"value": gwtiny.VALUE, "python": sys.executable}
json.dump(seen, open(os.path.join(flags["--out"], "train_flags.json"), "w"))
"""


def _env_with_requirements(tmp_path: Path, requirement: str, options: str = "") -> Path:
    root = _write_env(tmp_path / "repo")
    (root / "train.py").write_text(USES_PACKAGE.lstrip())
    write_wheel(root / "wheels", "gwtiny", "0.1", "VALUE = 41\n")
    (root / "requirements.txt").write_text(f"# the repository's own\n{requirement}\n")
    with open(root / "environment.toml", "a") as fh:
        fh.write('\n[dependencies]\nrequirements_file = "requirements.txt"\nfind_links = ["wheels"]\nno_index = true\n')
        fh.write(options)
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


IMPORTS = "import importlib.util as u, json, sys; print(json.dumps({n: bool(u.find_spec(n)) for n in sys.argv[1:]}))"


def _importable(python: str, *names: str) -> dict[str, bool]:
    done = subprocess.run([python, "-c", IMPORTS, *names], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_inherited_packages_are_importable_and_not_installed_again(tmp_path):
    # gwlayer needs numpy; the wheel folder has no numpy and there is no index, so only
    # Groundwork's own numpy can satisfy it (and the pydantic line).
    root = _env_with_requirements(tmp_path, "gwlayer==0.1\npydantic", "inherit_packages = true\n")
    write_wheel(root / "wheels", "gwlayer", "0.1", "import numpy\nVALUE = int(numpy.int64(7))\n", requires=("numpy",))
    env = load_environment(root)
    assert env.manifest.dependencies.inherit_packages and env.interpreter_request().inherit_packages
    built = env.interpreter()
    assert _importable(built.python, "gwlayer", "numpy", "pydantic") == {"gwlayer": True, "numpy": True,
                                                                         "pydantic": True}  # fmt: skip
    where = subprocess.run([built.python, "-c", "import gwlayer, numpy; print(gwlayer.VALUE, numpy.__file__)"],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert where[0] == "7" and Path(where[1]).is_relative_to(sysconfig.get_path("purelib"))  # Groundwork's numpy
    own = Path(built.python).parent.parent
    installed = {p.name.split("-")[0].lower() for p in own.glob("lib/python*/site-packages/*.dist-info")}
    assert installed == {"gwlayer"}  # numpy and pydantic were already satisfied: nothing else installed
    assert "gwlayer==0.1" in built.lock and "numpy==" in built.lock  # the lock is what the interpreter sees


def test_without_inheriting_groundworks_packages_are_not_importable(tmp_path):
    env = load_environment(_env_with_requirements(tmp_path, "gwtiny==0.1"))
    built = env.interpreter()
    assert _importable(built.python, "gwtiny", "numpy", "pydantic") == {"gwtiny": True, "numpy": False,
                                                                        "pydantic": False}  # fmt: skip
    inheriting = dataclasses.replace(env.interpreter_request(), inherit_packages=True)
    assert inheriting.key() != env.interpreter_request().key()  # a separate cached interpreter
