"""One controller per run folder: the lock a `run`/`resume` (or the dashboard) holds."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RunBusy(RuntimeError):
    pass


@contextmanager
def controller_lock(run_dir: Path) -> Iterator[None]:
    """One controller per run: a second `run`/`resume` of a live run is refused."""
    path = run_dir / "controller.lock"
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
