"""Artifacts of a run (diffs, job folders, logs) under the run folder.

Paths stored in the database are relative to the run folder, so a run folder can be
moved or copied whole.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see the old content or the new, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    def __init__(self, run_dir: Path):
        self.root = Path(run_dir)

    def path(self, rel: str) -> Path:
        resolved = (self.root / rel).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact path {rel!r} escapes the run folder {self.root}")
        return resolved

    def put_text(self, rel: str, text: str) -> str:
        """Store text; return its sha256."""
        write_atomic(self.path(rel), text)
        return sha256_bytes(text.encode("utf-8"))

    def get_text(self, rel: str) -> str:
        return self.path(rel).read_text(encoding="utf-8")
