"""Applying unified diffs to an isolated copy of a codebase, strictly and safely.

Rules are checked before anything is written: the diff is read strictly (`diff_text`), it
may not touch locked, hidden or `.git` files, escape the codebase (absolute, `~`, `..`,
through symlinks or files), create symlinks, carry binary data or exceed a size limit.
Application is `git apply` with no fuzz: a hunk that does not match exactly fails, and the
error names the hunk and the first line that differs. What the applied diff did is then
held against the environment's file rules (only editable files change; new files and
deletions only where the manifest allows them; no start-up hooks or names that shadow
imports) and must change some file's content. A rejected patch leaves the codebase as it
was, and every failure is a PatchError that says why.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from groundwork.patch import file_rules
from groundwork.patch.diff_text import FileSection, Hunk, PatchError, parse_diff, unquote

if TYPE_CHECKING:
    from groundwork.environments.manifest import Files
    from groundwork.protocols import PatchAttempt

__all__ = [
    "MAX_PATCH_BYTES",
    "PatchError",
    "PatchPolicy",
    "apply_patch",
    "check_path",
    "check_patch",
    "trial_apply",
    "unified_diff",
]

MAX_PATCH_BYTES = 512 * 1024
_FILE_MODES = {"100644", "100755"}
_BINARY = re.compile(r"^(GIT binary patch|Binary files .* differ)$", re.MULTILINE)


@dataclass(frozen=True)
class PatchPolicy:
    protected: frozenset[str] = field(default_factory=frozenset)  # locked and hidden files
    max_bytes: int = MAX_PATCH_BYTES
    # The files a patch may change. None: not known here (a worker re-applying a patch the
    # implementer's trial checked under the full rules; the codebase hash confirms it).
    editable: frozenset[str] | None = None
    allow_new: tuple[str, ...] = ()  # glob patterns of new files, when `editable` is known
    allow_delete: bool = False  # whether editable files may be deleted or renamed away

    @classmethod
    def from_files(cls, files: Files) -> PatchPolicy:
        """The rules of an environment's (or profile's) `[files]` table."""
        return cls(
            protected=frozenset(files.locked) | frozenset(files.hidden),
            editable=frozenset(PurePosixPath(p).as_posix() for p in files.editable),
            allow_new=tuple(files.allow_new),
            allow_delete=files.allow_delete,
        )

    def refusals(self, rel: str, before: _State | None, after: _State | None) -> list[str]:
        """Why this policy refuses what a patch did to the file `rel` (None: it is absent)."""
        if before is None and after is None:
            return []
        if before is None:
            return self._new_file(rel)
        if after == before:
            return []
        if self.editable is None:
            return []
        if rel not in self.editable:
            return [f"{rel!r} is not editable: patches may change only {self._editable_list()} ([files] editable)"]
        if after is None and not self.allow_delete:
            return [
                f"{rel!r} would be deleted (or renamed away), and this environment does not allow deleting "
                "files ([files] allow_delete = false): change its content instead"
            ]
        return []

    def _new_file(self, rel: str) -> list[str]:
        if hook := file_rules.startup_hook(rel):
            return [f"{hook}: patches may never create one"]
        if self.editable is None or rel in self.editable:
            return []  # a listed editable file may be written, whether or not the codebase has it yet
        if not file_rules.matches(rel, self.allow_new):
            allowed = (
                f"only new files matching {list(self.allow_new)}"
                if self.allow_new
                else f"no new files: put the code in {self._editable_list()}"
            )
            return [f"{rel!r} is a new file, and this environment allows {allowed} ([files] allow_new)"]
        scripts = {""} | {folder for p in self.editable if (folder := PurePosixPath(p).parent.as_posix()) != "."}
        shadow = file_rules.shadowed_module(rel, scripts)
        return [shadow] if shadow else []

    def _editable_list(self) -> str:
        return ", ".join(sorted(self.editable or ()))


# --- rules --------------------------------------------------------------------------------


def check_path(rel: str, root: Path, policy: PatchPolicy) -> str:
    """The normal form of a codebase-relative path that an edit may write, or PatchError why not."""
    if not rel:
        raise PatchError("a file path in the patch is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        raise PatchError(f"path {rel!r} contains control characters")
    if "\\" in rel:
        raise PatchError(f"path {rel!r} contains a backslash: separate folders with '/'")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or rel.startswith("~"):
        home = " ('~' is a home folder)" if rel.startswith("~") else ""
        raise PatchError(f"path {rel!r} is absolute{home}: patches may only touch files inside the codebase")
    if ".." in pure.parts:
        raise PatchError(f"path {rel!r} escapes the codebase through '..'")
    if not pure.parts:
        raise PatchError(f"path {rel!r} is not a file path")
    if any(part.lower() == ".git" for part in pure.parts):
        raise PatchError(f"path {rel!r} is inside .git: patches may only touch codebase files")
    normal = pure.as_posix()
    # casefold: on a case-insensitive file system EVALUATE.py is evaluate.py
    if normal.casefold() in {PurePosixPath(p).as_posix().casefold() for p in policy.protected}:
        raise PatchError(f"{normal!r} is locked by the environment (its evaluation or data): it cannot be edited")
    try:
        current = root
        for k, part in enumerate(pure.parts):
            current = current / part
            if current.is_symlink():
                raise PatchError(f"path {rel!r} goes through the symlink {current.relative_to(root).as_posix()!r}")
            if k < len(pure.parts) - 1 and current.exists() and not current.is_dir():
                raise PatchError(
                    f"path {rel!r} goes through {current.relative_to(root).as_posix()!r}, which is a file, not a folder"
                )
        if not current.resolve().is_relative_to(root.resolve()):
            raise PatchError(f"path {rel!r} resolves outside the codebase")
    except OSError as exc:  # e.g. a name too long for the file system
        raise PatchError(f"path {rel!r} cannot be used: {exc.strerror or exc}") from None
    return normal


def _normalise(diff: str) -> str:
    """Undo line-ending damage to the diff text itself: a diff whose every line ends in CRLF
    (or CR) was converted in transit. A CR on only some lines is content, left as it is."""
    if "\r" in diff:
        if diff.count("\r\n") == diff.count("\n"):
            diff = diff.replace("\r\n", "\n")
        elif "\n" not in diff:
            diff = diff.replace("\r", "\n")
    return diff if diff.endswith("\n") else diff + "\n"


def _section_paths(section: FileSection) -> tuple[list[str], list[str]]:
    """Names that take the -p strip (headers), and names that do not (rename/copy from/to)."""
    stripped = [n for n in (*(section.git_names or ()), section.old, section.new) if n not in (None, "/dev/null")]
    plain = [v for k, v in section.headers.items() if k.startswith(("rename ", "copy "))]
    if not stripped and not plain:
        raise PatchError(
            f"malformed diff: line {section.line}: cannot tell the file names in 'diff --git' apart; "
            "add '--- a/path' and '+++ b/path' headers"
        )
    return stripped, plain


def _check_names_agree(section: FileSection) -> None:
    """A 'diff --git A B' line and its '--- A' / '+++ B' headers name the same files (git
    would otherwise take one and the rules another)."""
    if section.git_names is None:
        return
    for git_name, header in zip(section.git_names, (section.old, section.new), strict=True):
        if header not in (None, "/dev/null") and header != git_name:
            raise PatchError(
                f"malformed diff: line {section.line}: 'diff --git {' '.join(section.git_names)}' names other "
                f"files than its '--- {section.old}' / '+++ {section.new}' headers: start each file's section "
                "with its own 'diff --git' line"
            )


def _check_modes(section: FileSection, name: str) -> None:
    modes = [v for k, v in section.headers.items() if k.endswith("mode")]
    index = section.headers.get("index", "").split()
    modes += index[1:]
    for mode in modes:
        if mode.startswith("120"):
            raise PatchError(f"{name}: patches may not create or modify symlinks (mode {mode})")
        if mode not in _FILE_MODES:
            raise PatchError(f"{name}: file mode {mode} is not accepted, only 100644 (plain) and 100755 (executable)")


@dataclass
class _Checked:
    text: str
    sections: list[FileSection]
    files: list[str]
    strip: int

    def name(self, section: FileSection) -> str:
        for raw in (section.new, section.old, *(section.git_names or ())):
            if raw not in (None, "/dev/null"):
                return raw[2:] if self.strip else raw
        return section.headers.get("rename to") or section.headers.get("copy to") or "?"


def _check(diff: str, root: Path, policy: PatchPolicy) -> _Checked:
    text = _normalise(diff)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise PatchError("the diff is not valid text (it holds unpaired surrogate characters)") from None
    if size > policy.max_bytes:
        raise PatchError(f"patch is {size} bytes, over the limit of {policy.max_bytes}")
    if "\0" in text:
        raise PatchError("the diff contains a NUL byte: binary patches are not accepted")
    if _BINARY.search(text):
        raise PatchError("binary patches are not accepted")
    sections = parse_diff(text)
    if not sections:
        raise PatchError("the diff contains no file changes (no 'diff --git' or '--- a/path' / '+++ b/path' headers)")
    stripped, plain = [], []
    for section in sections:
        _check_names_agree(section)
        names = _section_paths(section)
        stripped += names[0]
        plain += names[1]
    prefixed = [name.startswith(("a/", "b/")) for name in stripped]
    if any(prefixed) and not all(prefixed):
        raise PatchError("the diff mixes paths with and without a/ b/ prefixes: write 'a/path' and 'b/path' throughout")
    strip = 1 if prefixed and all(prefixed) else 0
    files: list[str] = []
    for raw in [name[strip * 2 :] for name in stripped] + plain:
        normal = check_path(raw, root, policy)
        if normal not in files:
            files.append(normal)
    checked = _Checked(text, sections, files, strip)
    for section in sections:
        _check_modes(section, checked.name(section))
        if not section.hunks and all(k.endswith("index") for k in section.headers):  # no mode, rename...
            raise PatchError(
                f"malformed diff: line {section.line}: the section for {checked.name(section)!r} "
                "changes nothing (it has no hunks)"
            )
    _check_git_agrees(checked, root)
    return checked


def _check_git_agrees(checked: _Checked, root: Path) -> None:
    """Ask git which files it would touch: every one must be a file the rules were checked on."""
    proc = _git(["--numstat", "-z", f"-p{checked.strip}"], checked.text, root)
    if proc.returncode != 0:
        raise PatchError(f"malformed diff: git cannot read it: {_git_message(proc)}")
    fields = proc.stdout.decode("utf-8", errors="replace").split("\0")
    touched, k = set(), 0
    while k < len(fields):
        parts = fields[k].split("\t", 2)
        if len(parts) == 3 and parts[2]:
            touched.add(parts[2])
            k += 1
        elif len(parts) == 3:  # a rename or copy: '\0old\0new' follow
            touched.update(fields[k + 1 : k + 3])
            k += 3
        else:
            k += 1
    unexpected = sorted(touched - set(checked.files))
    if unexpected:
        raise PatchError(
            f"git reads the file names of this diff as {unexpected}, not as its headers name them: "
            "write plain 'a/path' and 'b/path' names"
        )


def check_patch(diff: str, root: Path, policy: PatchPolicy) -> tuple[list[str], int]:
    """Validate a diff against the rules; return the files it touches and its -p level."""
    checked = _check(diff, root, policy)
    return checked.files, checked.strip


# --- applying -------------------------------------------------------------------------------


def _git(args: list[str], text: str, root: Path) -> subprocess.CompletedProcess:
    git = shutil.which("git")
    if git is None:
        raise PatchError("git is not installed: groundwork uses `git apply` to apply patches strictly")
    env = {
        **os.environ,
        # Inside an enclosing repository `git apply` would resolve paths against it and
        # silently skip files outside the cwd; user configuration must not change results.
        "GIT_CEILING_DIRECTORIES": str(root.resolve().parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",  # messages in English, which the explanations below read
    }
    return subprocess.run([git, "apply", *args], input=text.encode("utf-8"), cwd=root, env=env, capture_output=True)


def _git_message(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or proc.stdout).decode("utf-8", errors="replace").strip().replace("<stdin>", "patch")
    return text[:2000]


def apply_patch(diff: str, root: Path, policy: PatchPolicy) -> list[str]:
    """Apply `diff` to the codebase at `root` in place and return the files it touched;
    raise PatchError if it is rejected, any hunk fails or it changes nothing (then the
    codebase is as it was)."""
    try:
        return _apply(diff, root, policy)
    except PatchError:
        raise
    except (OSError, UnicodeError, ValueError, subprocess.SubprocessError) as exc:
        raise PatchError(f"the patch could not be applied: {type(exc).__name__}: {exc}") from None


def _apply(diff: str, root: Path, policy: PatchPolicy) -> list[str]:
    if not diff.strip():
        raise PatchError("no change: the diff is empty")
    checked = _check(diff, root, policy)
    snapshot = _Snapshot(root, checked.files)
    proc = _git([f"-p{checked.strip}", "--whitespace=nowarn"], checked.text, root)
    if proc.returncode != 0:
        snapshot.restore()  # git checks every hunk before writing; this covers failures while writing
        raise PatchError(_explain(_git_message(proc), checked, root))
    after = {rel: _state(root / rel) for rel in checked.files}
    problems = [p for rel, saved in snapshot.files.items() for p in policy.refusals(rel, saved, after[rel])]
    if not problems and all(_data(after[rel]) == _data(saved) for rel, saved in snapshot.files.items()):
        problems = [
            "no change: after applying the diff every file's content is as it was (a file mode change "
            "alone does not count); change the code the idea is about"
        ]
    if problems:
        snapshot.restore()
        raise PatchError("; ".join(problems))
    return checked.files


@dataclass(frozen=True)
class _State:
    """A regular file's content and mode."""

    data: bytes
    mode: int


