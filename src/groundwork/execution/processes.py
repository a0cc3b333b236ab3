"""Process-tree control: run a command in its own process group under a deadline and
kill it with every child it spawned (including those that left the group)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import psutil


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_tree(pid: int, include_root: bool = True) -> None:
    """SIGKILL a process, its process group and all its descendants."""
    procs = _descendants(pid)
    if include_root:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            pass
        try:
            os.killpg(pid, signal.SIGKILL)  # the group it leads, when it leads one
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


def kill_group(pgid: int) -> None:
    """Kill what is left of a process group whose leader may already have exited."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_with_deadline(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    log: IO[bytes],
    timeout_s: float,
    pid_file: Path | None = None,
) -> tuple[int | None, bool, float]:
    """Run `command` in a new process group, output to `log`. Returns (exit code, timed
    out, seconds). At the deadline the whole tree is killed; after a normal exit any
    processes it left behind in its group are killed too, so nothing outlives its phase."""
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    if pid_file is not None:
        pid_file.write_text(str(proc.pid))
    try:
        proc.wait(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_tree(proc.pid)
        proc.wait()
    kill_group(proc.pid)
    return (None if timed_out else proc.returncode), timed_out, time.monotonic() - start
