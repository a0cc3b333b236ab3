"""The SEARCH/REPLACE edit format, an alternative to unified diffs:

    path/to/file.py
    <<<<<<< SEARCH
    exact lines to find
    =======
    replacement lines
    >>>>>>> REPLACE

Blocks are applied in memory, in order and strictly (each SEARCH must match whole lines
exactly once in the file as the earlier blocks left it), then written as a unified diff,
which takes the same checked path as any model-written diff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from groundwork.patch.diff_text import PatchError, normalise_newlines
from groundwork.patch.patching import PatchPolicy, check_path, unified_diff

_SEARCH = re.compile(r"^<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_REPLACE = re.compile(r"^>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


@dataclass(frozen=True)
class SearchReplace:
    path: str
    search: str  # whole lines, each ending in '\n'; '' creates a new file
    replace: str
    line: int = 0  # of its SEARCH marker in the answer, for error messages


def _block_text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _path_before(lines: list[str], i: int, previous: str | None) -> str:
    """The file path on the line before a SEARCH marker (fence lines may sit between)."""
    j = i - 1
    while j >= 0 and (not lines[j].strip() or _FENCE.match(lines[j])):
        j -= 1
    candidate = lines[j].strip() if j >= 0 else ""
    if _REPLACE.match(candidate) and previous:
        return previous  # another block for the same file
    name = candidate.strip("`*").rstrip(":").strip()
    if not name or any(c.isspace() for c in name):
        raise PatchError(
            f"the SEARCH/REPLACE block at line {i + 1} has no file path on the line before it "
            f"(found {candidate[:80]!r}): put the file's path alone on that line"
        )
    return name


def parse_search_replace(text: str) -> list[SearchReplace]:
    """Every SEARCH/REPLACE block in an answer, in order."""
    lines = normalise_newlines(text).split("\n")
    edits: list[SearchReplace] = []
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        path = _path_before(lines, i, edits[-1].path if edits else None)
        divider = next(
            (
                j
                for j in range(i + 1, len(lines))
                if _DIVIDER.match(lines[j]) or _SEARCH.match(lines[j]) or _REPLACE.match(lines[j])
            ),
            None,
        )
        if divider is None or not _DIVIDER.match(lines[divider]):
            raise PatchError(
                f"the SEARCH/REPLACE block at line {i + 1} ({path}) has no '=======' line "
                "between its SEARCH and REPLACE parts"
            )
        end = next(
            (k for k in range(divider + 1, len(lines)) if _REPLACE.match(lines[k]) or _SEARCH.match(lines[k])), None
        )
        if end is None or not _REPLACE.match(lines[end]):
            raise PatchError(f"the SEARCH/REPLACE block at line {i + 1} ({path}) does not end with '>>>>>>> REPLACE'")
        edits.append(
            SearchReplace(path, _block_text(lines[i + 1 : divider]), _block_text(lines[divider + 1 : end]), line=i + 1)
        )
        i = end + 1
    if not edits:
        excerpt = " ".join(text.split())[:160]
        raise PatchError(
            f"no SEARCH/REPLACE blocks found in the answer: {excerpt!r}; each edit is the file's path "
            "on its own line, then '<<<<<<< SEARCH', the exact lines, '=======', the new lines, "
            "'>>>>>>> REPLACE'"
        )
    return edits


def _read(path: Path, name: str) -> str | None:
    if not path.exists():
        return None
    if not path.is_file():
        raise PatchError(f"{name} is not a file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise PatchError(f"{name} is not a UTF-8 text file: it cannot be edited with SEARCH/REPLACE") from None


def _line_matches(text: str, search: str) -> list[int]:
    """Offsets where `search` matches whole lines of `text`."""
    found, at = [], text.find(search)
    while at != -1:
        if at == 0 or text[at - 1] == "\n":
            found.append(at)
        at = text.find(search, at + 1)
    return found


def _no_match(name: str, edit: SearchReplace, text: str, earlier: bool) -> str:
    first = edit.search.split("\n", 1)[0]
    where = "the file as the earlier blocks left it" if earlier else "the file"
    message = (
        f"{name}: the SEARCH block at line {edit.line} of the answer (first line {first!r}) matches 0 times in {where}"
    )
    want = ["".join(line.split()) for line in edit.search.split("\n")[:-1]]
    have = ["".join(line.split()) for line in text.split("\n")]
    close = next((n for n in range(len(have) - len(want) + 1) if have[n : n + len(want)] == want), None)
    if close is not None:
        message += f" (lines that differ only in whitespace or indentation are at line {close + 1})"
    elif at := _line_matches(text, first + "\n"):
        message += f" (its first line is at line {text.count(chr(10), 0, at[0]) + 1}, but the lines after it differ)"
    return message + ": SEARCH must copy whole lines of the current file exactly"


def _apply_one(text: str | None, edit: SearchReplace, name: str, earlier: bool) -> str:
    if text is None:
        if edit.search:
            raise PatchError(
                f"{name} does not exist: to create it, leave its SEARCH part empty "
                f"(the block at line {edit.line} searches for {edit.search.split(chr(10))[0]!r})"
            )
        return edit.replace
    if not edit.search:
        if text:
            raise PatchError(
                f"{name} already exists: an empty SEARCH only creates new files; quote the lines to replace"
            )
        return edit.replace
    body = text if text.endswith("\n") or not text else text + "\n"  # the last line is a whole line too
    found = _line_matches(body, edit.search)
    if not found:
        raise PatchError(_no_match(name, edit, body, earlier))
    if len(found) > 1:
        lines = ", ".join(str(body.count("\n", 0, at) + 1) for at in found)
        raise PatchError(
            f"{name}: the SEARCH block at line {edit.line} of the answer (first line "
            f"{edit.search.split(chr(10))[0]!r}) matches {len(found)} times (at lines {lines}): "
            "include more surrounding lines so that it matches exactly once"
        )
    result = body[: found[0]] + edit.replace + body[found[0] + len(edit.search) :]
    if body != text and result.endswith("\n"):
        result = result[:-1]  # the file had no final newline: keep it that way
    return result


def search_replace_to_diff(edits: list[SearchReplace], root: Path, policy: PatchPolicy) -> str:
    """Apply the edits in memory to the files under `root` and return the unified diff."""
    if not edits:
        raise PatchError("no SEARCH/REPLACE blocks to apply")
    old: dict[str, str] = {}
    new: dict[str, str | None] = {}
    crlf: set[str] = set()
    for edit in edits:
        name = check_path(edit.path, root, policy)
        earlier = name in new
        if not earlier:
            original = _read(root / name, name)
            new[name] = original
            if original is not None:
                old[name] = original
                if "\n" in original and original.count("\r\n") == original.count("\n"):
                    crlf.add(name)  # match against LF text, write the file's CRLF back
                    new[name] = original.replace("\r\n", "\n")
        new[name] = _apply_one(new[name], edit, name, earlier)
    after = {name: text.replace("\n", "\r\n") if name in crlf else text for name, text in new.items()}
    changed = {name: text for name, text in after.items() if text != old.get(name)}
    if not changed:
        raise PatchError("the SEARCH/REPLACE blocks change nothing: each REPLACE must differ from its SEARCH")
    return unified_diff({name: old[name] for name in changed if name in old}, changed)
