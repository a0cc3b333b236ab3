"""The text of a diff: pulling it out of a model's answer, and reading its structure strictly.

`git apply` skips text it does not recognise, so a hunk whose header counts too few lines
would lose its extra lines without a word. `parse_diff` reads every line and rejects
anything that is not exactly where a diff allows it, naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class PatchError(ValueError):
    """A patch that was rejected or did not apply; the message says which rule or hunk."""


# --- pulling the diff out of an answer -------------------------------------------------

# A fence may be indented (a diff inside a list item): its body loses that indentation.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[^\s`~]*)[^\n]*\n(?P<body>.*?)"
    r"^[ \t]*(?P=fence)[`~]*[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_DIFF_LANGS = {"diff", "patch", "udiff"}
_EXTENDED = (
    "old mode",
    "new mode",
    "deleted file mode",
    "new file mode",
    "copy from",
    "copy to",
    "rename from",
    "rename to",
    "rename old",
    "rename new",
    "similarity index",
    "dissimilarity index",
    "index",
)
# Lines that can belong to a diff; unfenced text is cut at the first line that cannot.
_DIFF_LINE = (
    " ",
    "+",
    "-",
    "@@",
    "\\",
    "diff --git ",
    "GIT binary patch",
    "Binary files ",
    *(f"{name} " for name in _EXTENDED),
)


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _starts_section(lines: list[str], i: int) -> bool:
    return lines[i].startswith("diff --git ") or (
        lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")
    )


def _looks_like_diff(text: str) -> bool:
    lines = text.split("\n")
    return any(_starts_section(lines, i) for i in range(len(lines)))


def looks_like_search_replace(text: str) -> bool:
    return bool(
        re.search(r"^<{5,9} ?SEARCH\s*$", text, re.MULTILINE) and re.search(r"^>{5,9} ?REPLACE\s*$", text, re.MULTILINE)
    )


def _unfenced(text: str) -> str:
    """Every run of diff lines that starts at a file header; prose around and between is dropped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    kept, i = [], 0
    while i < len(lines):
        if not _starts_section(lines, i):
            i += 1
            continue
        j = i + 1
        # a bare '---' is a markdown rule far more often than a removed '--' line
        while j < len(lines) and (lines[j] == "" or lines[j].startswith(_DIFF_LINE)) and lines[j] != "---":
            j += 1
        kept += lines[i:j]
        i = j
    return "".join(line + "\n" for line in kept)


def _dedent(body: str, indent: str) -> str:
    """A fenced block's lines without the fence's own indentation (a diff's context lines
    keep their leading space; a line emptied by an editor stays empty)."""
    if not indent:
        return body
    return "".join(line[len(indent) :] if line.startswith(indent) else line for line in body.splitlines(True))


def extract_diff(text: str) -> str:
    """The unified diff in a model's answer: its fenced diff blocks in order, or else the
    unfenced diff text; LF line endings and a final newline."""
    text = normalise_newlines(text)
    bodies = [(_dedent(m["body"], m["indent"]), m["lang"].lower()) for m in _FENCE.finditer(text)]
    blocks = [
        body for body, lang in bodies if _looks_like_diff(body) or (lang in _DIFF_LANGS and "\n@@" in "\n" + body)
    ]
    diff = "".join(blocks) if blocks else _unfenced(text)
    if not diff.strip():
        excerpt = " ".join(text.split())[:160]
        hint = " (it holds SEARCH/REPLACE blocks, not a diff)" if looks_like_search_replace(text) else ""
        raise PatchError(
            f"no unified diff found in the answer: {excerpt!r}{hint}; answer with a ```diff block "
            "whose files start with '--- a/path' and '+++ b/path' and whose hunks start with '@@'"
        )
    return diff if diff.endswith("\n") else diff + "\n"


# --- reading a diff strictly ------------------------------------------------------------

_EXTENDED_RE = re.compile(r"^({}) (.*)$".format("|".join(re.escape(name) for name in _EXTENDED)))
_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_DATE = re.compile(r"\s+\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?( ?[+-]\d{4})?$")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


@dataclass
class Hunk:
    line: int  # of its @@ header in the diff, from 1
    header: str
    old_start: int
    old_count: int
    body: list[str] = field(default_factory=list)  # '\ No newline at end of file' markers included

    @property
    def before(self) -> list[str]:
        """The lines the file must hold here (context and removed), without their marks."""
        return [line[1:] for line in self.body if line[:1] in (" ", "-", "")]

    @property
    def has_context(self) -> bool:
        return any(line[:1] in (" ", "") for line in self.body)


@dataclass
class FileSection:
    line: int  # of its first header line in the diff, from 1
    git_names: tuple[str, str] | None = None  # from 'diff --git A B', when they can be told apart
    old: str | None = None  # from '--- ', '/dev/null' for a new file
    new: str | None = None  # from '+++ '
    headers: dict[str, str] = field(default_factory=dict)  # git's extended headers, e.g. 'rename to'
    hunks: list[Hunk] = field(default_factory=list)


