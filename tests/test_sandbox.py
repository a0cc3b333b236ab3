"""The sandbox and per-job limits with real processes: a job that tries to reach a server
and to write outside its folder, under bubblewrap and (as the control) without it; memory
and log-size limits."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from groundwork.execution import sandbox
from groundwork.execution.runner import JobRunner
from groundwork.records import FailureCategory
from test_runner import TRAIN_EDITS, _patched, _spec

needs_bwrap = pytest.mark.skipif(
    not sandbox.probe().available, reason=f"bubblewrap cannot run here: {sandbox.probe().detail}"
)


@pytest.fixture
def local_server():
    """A TCP server on this machine's loopback: reachable from any unsandboxed process."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[bool] = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(True)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


def _escape_attempt(port: int, outside: Path) -> str:
    """Training code that reports what it managed: a connection, a write outside its folder."""
    return (
        "    import socket\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
        "        print('NETWORK: connected')\n"
        "    except OSError as exc:\n"
        "        print('NETWORK: blocked', exc)\n"
        "    try:\n"
        f"        open({str(outside)!r}, 'w').write('escaped')\n"
        "        print('WRITE OUTSIDE: done')\n"
        "    except OSError as exc:\n"
        "        print('WRITE OUTSIDE: blocked', exc)\n"
        "    open('inside.txt', 'w').write('fine')\n"
        "    time.sleep(sleep_s)\n"
    )


@needs_bwrap
def test_sandboxed_job_cannot_reach_the_network_or_write_outside_its_folder(toy_env, tmp_path, local_server):
    port, accepted = local_server
    outside = tmp_path / "outside" / "escape.txt"
    outside.parent.mkdir()
    train = _patched(toy_env, TRAIN_EDITS, _escape_attempt(port, outside))
    spec = _spec(toy_env, tmp_path / "job", train, sandbox="required")
    outcome = JobRunner(spec).run()
    log = (tmp_path / "job" / "job.log").read_text()
    assert outcome.failure is None, outcome.detail  # the job itself still runs and is evaluated
    assert outcome.flags["sandbox"] == "bwrap"
    assert "NETWORK: blocked" in log and "WRITE OUTSIDE: blocked" in log, log
    assert not accepted and not outside.exists()
    assert (tmp_path / "job" / "work" / "inside.txt").read_text() == "fine"


def test_without_the_sandbox_the_same_job_gets_out(toy_env, tmp_path, local_server):
    """The control: the escape attempts above are real ones that succeed unsandboxed."""
    port, accepted = local_server
    outside = tmp_path / "outside" / "escape.txt"
    outside.parent.mkdir()
    train = _patched(toy_env, TRAIN_EDITS, _escape_attempt(port, outside))
    outcome = JobRunner(_spec(toy_env, tmp_path / "job", train, sandbox="off")).run()
    log = (tmp_path / "job" / "job.log").read_text()
    assert outcome.failure is None and outcome.flags["sandbox"] == "off"
    assert "NETWORK: connected" in log and accepted
    assert outside.read_text() == "escaped"


@needs_bwrap
def test_sandboxed_runaway_is_still_killed_at_the_deadline(toy_env, tmp_path):
    train = _patched(
        toy_env,
        TRAIN_EDITS,
        "    import subprocess, sys\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)'])\n"
        "    time.sleep(1000)\n",
    )
    spec = _spec(toy_env, tmp_path / "job", train, time_budget_s=1.0, grace_s=0.5, sandbox="required")
    outcome = JobRunner(spec).run()
    assert outcome.failure == FailureCategory.TIMED_OUT
    assert outcome.flags["sandbox"] == "bwrap"


def test_unavailable_sandbox_warns_or_refuses(toy_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))  # no bwrap to be found
    sandbox.probe.cache_clear()
    try:
        auto = JobRunner(_spec(toy_env, tmp_path / "auto", sandbox="auto")).run()
        required = JobRunner(_spec(toy_env, tmp_path / "required", sandbox="required")).run()
    finally:
        sandbox.probe.cache_clear()
    assert auto.failure is None and auto.flags["sandbox"].startswith("none: bwrap is not installed")
    assert "WARNING: model-written code runs WITHOUT a sandbox" in (tmp_path / "auto" / "job.log").read_text()
    assert required.failure == FailureCategory.CRASHED
    assert "sandbox is required but unavailable" in required.detail and "apt-get install bubblewrap" in required.detail


