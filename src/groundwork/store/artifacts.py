"""Artifacts of a run (diffs, baseline snapshot, job logs and outcomes) on fsspec.

By default they live in the run folder itself. Given any fsspec URL (`s3://bucket/runs`,
`gs://...`, `file:///shared/runs`, ...) they live under URL/RUN_ID, where workers on other
machines can reach them, and a copy of what the controller reads is kept in the run
folder. Paths are always relative (`patches/e1-01.attempt-1.diff`), so a run folder can
be moved or copied whole; the run store indexes where each one lives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from groundwork.files import sha256_bytes, write_atomic

__all__ = ["ArtifactStore", "OnPut", "RemoteArtifacts", "sha256_bytes", "write_atomic"]

OnPut = Callable[[str, str, str, int], None]  # (relative path, url, sha256, size)


def _check_rel(rel: str) -> str:
    parts = Path(rel).parts
    if not rel or Path(rel).is_absolute() or ".." in parts:
        raise ValueError(f"artifact path {rel!r} must be relative and stay inside the run's artifacts")
    return "/".join(parts)


class RemoteArtifacts:
    """The part of the store a worker needs: read and write artifacts by relative path
    under one fsspec URL. Plain data (a URL and options), so it travels to any worker."""

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = url.rstrip("/")
        self.storage_options = storage_options or {}
        self._fs = None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs, _ = url_to_fs(self.url, **self.storage_options)
        return self._fs

    def __getstate__(self) -> dict:
        return {"url": self.url, "storage_options": self.storage_options, "_fs": None}

    def location(self, rel: str) -> str:
        return f"{self.url}/{_check_rel(rel)}"

    def _path(self, rel: str) -> str:
        return url_to_fs(self.location(rel), **self.storage_options)[1]

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._path(rel))

    def put_bytes(self, rel: str, data: bytes, sync: bool = True) -> str:
        path = self._path(rel)
        if isinstance(self.fs, LocalFileSystem):
            write_atomic(Path(path), data, sync)  # readers on a shared disk never see half a file
        else:
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)
            self.fs.pipe_file(path, data)
        return sha256_bytes(data)

    def get_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._path(rel))

    def put_file(self, rel: str, local: Path, sync: bool = True) -> str:
        return self.put_bytes(rel, Path(local).read_bytes(), sync)

    def get_file(self, rel: str, local: Path) -> None:
        write_atomic(Path(local), self.get_bytes(rel))

    def put_tree(self, rel: str, local_dir: Path) -> int:
        """Upload every file below `local_dir`; return how many."""
        count = 0
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.put_bytes(f"{rel}/{path.relative_to(local_dir).as_posix()}", path.read_bytes())
                count += 1
        return count

    def get_tree(self, rel: str, local_dir: Path) -> int:
        """Download every file below `rel` into `local_dir`; return how many."""
        root = self._path(rel).rstrip("/")
        count = 0
        for path in self.fs.find(root):
            target = Path(local_dir) / Path(path[len(root) + 1 :])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.fs.cat_file(path))
            count += 1
        return count


class ArtifactStore:
    def __init__(self, run_dir: Path, url: str | None = None, on_put: OnPut | None = None, **storage_options):
        self.root = Path(run_dir)
        self.remote = RemoteArtifacts(url or str(self.root.resolve()), storage_options)
        self.mirrored = url is not None  # artifacts elsewhere: keep a local copy of what the controller reads
        self.on_put = on_put

    def path(self, rel: str) -> Path:
        """Local path of an artifact inside the run folder."""
        resolved = (self.root / rel).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact path {rel!r} escapes the run folder {self.root}")
        return resolved

    def location(self, rel: str) -> str:
        return self.remote.location(rel)

    def put_text(self, rel: str, text: str) -> str:
        """Store text; return its sha256."""
        data = text.encode("utf-8")
        if self.mirrored:
            write_atomic(self.path(rel), data)
        sha = self.remote.put_bytes(rel, data)
        self._indexed(rel, sha, len(data))
        return sha

    def get_text(self, rel: str) -> str:
        local = self.path(rel)
        if local.is_file():
            return local.read_text(encoding="utf-8")
        return self.remote.get_bytes(rel).decode("utf-8")

    def fetch(self, rel: str) -> Path:
        """An artifact a worker wrote, copied into the run folder when it lives elsewhere."""
        local = self.path(rel)
        if self.mirrored:
            self.remote.get_file(rel, local)
        data = local.read_bytes()
        self._indexed(rel, sha256_bytes(data), len(data))
        return local

    def put_tree(self, rel: str, local_dir: Path) -> int:
        count = self.remote.put_tree(rel, local_dir)
        self._indexed(rel + "/", "", count)
        return count

    def _indexed(self, rel: str, sha: str, size: int) -> None:
        if self.on_put is not None:
            self.on_put(rel, self.location(rel.rstrip("/")), sha, size)