def _state(path: Path) -> _State | None:
    """The file at `path`, or None where there is no regular file (nothing, a folder, a link)."""
    if path.is_symlink() or not path.is_file():
        return None
    return _State(path.read_bytes(), path.stat().st_mode & 0o7777)


def _data(state: _State | None) -> bytes | None:
    return None if state is None else state.data


class _Snapshot:
    """The touched files as they were, to put back if applying fails part-way or the
    result is refused."""

    def __init__(self, root: Path, files: list[str]):
        self.root = root
        self.files = {rel: _state(root / rel) for rel in files}
        self.folders = {p for rel in files for p in (root / rel).parents if p.is_dir()}

    def restore(self) -> None:
        for rel, saved in self.files.items():
            path = self.root / rel
            if saved is None:
                if path.is_symlink() or path.is_file():
                    path.unlink()
                self._remove_new_folders(path)
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.is_symlink():
                path.unlink()
            path.parent.mkdir(parents=True, exist_ok=True)
            if _state(path) != saved:
                path.write_bytes(saved.data)
                path.chmod(saved.mode)

    def _remove_new_folders(self, path: Path) -> None:
        """Folders the failed patch created for `path`, from the deepest up, while empty."""
        for folder in path.parents:
            if folder in self.folders or not folder.is_dir() or folder.is_symlink() or any(folder.iterdir()):
                break
            folder.rmdir()


