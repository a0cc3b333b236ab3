"""A worker without the controller's data cache prepares the data itself (once per node),
through the real remote-job contract: baseline and outcome travel through an artifact store
in another folder, the job runs in a scratch folder, training sees only its split."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from groundwork.environments import load_environment
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.remote_job import describe, ensure_baseline, run_remote_job
from groundwork.records import FailureCategory, JobOutcome
from groundwork.store import ArtifactStore

PREPARE = """import os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
if os.environ.get("TOY_PREPARE_FAILS"):
    sys.exit("no network here")
for name in ("train.txt", "heldout.txt"):
    with open(os.path.join(out, name), "w") as fh:
        fh.write(name)
print("prepared", out)
"""
# Training that lists what it finds in its data folder, then runs the toy train.py.
SHOW_DATA = (
    "import os, runpy; print('SEEN=' + ','.join(sorted(os.listdir(os.environ['GROUNDWORK_DATA_DIR']))), flush=True); "
    "runpy.run_path('train.py', run_name='__main__')"
)


@pytest.fixture
def prepared_env(toy_env, tmp_path, monkeypatch):
    """The toy environment with a data preparation step and a training split, prepared in
    the controller's cache."""
    (toy_env / "baseline" / "prepare.py").write_text(PREPARE)
    manifest = toy_env / "environment.toml"
    text = manifest.read_text().replace(
        'evaluate = ["{python}", "evaluate.py"]',
        'evaluate = ["{python}", "evaluate.py"]\nprepare = ["{python}", "prepare.py", "--out", "{data_dir}"]',
    )
    manifest.write_text(text + '\n[data]\ntraining_files = ["train.txt"]\n')
    monkeypatch.setenv("GROUNDWORK_CACHE", str(tmp_path / "cache"))
    env = load_environment(toy_env)
    data = env.prepare(env.profile(), quiet=True)
    return env, data


def _remote_job(env, data: Path, run_dir: Path, job_id: str, **spec_env):
    artifacts = ArtifactStore(run_dir, url=str(run_dir.parent / "bucket"))
    ensure_baseline(artifacts, env.codebase_dir)
    spec = environment_job_spec(env, env.profile(), data, run_dir / "jobs" / job_id, job_id=job_id, seed=0)
    spec = dataclasses.replace(
        spec, train_command=["{python}", "-c", SHOW_DATA], sandbox="off", env={**spec.env, **spec_env}
    )
    return describe(run_dir, spec, artifacts.remote, heartbeat_s=1.0), artifacts


def test_a_worker_without_the_data_prepares_it_once_and_trains_on_its_split(prepared_env, tmp_path):
    env, data = prepared_env
    run_dir = tmp_path / "run"
    first, artifacts = _remote_job(env, data, run_dir, "a")
    second, _ = _remote_job(env, data, run_dir, "b")
    shutil.rmtree(data)  # this "worker" has no copy of the controller's cache
    shutil.rmtree(data.with_name(data.name + ".training"))

    outcome = JobOutcome.model_validate_json(run_remote_job(first, scratch_root=str(tmp_path / "scratch")))
    assert outcome.failure is None and outcome.metric is not None, outcome.detail
    log = artifacts.fetch("jobs/a/job.log").read_text()
    assert "SEEN=train.txt\n" in log  # the held-out file was prepared, but not shown to training
    assert sorted(p.name for p in data.iterdir()) == ["heldout.txt", "train.txt"]
    assert "prepared" in artifacts.fetch("jobs/a/prepare.log").read_text()

    outcome = JobOutcome.model_validate_json(run_remote_job(second, scratch_root=str(tmp_path / "scratch")))
    assert outcome.failure is None
    assert not artifacts.remote.exists("jobs/b/prepare.log")  # prepared once per node