def test_a_job_over_its_memory_limit_is_killed(toy_env, tmp_path):
    train = _patched(
        toy_env,
        TRAIN_EDITS,
        "    block = bytearray(400 * 2**20)\n"  # 400 MB, touched: resident
        "    time.sleep(30)\n",
    )
    spec = _spec(toy_env, tmp_path / "job", train, time_budget_s=30.0, memory_limit_mb=150)
    outcome = JobRunner(spec).run()
    assert outcome.failure == FailureCategory.CRASHED
    assert "memory limit of 150 MB" in outcome.detail
    assert outcome.ended_at - outcome.started_at < 20


def test_output_past_the_log_limit_is_dropped_and_flagged(toy_env, tmp_path):
    train = _patched(
        toy_env,
        TRAIN_EDITS,
        "    import sys\n    sys.stdout.write(('y' * 99 + '\\n') * 30000)\n    time.sleep(sleep_s)\n",
    )
    spec = _spec(toy_env, tmp_path / "job", train, log_limit_mb=0.1)
    outcome = JobRunner(spec).run()
    log = tmp_path / "job" / "job.log"
    assert outcome.failure is None, outcome.detail  # a chatty job is not a failed one
    assert outcome.flags["log_truncated"] is True
    assert log.stat().st_size < 0.2 * 2**20 and "output past 0.1 MB dropped" in log.read_text()


# ---- least privilege: what a job's code can see ----------------------------------------

FAKE_KEY = "sk-ant-api03-" + "Q" * 40


def _prints_environment() -> str:
    return "    print('ENV:', sorted(os.environ.items()))\n    time.sleep(sleep_s)\n"


