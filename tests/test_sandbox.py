"""The sandbox and per-job limits with real processes: a job that tries to reach a server
and to write outside its folder, under bubblewrap and (as the control) without it; memory
and log-size limits."""

from __future__ import annotations

import socket
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
