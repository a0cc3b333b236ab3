"""Writing files so that readers see the old content or the new, never a torn one.

Kept apart from the artifact store (fsspec) so a job runner can use it without importing
the store: every runner pays its imports at start-up, on a machine full of jobs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, sync: bool = True) -> None:
    """Write a file so that readers see the old content or the new, never a torn one
    (`sync`: and on disk before this returns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing), waiting while another process
    holds it: one process on this machine at a time does what the lock guards."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