@pytest.mark.parametrize("mode", ["off", pytest.param("required", marks=needs_bwrap)])
def test_a_job_never_gets_the_controllers_api_keys(toy_env, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-" + "z" * 20)
    monkeypatch.setenv("TOY_PASSED", "declared")
    monkeypatch.setenv("TOY_NOT_PASSED", "undeclared")
    train = _patched(toy_env, TRAIN_EDITS, _prints_environment())
    spec = _spec(toy_env, tmp_path / "job", train, sandbox=mode, pass_env=["TOY_PASSED"])
    outcome = JobRunner(spec).run()
    assert outcome.failure is None, outcome.detail
    log = (tmp_path / "job" / "job.log").read_text()
    assert "ENV:" in log
    assert FAKE_KEY not in log and "ANTHROPIC_API_KEY" not in log and "SOME_SERVICE_TOKEN" not in log
    assert "'TOY_PASSED', 'declared'" in log and "TOY_NOT_PASSED" not in log
    assert f"'HOME', '{tmp_path / 'job' / 'work' / '.home'}'" in log  # not the user's


def test_a_secret_named_in_pass_env_is_refused_with_the_reason(toy_env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-" + "k" * 30)
    spec = _spec(toy_env, tmp_path / "job", pass_env=["OPENAI_API_KEY"])
    outcome = JobRunner(spec).run()
    assert outcome.failure == FailureCategory.CRASHED
    assert "OPENAI_API_KEY" in outcome.detail and "never gets API keys" in outcome.detail


def _reads_and_writes(targets: dict[str, Path], writes: dict[str, Path]) -> str:
    """Training code that reports, per name, whether it could read or write a path."""
    code = ""
    for name, path in targets.items():
        code += (
            "    try:\n"
            f"        open({str(path)!r}).read()\n"
            f"        print('READ {name}: done')\n"
            "    except OSError as exc:\n"
            f"        print('READ {name}: blocked', exc)\n"
        )
    for name, path in writes.items():
        code += (
            "    try:\n"
            f"        open({str(path)!r}, 'w').write('x')\n"
            f"        print('WRITE {name}: done')\n"
            "    except OSError as exc:\n"
            f"        print('WRITE {name}: blocked', exc)\n"
        )
    return code + "    time.sleep(sleep_s)\n"


def _private_world(tmp_path: Path) -> dict[str, Path]:
    """A user's home with a key, a run folder with its store, a prepared data folder with
    a validation split and its training view (hard links, as the registry makes it)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    run = tmp_path / "runs" / "r"
    (run / "jobs" / "job-test").mkdir(parents=True)
    (run / "store.sqlite").write_text("the run's records")
    (run / "environment").mkdir()
    (run / "environment" / "evaluate.py").write_text("hidden evaluation")
    data = tmp_path / "cache" / "data"
    data.mkdir(parents=True)
    (data / "train.txt").write_text("training split")
    (data / "val.txt").write_text("validation split")
    view = tmp_path / "cache" / "data.training"
    view.mkdir()
    os.link(data / "train.txt", view / "train.txt")
    return {"home": home, "run": run, "data": data, "view": view}


@pytest.mark.parametrize("mode", [pytest.param("required", marks=needs_bwrap), "off"])
def test_sandboxed_training_sees_only_its_work_folder_and_training_data(toy_env, tmp_path, monkeypatch, mode):
    world = _private_world(tmp_path)
    monkeypatch.setenv("HOME", str(world["home"]))
    reads = {
        "ssh key": world["home"] / ".ssh" / "id_ed25519",
        "store": world["run"] / "store.sqlite",
        "hidden evaluation": world["run"] / "environment" / "evaluate.py",
        "validation": world["data"] / "val.txt",
        "training data": world["view"] / "train.txt",
    }
    writes = {"data": world["view"] / "train.txt", "run folder": world["run"] / "planted.txt"}
    train = _patched(toy_env, TRAIN_EDITS, _reads_and_writes(reads, writes))
    job_dir = world["run"] / "jobs" / "job-test" / "attempt-1"
    env = {
        "TOY_SLEEP_S": "0.1",
        "GROUNDWORK_DATA_DIR": str(world["data"]),
        "GROUNDWORK_TRAIN_DATA_DIR": str(world["view"]),
    }
    outcome = JobRunner(_spec(toy_env, job_dir, train, sandbox=mode, env=env)).run()
    log = (job_dir / "job.log").read_text()
    assert outcome.failure is None, outcome.detail
    assert "READ training data: done" in log
    if mode == "off":  # the control: every one of these is a real read or write unsandboxed
        assert all(f"READ {name}: done" in log for name in reads), log
        assert all(f"WRITE {name}: done" in log for name in writes), log
        return
    for name in ("ssh key", "store", "hidden evaluation", "validation"):
        assert f"READ {name}: blocked" in log, log
    assert "WRITE data: blocked" in log, log
    # Under /tmp the run folder's path exists inside only as the sandbox's private /tmp: a
    # write there lands in that throw-away folder, never in the run.
    assert not (world["run"] / "planted.txt").exists()
    assert (world["view"] / "train.txt").read_text() == "training split"


@needs_bwrap
def test_the_sandboxed_evaluation_gets_the_whole_data_folder(toy_env, tmp_path):
    world = _private_world(tmp_path)
    evaluate = toy_env / "baseline" / "evaluate.py"
    evaluate.write_text(
        "import os\nprint('EVAL SEES:', sorted(os.listdir(os.environ['GROUNDWORK_DATA_DIR'])))\n" + evaluate.read_text()
    )
    env = {
        "TOY_SLEEP_S": "0.1",
        "GROUNDWORK_DATA_DIR": str(world["data"]),
        "GROUNDWORK_TRAIN_DATA_DIR": str(world["view"]),
    }
    job_dir = tmp_path / "job"
    outcome = JobRunner(_spec(toy_env, job_dir, sandbox="required", env=env)).run()
    assert outcome.failure is None, outcome.detail
    assert "EVAL SEES: ['train.txt', 'val.txt']" in (job_dir / "job.log").read_text()


def test_a_manifest_passes_declared_variables_and_refuses_secret_ones(toy_env, tmp_path):
    from groundwork.environments import ManifestError, load_environment
    from groundwork.execution.job_spec import environment_job_spec

    env = load_environment(toy_env)
    spec = environment_job_spec(env, env.profile(), tmp_path / "data", tmp_path / "job", job_id="j", seed=0)
    assert spec.pass_env == ["TOY_LEDGER"]
    manifest = toy_env / "environment.toml"
    manifest.write_text(
        manifest.read_text().replace('pass_env = ["TOY_LEDGER"]', 'pass_env = ["TOY_LEDGER", "GITHUB_TOKEN"]')
    )
    with pytest.raises(ManifestError, match="GITHUB_TOKEN"):
        load_environment(toy_env)


@needs_bwrap
def test_an_interpreter_reached_through_a_symlinked_folder_runs_sandboxed(toy_env, tmp_path):
    """The sandbox binds real paths; a venv reached through a link (a checkout's `.venv` that
    points at a shared one) still starts its phases."""
    linked = tmp_path / "linked-venv"
    linked.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    python = linked / "bin" / Path(sys.executable).name
    assert python.exists()
    spec = dataclasses.replace(
        _spec(toy_env, tmp_path / "job", env={"TOY_SLEEP_S": "0.1"}, sandbox="required"), python=str(python)
    )
    outcome = JobRunner(spec).run()
    assert outcome.failure is None, outcome.detail
    assert outcome.flags["sandbox"] == "bwrap"