# --- explaining a failure ------------------------------------------------------------------


def _explain(message: str, checked: _Checked, root: Path) -> str:
    try:
        reason = _reason(message, checked, root)
    except (OSError, ValueError):  # the explanation is a courtesy: git's own message stands
        reason = ""
    return f"patch does not apply: {reason or 'see git'}\ngit apply said: {message}"


def _reason(message: str, checked: _Checked, root: Path) -> str:
    reason = ""
    if m := re.search(r"patch failed: (.+):(\d+)$", message, re.MULTILINE):
        name = unquote(m[1])[0] if m[1].startswith('"') else m[1]
        reason = _hunk_reason(name, int(m[2]), checked, root)
    elif m := re.search(r"error: (.+): already exists in working directory", message):
        reason = (
            f"{m[1]!r} already exists: '--- /dev/null' creates new files only; to change it, "
            "diff against its current content"
        )
    elif m := re.search(r"error: (.+): (No such file or directory|does not exist in index)", message):
        reason = f"{m[1]!r} does not exist in the codebase: to create it, use '--- /dev/null' and '+++ b/{m[1]}'"
    elif "still has contents" in message:
        reason = "a deleted file's hunk must remove every line of the file"
    names = [checked.name(s) for s in checked.sections]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        reason += (
            f"{'; ' if reason else ''}{', '.join(repeated)} appears in more than one file section, "
            "and sections apply one after another: put all hunks for one file in one section"
        )
    return reason