def unquote(text: str) -> tuple[str, str]:
    """A C-quoted name as git writes it ("a/t\\303\\251.py"), and the text after it."""
    out, i = bytearray(), 1
    while i < len(text) and text[i] != '"':
        if text[i] != "\\":
            out += text[i].encode()
            i += 1
        elif text[i + 1 : i + 4].isdigit():
            out.append(int(text[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        elif text[i + 1 : i + 2] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            raise PatchError(f"malformed diff: bad escape in the quoted name {text!r}")
    if i >= len(text):
        raise PatchError(f"malformed diff: unterminated quoted name {text!r}")
    return out.decode("utf-8", errors="replace"), text[i + 1 :]


def _header_name(raw: str) -> str:
    if raw.startswith('"'):
        return unquote(raw)[0]
    return _DATE.sub("", raw.split("\t", 1)[0])


def _git_names(rest: str) -> tuple[str, str] | None:
    if rest.startswith('"'):
        first, tail = unquote(rest)
        tail = tail[1:]
        return first, unquote(tail)[0] if tail.startswith('"') else tail
    half = len(rest) // 2  # 'a/x b/x': git splits where both halves name the same file
    if len(rest) % 2 and rest[half] == " " and rest[:half].split("/", 1)[-1] == rest[half + 1 :].split("/", 1)[-1]:
        return rest[:half], rest[half + 1 :]
    if rest.count(" b/") == 1:
        first, second = rest.split(" b/")
        return first, "b/" + second
    return None


def parse_diff(text: str) -> list[FileSection]:
    """The file sections of a diff (LF line endings). Text before the first file header is
    ignored, as git does; anything else out of place raises PatchError naming its line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines) and not _starts_section(lines, i):
        if lines[i].startswith("@@"):
            raise PatchError(
                f"malformed diff: line {i + 1}: hunk {lines[i]!r} has no file header before it "
                "('--- a/path' and '+++ b/path')"
            )
        i += 1
    sections: list[FileSection] = []
    while i < len(lines):
        if _starts_section(lines, i):
            section, i = _section(lines, i)
            sections.append(section)
            continue
        j = i
        while j < len(lines) and lines[j] == "":
            j += 1
        if j == len(lines):
            break  # trailing blank lines
        if j > i and _starts_section(lines, j):
            i = j
            continue
        raise PatchError(_stray(lines, j, sections))
    return sections


def _stray(lines: list[str], j: int, sections: list[FileSection]) -> str:
    message = f"malformed diff: line {j + 1} ({lines[j][:80]!r}) is outside any hunk"
    last = sections[-1].hunks[-1] if sections and sections[-1].hunks else None
    if last is not None:
        message += (
            f"; if it belongs to the hunk at line {last.line} ({last.header}), that header counts "
            "too few lines: fix its counts (and hunk headers must follow each other with no blank line)"
        )
    return message


def _section(lines: list[str], i: int) -> tuple[FileSection, int]:
    section = FileSection(line=i + 1)
    if lines[i].startswith("diff --git "):
        section.git_names = _git_names(lines[i][len("diff --git ") :])
        i += 1
        while i < len(lines) and (m := _EXTENDED_RE.match(lines[i])):
            if m[1] in section.headers:
                raise PatchError(f"malformed diff: line {i + 1}: repeated '{m[1]}' header")
            section.headers[m[1]] = m[2]
            i += 1
    if i < len(lines) and lines[i].startswith("--- "):
        if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
            raise PatchError(f"malformed diff: line {i + 1}: a '---' header must be followed by a '+++' header")
        section.old, section.new = _header_name(lines[i][4:]), _header_name(lines[i + 1][4:])
        i += 2
        if i >= len(lines) or not lines[i].startswith("@@"):
            raise PatchError(
                f"malformed diff: line {i + 1}: the file header of {section.new!r} is not followed "
                "by a hunk ('@@ -start,count +start,count @@')"
            )
    elif i < len(lines) and lines[i].startswith("@@"):
        raise PatchError(f"malformed diff: line {i + 1}: hunk without '--- a/path' and '+++ b/path' headers")
    while i < len(lines) and lines[i].startswith("@@"):
        hunk, i = _hunk(lines, i)
        section.hunks.append(hunk)
    return section, i


def _hunk(lines: list[str], i: int) -> tuple[Hunk, int]:
    header = lines[i]
    m = _HUNK_RE.match(header)
    if not m:
        raise PatchError(
            f"malformed diff: line {i + 1}: malformed hunk header {header!r}: "
            "expected '@@ -start,count +start,count @@' with line numbers"
        )
    old_n = 1 if m[2] is None else int(m[2])
    new_n = 1 if m[4] is None else int(m[4])
    if old_n == new_n == 0:
        raise PatchError(f"malformed diff: line {i + 1}: hunk header {header!r} counts no lines")
    hunk = Hunk(line=i + 1, header=header, old_start=int(m[1]), old_count=old_n)
    old = new = 0
    j = i + 1
    while old < old_n or new < new_n:
        line = lines[j] if j < len(lines) else None
        mark = None if line is None else (line[:1] or " ")  # a bare empty line is empty context, as git reads it
        if mark == " ":
            old, new = old + 1, new + 1
        elif mark == "-":
            old += 1
        elif mark == "+":
            new += 1
        elif mark != "\\" or not hunk.body:
            found = "the diff ends" if line is None else f"line {j + 1} ({line[:80]!r}) is not a hunk line"
            raise PatchError(
                f"malformed diff: hunk at line {i + 1} ({header}) is shorter than its header says: it counts "
                f"{old_n} old and {new_n} new lines, but {found} after {old} old and {new} new "
                "(hunk lines start with ' ', '-' or '+'); fix the counts or the lines"
            )
        if old > old_n or new > new_n:
            raise PatchError(
                f"malformed diff: hunk at line {i + 1} ({header}) is longer than its header says: line {j + 1} "
                f"goes past its {old_n} old and {new_n} new lines; fix the counts in the header"
            )
        hunk.body.append(line)
        j += 1
    if j < len(lines) and lines[j].startswith("\\"):
        hunk.body.append(lines[j])
        j += 1
    return hunk, j
