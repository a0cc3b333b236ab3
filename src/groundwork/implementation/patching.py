"""Applying unified diffs to an isolated copy of a codebase, strictly and safely.

Rules are checked before anything is written: no edits to locked or hidden files, no
paths escaping the codebase (absolute, `..`, through symlinks), no symlinks created, no
binary patches, no oversized patches. Application itself is `git apply` with no fuzz:
a hunk that does not match exactly fails, with git's message naming it.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

MAX_PATCH_BYTES = 512 * 1024
_SYMLINK_MODE = re.compile(r"^(new file mode|new mode|old mode|deleted file mode) 120000", re.MULTILINE)


class PatchError(ValueError):
    """A patch that was rejected or did not apply; the message says which rule or hunk."""


@dataclass(frozen=True)
class PatchPolicy:
    protected: frozenset[str] = field(default_factory=frozenset)  # locked and hidden files
    max_bytes: int = MAX_PATCH_BYTES


def _strip_prefix(name: str) -> tuple[str, bool]:
    if name in ("/dev/null", ""):
        return name, False
    if name.startswith(("a/", "b/")):
        return name[2:], True
    return name, False


def _check_path(rel: str, root: Path, policy: PatchPolicy) -> str:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or rel.startswith("~"):
        raise PatchError(f"path {rel!r} is absolute: patches may only touch files inside the codebase")
    if ".." in pure.parts:
        raise PatchError(f"path {rel!r} escapes the codebase through '..'")
    if not pure.parts or ".git" in pure.parts:
        raise PatchError(f"path {rel!r} is not a codebase file")
    normal = pure.as_posix()
    if normal in policy.protected:
        raise PatchError(f"{normal!r} is locked by the environment (its evaluation or data): it cannot be edited")
    # Every existing component must be a real folder/file inside the root, not a symlink.
    current = root
    for part in pure.parts:
        current = current / part
        if current.is_symlink():
            raise PatchError(f"path {rel!r} goes through the symlink {current.relative_to(root).as_posix()!r}")
    if not current.resolve().is_relative_to(root.resolve()):
        raise PatchError(f"path {rel!r} resolves outside the codebase")
    return normal


def check_patch(diff: str, root: Path, policy: PatchPolicy) -> tuple[list[str], int]:
    """Validate a diff against the rules; return the files it touches and its -p level."""
    size = len(diff.encode("utf-8", errors="replace"))
    if size > policy.max_bytes:
        raise PatchError(f"patch is {size} bytes, over the limit of {policy.max_bytes}")
    if "\0" in diff or "GIT binary patch" in diff or re.search(r"^Binary files .* differ$", diff, re.MULTILINE):
        raise PatchError("binary patches are not accepted")
    if _SYMLINK_MODE.search(diff):
        raise PatchError("patches may not create or modify symlinks")
    try:
        patch_set = PatchSet(diff)
    except UnidiffParseError as exc:
        raise PatchError(f"malformed diff: {exc}") from None
    if not patch_set:
        raise PatchError("the diff contains no file changes")
    files, prefixed = [], []
    for patched in patch_set:
        if patched.is_binary_file:
            raise PatchError(f"binary patch for {patched.path!r} is not accepted")
        for name in (patched.source_file, patched.target_file):
            rel, had_prefix = _strip_prefix(name)
            if rel == "/dev/null":
                continue
            prefixed.append(had_prefix)
            normal = _check_path(rel, root, policy)
            if normal not in files:
                files.append(normal)
    strip = 1 if prefixed and all(prefixed) else 0
    if prefixed and any(prefixed) and not all(prefixed):
        raise PatchError("the diff mixes paths with and without a/ b/ prefixes")
    return files, strip


def apply_patch(diff: str, root: Path, policy: PatchPolicy) -> list[str]:
    """Apply `diff` to the codebase at `root` in place; raise PatchError if it is rejected
    or any hunk fails (then nothing is changed)."""
    if not diff.strip():
        return []
    files, strip = check_patch(diff, root, policy)
    git = shutil.which("git")
    if git is None:
        raise PatchError("git is not installed: groundwork uses `git apply` to apply patches strictly")
    # Stop git from discovering an enclosing repository: inside one, `git apply` would
    # resolve paths against that repository and silently skip files outside the cwd.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(root.resolve().parent)}
    base = [git, "apply", f"-p{strip}", "--whitespace=nowarn"]
    for extra in (["--check"], []):
        proc = subprocess.run(base + extra, input=diff, cwd=root, env=env, text=True, capture_output=True)
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip().replace("<stdin>", "patch")
            raise PatchError(f"patch does not apply: {message}")
    return files


def unified_diff(old: dict[str, str], new: dict[str, str]) -> str:
    """A git-style unified diff (a/ b/ prefixes) between two sets of file texts."""
    chunks = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        lines = difflib.unified_diff(
            (before or "").splitlines(keepends=True),
            (after or "").splitlines(keepends=True),
            fromfile=f"a/{name}" if before is not None else "/dev/null",
            tofile=f"b/{name}" if after is not None else "/dev/null",
        )
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        if text:
            header = f"diff --git a/{name} b/{name}\n"
            if before is None:
                header += "new file mode 100644\n"
            elif after is None:
                header += "deleted file mode 100644\n"
            chunks.append(header + text)
    return "".join(chunks)


def trial_apply(diff: str, codebase: Path, policy: PatchPolicy) -> "PatchAttempt":
    """Apply a diff to a throw-away copy of the codebase: the check every implementer's
    output goes through before a job is queued."""
    import tempfile

    from groundwork.implementation.codebase import codebase_hash, copy_codebase
    from groundwork.protocols import PatchAttempt

    with tempfile.TemporaryDirectory(prefix="groundwork-patch-") as tmp:
        work = Path(tmp) / "codebase"
        copy_codebase(codebase, work)
        try:
            files = apply_patch(diff, work, policy)
        except PatchError as exc:
            return PatchAttempt(diff=diff, applied=False, error=str(exc))
        return PatchAttempt(diff=diff, applied=True, files=files, codebase_hash=codebase_hash(work))
