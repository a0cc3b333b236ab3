"""Local backend: N slots on this machine, one job runner process per job.

Runners are started in their own session, so a controller killed with SIGKILL leaves
them working; on restart the controller reattaches to them through their lock files.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from groundwork.execution.processes import kill_group, kill_tree
from groundwork.execution.runner import PHASE_PID_FILE, read_outcome, runner_alive, save_spec, take_lock
from groundwork.protocols import BackendBase, JobSpec, LostJob
from groundwork.records import JobOutcome


@dataclass
class _Tracked:
    spec: JobSpec
    process: subprocess.Popen | None  # None for a job adopted after a controller restart


class LocalBackend(BackendBase):
    name = "local"
    runs_here = True  # jobs are processes of this machine: they die in a power cut with anything unsynced
    concurrent_starts = True  # `start` may run in several threads at once (a batch's processes start together)

    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self._jobs: dict[str, _Tracked] = {}
        self.wakeup = threading.Event()  # set when a job runner exits: the scheduler refills its slot at once

    def start(self, spec: JobSpec) -> str:
        job_dir = Path(spec.job_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        spec_path = save_spec(spec)
        command = [sys.executable, "-m", "groundwork.execution.runner", str(spec_path)]
        # Take the job's lock here and hand it to the runner: a controller killed while the
        # runner is still starting Python must find the job alive on restart, not run it again.
        # (None: a runner already holds it; the new one sees that and exits.)
        lock = take_lock(job_dir)
        if lock is not None:
            command += ["--lock-fd", str(lock.fileno())]
        try:
            with open(job_dir / "runner.err", "ab") as err:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,
                    pass_fds=(lock.fileno(),) if lock is not None else (),
                )
        finally:
            if lock is not None:
                lock.close()  # the runner's inherited descriptor keeps the lock
        self._jobs[spec.job_id] = _Tracked(spec, process)
        threading.Thread(target=self._wake_on_exit, args=(process,), daemon=True).start()
        return f"pid {process.pid} on {socket.gethostname()}"

    def _wake_on_exit(self, process: subprocess.Popen) -> None:
        process.wait()
        self.wakeup.set()

    def poll(self) -> list[JobOutcome | LostJob]:
        reports: list[JobOutcome | LostJob] = []
        for job_id, tracked in list(self._jobs.items()):
            job_dir = Path(tracked.spec.job_dir)
            if tracked.process is not None:
                if tracked.process.poll() is None:
                    continue
            elif runner_alive(job_dir):
                continue
            del self._jobs[job_id]
            outcome = read_outcome(job_dir)
            if outcome is not None:
                reports.append(outcome)
            else:
                _kill_leftovers(job_dir)
                code = tracked.process.returncode if tracked.process is not None else None
                reports.append(
                    LostJob(job_id, tracked.spec.attempt, f"job runner ended without an outcome (exit {code})")
                )
        return reports

    def reattach(self, spec: JobSpec) -> bool:
        job_dir = Path(spec.job_dir)
        if read_outcome(job_dir) is not None or runner_alive(job_dir):
            self._jobs[spec.job_id] = _Tracked(spec, None)
            return True
        _kill_leftovers(job_dir)
        return False

    def cancel(self, job_id: str) -> None:
        tracked = self._jobs.pop(job_id, None)
        if tracked is None:
            return
        if tracked.process is not None:
            kill_tree(tracked.process.pid)
            tracked.process.wait()
        _kill_leftovers(Path(tracked.spec.job_dir))

    def shutdown(self) -> None:
        for job_id in list(self._jobs):
            self.cancel(job_id)


def _kill_leftovers(job_dir: Path) -> None:
    """Kill a phase process orphaned by a dead runner, if it is still ours (its working
    folder is inside this job's folder: a recycled pid is left alone)."""
    pid_file = job_dir / PHASE_PID_FILE
    try:
        pid = int(pid_file.read_text())
        proc = psutil.Process(pid)
        inside = Path(proc.cwd()).resolve().is_relative_to(job_dir.resolve())
    except (OSError, ValueError, psutil.Error):
        return
    if inside:
        kill_tree(pid)
        kill_group(pid)
