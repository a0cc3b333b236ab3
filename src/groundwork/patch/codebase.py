"""Copies and content hashes of codebases."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

IGNORED_PARTS = {"__pycache__", ".git"}


def iter_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and not IGNORED_PARTS.intersection(p.relative_to(root).parts)
    )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def codebase_hash(root: Path) -> str:
    """One hash over every file's relative path and bytes (caches left out)."""
    h = hashlib.sha256()
    for path in iter_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.readlink().as_posix().encode() if path.is_symlink() else path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def copy_codebase(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(*IGNORED_PARTS))
