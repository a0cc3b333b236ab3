"""Process-tree control: run a command in its own session under a deadline, a memory limit
and a log-size limit, and kill it with every process it spawned.

A child that starts its own session and double-forks leaves both its process group and,
once its parent exits, the tree below the phase. On Linux the process that runs phases
becomes a child subreaper (`become_subreaper`), so such orphans are re-parented to it
instead of to init: they stay its descendants, count against the memory limit, and are
killed and reaped when the phase ends, whatever way it ends."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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


def kill_all(find: Callable[[], list[psutil.Process]], give_up_s: float = 30) -> None:
    """SIGKILL the processes `find` returns until it returns none, reaping those that are
    this process's children. Several rounds: a process may fork between being listed and
    being killed, and a killed parent's children are re-parented only once it is gone."""
    me = os.getpid()
    give_up = time.monotonic() + give_up_s
    while time.monotonic() < give_up:
        procs = find()
        if not procs:
            return
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        pending = procs
        while pending and time.monotonic() < give_up:
            pending = [proc for proc in pending if not _reaped(proc, me)]
            if pending:
                time.sleep(0.01)


def _reaped(proc: psutil.Process, me: int) -> bool:
    """Is `proc` gone (reaped here if it is our child, else gone or a zombie elsewhere)?"""
    try:
        if proc.ppid() == me:
            return os.waitpid(proc.pid, os.WNOHANG)[0] != 0
        return proc.status() == psutil.STATUS_ZOMBIE  # its own parent (being killed too) reaps it
    except (psutil.Error, ChildProcessError):
        return True


def kill_tree(pid: int, include_root: bool = True) -> None:
    """SIGKILL a process, its process group and all its descendants (listed before any of
    them dies: a killed parent orphans its children)."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        root = None

    def tree() -> list[psutil.Process]:
        procs = _descendants(pid)
        try:
            if include_root and root is not None and root.status() != psutil.STATUS_ZOMBIE:
                procs.append(root)
        except psutil.Error:
            pass
        return procs

    first = tree()
    for proc in first:
        try:
            proc.kill()
        except psutil.Error:
            pass
    if include_root:
        kill_group(pid)  # the group it leads, when it leads one
    kill_all(tree)


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
    stopped: bool = False  # ended by `stop_when` (e.g. an early abort)


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


_LIBC = _libc()  # loaded here, not in a forked child (no dynamic loading between fork and exec)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux): orphans among its descendants are
    re-parented to it, not to init, so no detached child escapes `run_with_deadline`'s
    clean-up. False where the platform has no such thing."""
    if _LIBC is None:
        return False
    return _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def is_subreaper() -> bool:
    if _LIBC is None:
        return False
    flag = ctypes.c_int(0)
    return _LIBC.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value != 0


def die_with_parent() -> None:
    """In a child before exec (Linux): SIGKILL it when its parent dies, so a killed
    worker leaves no process behind."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _new_session_dying_with_parent() -> None:
    os.setsid()
    die_with_parent()


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        return rss_mb([root, *root.children(recursive=True)])
    except psutil.Error:
        return 0.0


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
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
    stop_when: Callable[[], bool] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> PhaseEnd:
    """Run `command` in a new session, output to `log`. At the deadline, or when the
    phase's processes hold more than `memory_limit_mb` of resident memory (0: no limit),
    they are all killed; after a normal exit every process it left behind is killed too,
    so nothing outlives its phase. The phase's processes are this process's descendants
    that did not exist before it started: in a subreaper (`become_subreaper`) that
    includes children that started their own session and double-forked. Output past
    `log_limit_mb` (0: no limit) is dropped. `stop_when`, asked between checks, ends
    it early when true. `pass_fds` stay open in the command (as in subprocess.Popen). The
    phase dies with the process that started it."""
    start = time.monotonic()
    me = os.getpid()
    before = set(_descendants(me))  # not this phase's: never touched

    def phase_processes() -> list[psutil.Process]:
        return [p for p in _descendants(me) if p not in before]

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
    timed_out = memory_exceeded = stopped = False
    peak = 0.0
    while True:
        try:
            proc.wait(timeout=max(0.0, min(MEMORY_CHECK_S, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            pass
        if memory_limit_mb > 0:
            rss = rss_mb(phase_processes())
            peak = max(peak, rss)
            if rss > memory_limit_mb:
                memory_exceeded = True
        if time.monotonic() >= deadline:
            timed_out = True
        elif stop_when is not None and stop_when():
            stopped = True
        if timed_out or memory_exceeded or stopped:
            # All at once, listed before any dies: a killed parent orphans its children.
            for child in phase_processes():
                try:
                    child.kill()
                except psutil.Error:
                    pass
            kill_group(proc.pid)
            proc.wait()  # the phase's own process is Popen's to reap
            break
    kill_group(proc.pid)
    kill_all(phase_processes)  # what it left behind, wherever it went
    if copier is not None:
        copier.join(timeout=5)
    killed = timed_out or memory_exceeded or stopped
    return PhaseEnd(
        exit_code=None if killed else proc.returncode,
        timed_out=timed_out,
        seconds=time.monotonic() - start,
        memory_exceeded=memory_exceeded,
        peak_rss_mb=round(peak, 1),
        log_truncated=bool(truncated),
        stopped=stopped,
    )
