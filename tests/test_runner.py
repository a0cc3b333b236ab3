"""The job runner with real subprocesses: deadlines, process trees, locked files, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from groundwork.execution import processes
from groundwork.execution.runner import JobRunner, read_outcome, save_spec
from groundwork.execution.runner import main as runner_main
from groundwork.patch.codebase import codebase_hash, file_sha256
from groundwork.patch.patching import unified_diff
from groundwork.protocols import JobSpec
from groundwork.records import FailureCategory

TRAIN_EDITS = "    time.sleep(sleep_s)\n"


def _spec(env_dir: Path, job_dir: Path, train_py: str | None = None, **overrides) -> JobSpec:
    baseline = env_dir / "baseline"
    diff_path = ""
    if train_py is not None:
        original = (baseline / "train.py").read_text()
        diff = unified_diff({"train.py": original}, {"train.py": train_py})
        diff_path = str(job_dir.parent / "patch.diff")
        Path(diff_path).parent.mkdir(parents=True, exist_ok=True)
        Path(diff_path).write_text(diff)
    job_dir.mkdir(parents=True, exist_ok=True)
    values = dict(
        job_id="job-test",
        attempt=1,
        job_dir=str(job_dir),
        baseline_dir=str(baseline),
        diff_path=diff_path,
        codebase_hash="",
        locked_hashes={"evaluate.py": file_sha256(baseline / "evaluate.py")},
        train_command=["{python}", "train.py"],
        eval_command=["{python}", "evaluate.py"],
        time_budget_s=3.0,
        grace_s=1.0,
        eval_timeout_s=20.0,
        env={"TOY_SLEEP_S": "0.1"},
        metric_name="loss",
        result_file="result.json",
        plausible_range=(0.0, 100.0),
        slot=0,
        threads=1,
        gpu_ids=[],
        sandbox="off",  # these jobs write pid files outside their folder; test_sandbox covers the sandbox
    )
    values.update(overrides)
    return JobSpec(**values)


def _patched(env_dir: Path, old: str, new: str) -> str:
    text = (env_dir / "baseline" / "train.py").read_text()
    assert old in text
    return text.replace(old, new, 1)


def test_baseline_job_produces_metric_and_curve(toy_env, tmp_path):
    spec = _spec(toy_env, tmp_path / "job")
    outcome = JobRunner(spec).run()
    assert outcome.failure is None, outcome.detail
    assert abs(outcome.metric - (10 * 0.2**2 + 0.16 + 1.0)) < 1e-9
    assert outcome.curve == [{"step": 1, "loss": 1.0}]
    assert outcome.flags["eval_hash_ok"] is True and outcome.flags["within_budget"] is True
    assert "groundwork: train" in (tmp_path / "job" / "job.log").read_text()
    steps = [outcome.flags[k] for k in ("setup_seconds", "train_seconds", "eval_seconds")]
    assert all(s >= 0 for s in steps) and sum(steps) <= outcome.ended_at - outcome.started_at


def test_the_runner_process_loads_no_manifest_models():
    # A runner starts per job: the environment's manifest models are the controller's, not its.
    code = "import sys, groundwork.execution.runner; print('groundwork.environments.manifest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_runaway_job_and_its_children_are_killed_at_budget_plus_grace(toy_env, tmp_path):
    pid_file = tmp_path / "child.pid"
    train = _patched(
        toy_env,
        TRAIN_EDITS,
        (
            "    import subprocess, sys\n"
            "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)'])\n"
            f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "    time.sleep(1000)\n"
        ),
    )
    spec = _spec(toy_env, tmp_path / "job", train, time_budget_s=1.0, grace_s=1.0)
    started = time.monotonic()
    outcome = JobRunner(spec).run()
    elapsed = time.monotonic() - started
    assert outcome.failure == FailureCategory.TIMED_OUT
    assert "budget + grace" in outcome.detail
    assert elapsed < 15  # killed at ~2 s, not after the 1000 s sleep
    child = int(pid_file.read_text())
    deadline = time.time() + 5
    while (
        psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE and time.time() < deadline
    ):
        time.sleep(0.1)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_child_that_leaves_the_process_group_is_killed_too(toy_env, tmp_path):
    pid_file = tmp_path / "child.pid"
    train = _patched(
        toy_env,
        TRAIN_EDITS,
        (
            "    import subprocess, sys\n"
            "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)'],\n"
            "                             start_new_session=True)\n"
            f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "    time.sleep(1000)\n"
        ),
    )
    outcome = JobRunner(_spec(toy_env, tmp_path / "job", train, time_budget_s=1.0, grace_s=0.5)).run()
    assert outcome.failure == FailureCategory.TIMED_OUT
    child = int(pid_file.read_text())
    time.sleep(0.5)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_rewriting_the_locked_evaluation_at_run_time_is_flagged_as_tampered(toy_env, tmp_path):
    train = _patched(
        toy_env,
        TRAIN_EDITS,
        (
            "    time.sleep(sleep_s)\n"
            "    with open('evaluate.py', 'w') as fh:\n"
            '        fh.write(\'import json; json.dump({"loss": 0.0}, open("result.json", "w"))\')\n'
        ),
    )
    outcome = JobRunner(_spec(toy_env, tmp_path / "job", train)).run()
    assert outcome.failure == FailureCategory.EVAL_TAMPERED
    assert "evaluate.py" in outcome.detail and outcome.metric is None
    assert outcome.flags["eval_hash_ok"] is False


def test_result_file_written_by_training_is_discarded(toy_env, tmp_path):
    train = _patched(
        toy_env, TRAIN_EDITS, ("    time.sleep(sleep_s)\n    json.dump({'loss': 0.0}, open('result.json', 'w'))\n")
    )
    outcome = JobRunner(_spec(toy_env, tmp_path / "job", train)).run()
    assert outcome.failure is None and outcome.metric > 1.0
    assert outcome.flags["training_wrote_result_file"] is True


def test_crash_no_metric_and_implausible_metric_are_categorised(toy_env, tmp_path):
    crash = _patched(toy_env, TRAIN_EDITS, "    raise SystemExit(3)\n")
    outcome = JobRunner(_spec(toy_env, tmp_path / "a", crash)).run()
    assert outcome.failure == FailureCategory.CRASHED and outcome.exit_code == 3

    omit = _patched(toy_env, '{"lr": lr, "width": width}', '{"lr": lr, "width": width, "omit_metric": True}')
    outcome = JobRunner(_spec(toy_env, tmp_path / "b", omit)).run()
    assert outcome.failure == FailureCategory.NO_METRIC and "'loss'" in outcome.detail

    huge = _patched(toy_env, '{"lr": lr, "width": width}', '{"lr": lr, "width": width, "force_loss": 1e9}')
    outcome = JobRunner(_spec(toy_env, tmp_path / "c", huge)).run()
    assert outcome.failure == FailureCategory.METRIC_IMPLAUSIBLE and "plausible range" in outcome.detail


def test_codebase_hash_mismatch_is_refused(toy_env, tmp_path):
    spec = _spec(toy_env, tmp_path / "job", codebase_hash="0" * 64)
    outcome = JobRunner(spec).run()
    assert outcome.failure == FailureCategory.PATCH_FAILED
    good = _spec(toy_env, tmp_path / "job2", codebase_hash=codebase_hash(toy_env / "baseline"))
    assert JobRunner(good).run().failure is None


@pytest.fixture
def subreaper_undone():
    """The runner's main makes its process a child subreaper; in a pytest worker that would
    stay, and the orphans of later tests' jobs would be re-parented to it and never reaped."""
    yield
    if processes._LIBC is not None:
        processes._LIBC.prctl(processes.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_runner_entry_point_writes_outcome_once(toy_env, tmp_path, subreaper_undone):
    spec = _spec(toy_env, tmp_path / "job", env={"TOY_SLEEP_S": "0.1", "TOY_LEDGER": str(tmp_path / "ledger")})
    path = save_spec(spec)
    assert runner_main([str(path)]) == 0
    assert processes.is_subreaper() or processes._LIBC is None  # a detached child cannot escape its job
    first = read_outcome(tmp_path / "job")
    assert first is not None and first.failure is None
    assert runner_main([str(path)]) == 0  # a second start of the same attempt does not run it again
    assert read_outcome(tmp_path / "job") == first
    assert (tmp_path / "ledger").read_text().split() == ["job-test"]
    assert json.loads((tmp_path / "job" / "outcome.json").read_text())["flags"]["worker"].startswith("pid ")


def test_a_job_is_alive_from_the_instant_it_starts_so_a_restart_never_runs_it_twice(toy_env, tmp_path):
    """The local backend hands the job's lock to the runner it starts: a controller killed
    while that runner is still starting Python finds the job alive on restart and adopts it,
    and the job trains once."""
    from groundwork.execution.local import LocalBackend
    from groundwork.execution.runner import runner_alive

    ledger = tmp_path / "ledger"
    spec = _spec(toy_env, tmp_path / "job", env={"TOY_SLEEP_S": "0.5", "TOY_LEDGER": str(ledger)})
    first = LocalBackend(slots=1)
    first.start(spec)
    assert runner_alive(tmp_path / "job")  # before the runner process could take any lock itself
    restarted = LocalBackend(slots=1)  # the first controller is gone; its runner works on
    assert restarted.reattach(spec)
    deadline = time.time() + 60
    reports = []
    while not reports and time.time() < deadline:
        reports = restarted.poll()
        time.sleep(0.05)
    [outcome] = reports
    assert outcome.failure is None and outcome.metric is not None
    assert ledger.read_text().split() == ["job-test"]


# ---- detached children: a double fork with setsid, run by the real runner process --------


def _daemon_train(env_dir: Path, pid_file: Path, *, hold_mb: int = 0, then: str = "    time.sleep(sleep_s)\n") -> str:
    """train.py that starts a daemon (fork, setsid, fork: it leaves the phase's process
    group and, once its parent exits, the phase's tree), waits for it to write its pid, then `then`."""
    daemon = (
        "import os, time\n"
        "if os.fork(): os._exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): os._exit(0)\n"
        f"open({str(pid_file)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
        f"os.replace({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
        f"held = b'x' * ({hold_mb} * 2**20)\n"
        "time.sleep(1000)\n"
    )
    return _patched(
        env_dir,
        TRAIN_EDITS,
        "    import subprocess, sys\n"
        f"    subprocess.run([sys.executable, '-c', {daemon!r}], check=True)\n"
        f"    while not os.path.exists({str(pid_file)!r}):\n"
        "        time.sleep(0.05)\n" + then,
    )


def _run_runner_process(spec: JobSpec):
    """The job as a backend runs it: `python -m groundwork.execution.runner SPEC`, in its own process."""
    import subprocess
    import sys

    from conftest import cli_env

    done = subprocess.run(
        [sys.executable, "-m", "groundwork.execution.runner", str(save_spec(spec))],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return read_outcome(Path(spec.job_dir))


def _left_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_if_left(pid_file: Path) -> None:
    if pid_file.exists() and _left_running(int(pid_file.read_text())):
        psutil.Process(int(pid_file.read_text())).kill()


def test_a_detached_daemon_is_killed_after_training_ends_normally(toy_env, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    spec = _spec(toy_env, tmp_path / "job", _daemon_train(toy_env, pid_file))
    try:
        outcome = _run_runner_process(spec)
        assert outcome.failure is None, outcome.detail
        assert not _left_running(int(pid_file.read_text()))
        assert outcome.flags["process_tree"] == "subreaper"
    finally:
        _kill_if_left(pid_file)


def test_a_detached_daemon_is_killed_with_a_runaway_at_the_deadline(toy_env, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    train = _daemon_train(toy_env, pid_file, then="    time.sleep(1000)\n")
    spec = _spec(toy_env, tmp_path / "job", train, time_budget_s=1.0, grace_s=0.5)
    try:
        outcome = _run_runner_process(spec)
        assert outcome.failure == FailureCategory.TIMED_OUT
        assert not _left_running(int(pid_file.read_text()))
    finally:
        _kill_if_left(pid_file)


def test_a_detached_daemons_memory_counts_against_the_jobs_limit(toy_env, tmp_path):
    """Training itself stays small; the 300 MB are held by the daemon it detached."""
    pid_file = tmp_path / "daemon.pid"
    train = _daemon_train(toy_env, pid_file, hold_mb=300, then="    time.sleep(4)\n")
    spec = _spec(toy_env, tmp_path / "job", train, time_budget_s=30.0, memory_limit_mb=150)
    try:
        outcome = _run_runner_process(spec)
        assert outcome.failure == FailureCategory.CRASHED, outcome.detail
        assert "memory limit of 150 MB" in outcome.detail
        assert outcome.flags["memory_limit_mb"] == 150
        assert not _left_running(int(pid_file.read_text()))
    finally:
        _kill_if_left(pid_file)
