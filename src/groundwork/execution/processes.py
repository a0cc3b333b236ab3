"""Process-tree control: run a command in its own process group under a deadline, a
memory limit and a log-size limit, and kill it with every child it spawned (including
those that left the group)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

MEMORY_CHECK_S = 0.5


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


@dataclass(frozen=True)
class PhaseEnd:
    exit_code: int | None  # None when it was killed
    timed_out: bool
    seconds: float
    memory_exceeded: bool = False
    peak_rss_mb: float = 0.0
    log_truncated: bool = False


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


_LIBC = _libc()  # loaded here, not in a forked child (no dynamic loading between fork and exec)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec (Linux): SIGKILL it when its parent dies, so a killed
    worker leaves no process behind."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _new_session_dying_with_parent() -> None:
    os.setsid()
    die_with_parent()


def tree_rss_mb(pid: int) -> float:
    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _copy_capped(source: IO[bytes], log: IO[bytes], limit: int, truncated: list[bool]) -> None:
    """Copy a phase's output into the log up to `limit` bytes, then drop the rest (the
    process keeps running: a chatty job is not a failed one)."""
    written = 0
    for chunk in iter(lambda: source.read1(65536), b""):
        if written < limit:
            part = chunk[: limit - written]
            log.write(part)
            log.flush()
            written += len(part)
            if written >= limit:
                log.write(f"\n[groundwork: output past {limit / 2**20:.3g} MB dropped]\n".encode())
                log.flush()
                truncated.append(True)
    source.close()


def run_with_deadline(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    log: IO[bytes],
    timeout_s: float,
    pid_file: Path | None = None,
    *,
    memory_limit_mb: float = 0,
    log_limit_mb: float = 0,
    pass_fds: tuple[int, ...] = (),
) -> PhaseEnd:
    """Run `command` in a new process group, output to `log`. At the deadline, or when
    its process tree holds more than `memory_limit_mb` of resident memory (0: no limit),
    the whole tree is killed; after a normal exit any processes it left behind in its
    group are killed too, so nothing outlives its phase. Output past `log_limit_mb`
    (0: no limit) is dropped. The phase dies with the process that started it. `pass_fds`
    stay open in the command (as in subprocess.Popen)."""
    start = time.monotonic()
    capped = log_limit_mb > 0
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE if capped else log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_new_session_dying_with_parent,
        pass_fds=pass_fds,
    )
    if pid_file is not None:
        pid_file.write_text(str(proc.pid))
    truncated: list[bool] = []
    copier = None
    if capped:
        copier = threading.Thread(
            target=_copy_capped, args=(proc.stdout, log, int(log_limit_mb * 2**20), truncated), daemon=True
        )
        copier.start()
    deadline = start + timeout_s
    timed_out = memory_exceeded = False
    peak = 0.0
    while True:
        try:
            proc.wait(timeout=max(0.0, min(MEMORY_CHECK_S, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            pass
        if memory_limit_mb > 0:
            rss = tree_rss_mb(proc.pid)
            peak = max(peak, rss)
            if rss > memory_limit_mb:
                memory_exceeded = True
        if time.monotonic() >= deadline:
            timed_out = True
        if timed_out or memory_exceeded:
            kill_tree(proc.pid)
            proc.wait()
            break
    kill_group(proc.pid)
    if copier is not None:
        copier.join(timeout=5)
    killed = timed_out or memory_exceeded
    return PhaseEnd(
        exit_code=None if killed else proc.returncode,
        timed_out=timed_out,
        seconds=time.monotonic() - start,
        memory_exceeded=memory_exceeded,
        peak_rss_mb=round(peak, 1),
        log_truncated=bool(truncated),
    )