def _hunk_reason(name: str, start: int, checked: _Checked, root: Path) -> str:
    sections = [s for s in checked.sections if checked.name(s) == name]
    for n, section in enumerate(sections):
        for k, hunk in enumerate(section.hunks, 1):
            if hunk.old_start != start:
                continue
            where = f"hunk {k} of {len(section.hunks)} for {name} ({hunk.header}, line {hunk.line} of the diff)"
            if n > 0:  # git matched it against the file as the earlier sections left it
                return f"{where} does not match the file as the earlier section for {name} left it"
            if detail := _mismatch(root / name, hunk):
                return f"{where} does not match the file: {detail}"
    return f"a hunk for {name} at line {start} does not match the file"


def _anchor(current: list[str], want: list[str], stated: int) -> int:
    """Where the hunk's lines best line up with the file (most leading lines equal, then
    nearest the stated line): only to point at the line that differs."""

    def run(at: int) -> int:
        n = 0
        while n < len(want) and at + n < len(current) and current[at + n] == want[n]:
            n += 1
        return n

    best = max(range(len(current)), key=lambda at: (run(at), -abs(at - stated)), default=stated)
    return best if run(best) else stated


def _mismatch(path: Path, hunk: Hunk) -> str | None:
    """Why the hunk's lines are not in the file where its header says, or None if they are."""
    text = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""
    current = text.split("\n")
    if text.endswith("\n"):
        current.pop()
    first = _anchor(current, hunk.before, max(hunk.old_start, 1) - 1)
    for k, want in enumerate(hunk.before):
        n = first + k
        if n >= len(current):
            return (
                f"it expects {len(hunk.before)} lines from line {first + 1}, but the file has only {len(current)} lines"
            )
        have = current[n]
        if have != want:
            detail = f"line {n + 1} of the file is {have!r} but the hunk expects {want!r}"
            if have + "\r" == want:
                detail += " (the diff's lines end in CRLF but the file uses LF line endings)"
            elif have == want + "\r":
                detail += " (the file uses CRLF line endings but the diff's lines end in LF)"
            elif "".join(have.split()) == "".join(want.split()):
                detail += " (they differ in whitespace)"
            return detail + "; context and removed lines must be copied exactly from the current file"
    if not hunk.has_context:
        return (
            "the hunk has no unchanged context lines, and git applies such hunks only at the very start "
            "or end of a file: include about 3 unchanged lines before and after the change"
        )
    if any(line.startswith("\\") for line in hunk.body):
        return "its lines match, but not where the file ends: check the '\\ No newline at end of file' markers"
    return None


