"""SEARCH/REPLACE blocks are parsed, applied strictly in memory and turned into a diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from groundwork.patch.patching import PatchError, PatchPolicy, apply_patch
from groundwork.patch.search_replace import SearchReplace, parse_search_replace, search_replace_to_diff

POLICY = PatchPolicy(protected=frozenset({"evaluate.py"}))
TRAIN = "lr = 1\nsteps = 2\n\ndef f():\n    return lr\n\ndef g():\n    return lr\n"


def block(path: str, search: str, replace: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


@pytest.fixture
def codebase(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    (root / "sub").mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    (root / "evaluate.py").write_text("print('eval')\n")
    (root / "sub" / "util.py").write_text("X = 1\n")
    return root


def edit(codebase: Path, answer: str) -> list[str]:
    """Parse, turn into a diff, apply it: what the implementer does."""
    return apply_patch(search_replace_to_diff(parse_search_replace(answer), codebase, POLICY), codebase, POLICY)


# --- parsing -------------------------------------------------------------------------------


def test_parses_an_unfenced_block():
    assert parse_search_replace("Change it:\n" + block("train.py", "lr = 1\n", "lr = 2\n")) == [
        SearchReplace("train.py", "lr = 1\n", "lr = 2\n", line=3)
    ]


def test_parses_fenced_blocks_several_files_and_several_blocks_per_file():
    answer = (
        "```python\ntrain.py\n<<<<<<< SEARCH\nlr = 1\n=======\nlr = 2\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nsteps = 2\n=======\nsteps = 3\n>>>>>>> REPLACE\n```\n\n"
        "And the helper:\n\n`sub/util.py`\n```python\n<<<<<<< SEARCH\nX = 1\n=======\nX = 2\n>>>>>>> REPLACE\n```\n"
    )
    edits = parse_search_replace(answer)
    assert [(e.path, e.search, e.replace) for e in edits] == [
        ("train.py", "lr = 1\n", "lr = 2\n"),
        ("train.py", "steps = 2\n", "steps = 3\n"),  # a block right after another: same file
        ("sub/util.py", "X = 1\n", "X = 2\n"),  # path before the fence, in backticks
    ]


def test_crlf_answers_are_normalised_and_empty_parts_allowed():
    edits = parse_search_replace(block("new.py", "", "A = 1\n").replace("\n", "\r\n"))
    assert edits == [SearchReplace("new.py", "", "A = 1\n", line=2)]


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("I would change the learning rate.", "no SEARCH/REPLACE blocks found"),
        ("train.py\n<<<<<<< SEARCH\nlr = 1\n>>>>>>> REPLACE\n", "has no '=======' line"),
        ("train.py\n<<<<<<< SEARCH\nlr = 1\n=======\nlr = 2\n", r"does not end with '>>>>>>> REPLACE'"),
        (
            "Here is the fix:\n<<<<<<< SEARCH\nlr = 1\n=======\nlr = 2\n>>>>>>> REPLACE\n",
            "no file path on the line before",
        ),
        ("<<<<<<< SEARCH\nlr = 1\n=======\nlr = 2\n>>>>>>> REPLACE\n", "no file path on the line before"),
    ],
)
def test_malformed_answers_are_rejected(answer, reason):
    with pytest.raises(PatchError, match=reason):
        parse_search_replace(answer)


# --- applying ------------------------------------------------------------------------------


def test_edits_become_a_diff_that_applies(codebase):
    answer = (
        block("train.py", "lr = 1\n", "lr = 0.5\n")
        + block("train.py", "def g():\n    return lr\n", "def g():\n    return 2 * lr\n")
        + block("sub/util.py", "X = 1\n", "X = 2\nY = 3\n")
    )
    diff = search_replace_to_diff(parse_search_replace(answer), codebase, POLICY)
    assert diff.startswith("diff --git a/sub/util.py b/sub/util.py\n")
    assert sorted(apply_patch(diff, codebase, POLICY)) == ["sub/util.py", "train.py"]
    assert (codebase / "train.py").read_text() == TRAIN.replace("lr = 1", "lr = 0.5").replace(
        "def g():\n    return lr", "def g():\n    return 2 * lr"
    )
    assert (codebase / "sub" / "util.py").read_text() == "X = 2\nY = 3\n"


def test_later_blocks_match_the_text_as_earlier_blocks_left_it(codebase):
    edit(codebase, block("train.py", "lr = 1\n", "lr = 5\n") + block("train.py", "lr = 5\nsteps = 2\n", "lr = 6\n"))
    assert (codebase / "train.py").read_text().startswith("lr = 6\n\ndef f():")


def test_empty_search_creates_a_new_file(codebase):
    assert edit(codebase, block("pkg/deep/new.py", "", "def h():\n    return 1\n")) == ["pkg/deep/new.py"]
    assert (codebase / "pkg" / "deep" / "new.py").read_text() == "def h():\n    return 1\n"


def test_line_endings_and_a_missing_final_newline_are_kept(codebase):
    (codebase / "win.py").write_bytes(b"a = 1\r\nb = 2\r\n")
    (codebase / "noeol.py").write_text("a = 1\nb = 2")
    edit(codebase, block("win.py", "b = 2\n", "b = 3\n") + block("noeol.py", "b = 2\n", "b = 4\n"))
    assert (codebase / "win.py").read_bytes() == b"a = 1\r\nb = 3\r\n"
    assert (codebase / "noeol.py").read_text() == "a = 1\nb = 4"


@pytest.mark.parametrize(
    "answer, reason",
    [
        (
            block("train.py", "lr = 9\n", "lr = 2\n"),
            r"train\.py: the SEARCH block .*\(first line 'lr = 9'\) matches 0 times",
        ),
        (
            block("train.py", "    return lr\n", "    return 0\n"),
            r"train\.py: .*\(first line '    return lr'\) matches 2 times \(at lines 5, 8\): include more",
        ),
        (block("train.py", "lr  = 1\n", "lr = 2\n"), "differ only in whitespace or indentation are at line 1"),
        (block("train.py", "r = 1\n", "r = 2\n"), "matches 0 times"),  # whole lines only: not inside 'lr = 1'
        (
            block("train.py", "lr = 1\n", "lr = 2\n") + block("train.py", "lr = 1\n", "lr = 3\n"),
            "matches 0 times in the file as the earlier blocks left it",
        ),
        (block("missing.py", "x\n", "y\n"), "missing.py does not exist: to create it, leave its SEARCH part empty"),
        (block("train.py", "", "x = 1\n"), "train.py already exists: an empty SEARCH only creates new files"),
        (block("train.py", "lr = 1\n", "lr = 1\n"), "change nothing"),
        (block("evaluate.py", "print('eval')\n", "print(1)\n"), "locked"),
        (block("../outside.py", "", "x = 1\n"), "escapes the codebase"),
        (block("/etc/passwd", "", "x\n"), "absolute"),
        (block(".git/config", "", "x\n"), r"inside \.git"),
        (block("sub", "X = 1\n", "X = 2\n"), "sub is not a file"),
    ],
)
def test_failing_edits_name_the_file_and_the_reason(codebase, answer, reason):
    before = (codebase / "train.py").read_text()
    with pytest.raises(PatchError, match=reason):
        search_replace_to_diff(parse_search_replace(answer), codebase, POLICY)
    assert (codebase / "train.py").read_text() == before


def test_paths_through_symlinks_are_rejected(codebase, tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.py").write_text("S = 1\n")
    os.symlink(tmp_path / "outside", codebase / "link")
    with pytest.raises(PatchError, match="symlink"):
        search_replace_to_diff(parse_search_replace(block("link/secret.py", "S = 1\n", "S = 2\n")), codebase, POLICY)
    assert (tmp_path / "outside" / "secret.py").read_text() == "S = 1\n"