def test_a_worker_that_cannot_prepare_the_data_says_why(prepared_env, tmp_path):
    env, data = prepared_env
    run_dir = tmp_path / "run"
    job, artifacts = _remote_job(env, data, run_dir, "a", TOY_PREPARE_FAILS="1")
    shutil.rmtree(data)
    outcome = JobOutcome.model_validate_json(run_remote_job(job, scratch_root=str(tmp_path / "scratch")))
    assert outcome.failure == FailureCategory.CRASHED and outcome.flags["worker_data_missing"]
    assert "data preparation on worker" in outcome.detail and "prepare.py --out" in outcome.detail
    assert "no network here" in artifacts.fetch("jobs/a/prepare.log").read_text()
    assert json.loads(artifacts.fetch("jobs/a/outcome.json").read_text())["failure"] == "crashed"


def test_a_worker_without_the_preflight_profiles_data_prepares_it_with_that_profiles_settings(prepared_env, tmp_path):
    env, data = prepared_env
    (env.codebase_dir / "prepare.py").write_text(
        PREPARE + "open(os.path.join(out, 'train.txt'), 'w').write(os.environ.get('TOY_SCALE', 'quick'))\n"
    )
    manifest = env.root / "environment.toml"
    text = manifest.read_text().replace("[run]\n", '[run]\npreflight = "pre"\n', 1)
    manifest.write_text(
        text
        + '\n[profiles.pre]\ntime_budget_s = 3\ndata_key = "pre-v1"\n'
        + '\n[profiles.pre.env]\nTOY_SLEEP_S = "0"\nTOY_SCALE = "pre"\n'
    )
    env = load_environment(env.root)
    pre = env.profile("pre")
    pre_data = env.prepare(pre, quiet=True)
    assert pre_data != data and (pre_data / "train.txt").read_text() == "pre"
    run_dir = tmp_path / "run"
    artifacts = ArtifactStore(run_dir, url=str(run_dir.parent / "bucket"))
    ensure_baseline(artifacts, env.codebase_dir)
    spec = environment_job_spec(env, env.profile(), data, run_dir / "jobs" / "a", job_id="a", seed=0, preflight=pre)
    show = [
        "{python}",
        "-c",
        SHOW_DATA.replace(
            "','.join(", "open(os.environ['GROUNDWORK_DATA_DIR'] + '/train.txt').read() + ':' + ','.join("
        ),
    ]
    spec = dataclasses.replace(
        spec, train_command=show, sandbox="off", preflight={**spec.preflight, "train_command": show}
    )
    job = describe(run_dir, spec, artifacts.remote, heartbeat_s=1.0)
    for folder in (data, pre_data):  # this "worker" has neither profile's data
        shutil.rmtree(folder)
        shutil.rmtree(folder.with_name(folder.name + ".training"))

    outcome = JobOutcome.model_validate_json(run_remote_job(job, scratch_root=str(tmp_path / "scratch")))
    assert outcome.failure is None and outcome.flags["preflight"]["passed"], outcome.detail
    log = artifacts.fetch("jobs/a/job.log").read_text()
    # Each stage trained on its own profile's data, prepared here with that profile's settings.
    assert log.index("SEEN=pre:train.txt\n") < log.index("SEEN=quick:train.txt\n")
    assert artifacts.fetch("jobs/a/prepare.log").read_text().count("preparing data on") == 2


def test_a_preparation_waits_for_one_already_running_on_the_same_folder(prepared_env):
    """Two runs (or test workers, or a remote worker on this node) share the data cache: a
    second preparation of the same folder waits on the first one's lock, then finds the data made."""
    import threading

    from groundwork.environments.registry import preparation_lock

    env, data = prepared_env
    shutil.rmtree(data)
    done = threading.Event()
    with preparation_lock(data):  # a preparation in progress elsewhere (a worker's takes the same lock)
        worker = threading.Thread(target=lambda: (env.prepare(env.profile(), quiet=True), done.set()))
        worker.start()
        assert not done.wait(1.0) and not data.exists()  # it waits: nothing half-written beside the other
    worker.join(60)
    assert done.is_set() and sorted(p.name for p in data.iterdir()) == ["heldout.txt", "train.txt"]