# --- writing diffs and trying them -------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Lines split at '\\n' only: str.splitlines would also split at form feeds and U+2028."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def unified_diff(old: dict[str, str], new: dict[str, str]) -> str:
    """A git-style unified diff (a/ b/ prefixes) between two sets of file texts."""
    chunks = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        lines = difflib.unified_diff(
            _lines(before or ""),
            _lines(after or ""),
            fromfile=f"a/{name}" if before is not None else "/dev/null",
            tofile=f"b/{name}" if after is not None else "/dev/null",
        )
        header = f"diff --git a/{name} b/{name}\n"
        if before is None:
            header += "new file mode 100644\n"
        elif after is None:
            header += "deleted file mode 100644\n"
        # An empty file created or deleted is a header-only section.
        chunks.append(
            header
            + "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        )
    return "".join(chunks)


def trial_apply(diff: str, codebase: Path, policy: PatchPolicy) -> PatchAttempt:
    """Apply a diff to a throw-away copy of the codebase: the check every implementer's
    output goes through before a job is queued."""
    import tempfile

    from groundwork.patch.codebase import codebase_hash, copy_codebase
    from groundwork.protocols import PatchAttempt

    with tempfile.TemporaryDirectory(prefix="groundwork-patch-") as tmp:
        work = Path(tmp) / "codebase"
        copy_codebase(codebase, work)
        try:
            files = apply_patch(diff, work, policy)
        except PatchError as exc:
            return PatchAttempt(diff=diff, applied=False, error=str(exc))
        except Exception as exc:  # whatever a diff does, the idea fails, never the run
            return PatchAttempt(diff=diff, applied=False, error=f"the patch could not be checked: {exc!r}")
        return PatchAttempt(diff=diff, applied=True, files=files, codebase_hash=codebase_hash(work))
