"""The controller lock of a run folder: one process at a time drives a run (or moves its
jobs). It lives beside the run folder code, not in the loop, so views such as the
dashboard can take it without depending on the loop."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "controller.lock"


class RunBusy(RuntimeError):
    pass


@contextmanager
def controller_lock(run_dir: Path) -> Iterator[None]:
    """One controller per run: a second `run`/`resume` of a live run is refused."""
    path = run_dir / LOCK_NAME
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RunBusy(f"run {run_dir} is already being driven by {holder}; wait for it or stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        yield
