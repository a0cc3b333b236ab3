"""Patches are applied strictly to an isolated copy, and rule-breaking ones are rejected."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from groundwork.patch import patching
from groundwork.patch.diff_text import extract_diff, looks_like_search_replace
from groundwork.patch.patching import PatchError, PatchPolicy, apply_patch, check_patch, trial_apply, unified_diff

POLICY = PatchPolicy(protected=frozenset({"evaluate.py"}))


@pytest.fixture
def codebase(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    root.mkdir()
    (root / "train.py").write_text("lr = 1\nsteps = 2\n")
    (root / "evaluate.py").write_text("print('eval')\n")
    return root


def test_multi_file_diff_with_new_subdirectory_applies(codebase):
    diff = unified_diff(
        {"train.py": "lr = 1\nsteps = 2\n"}, {"train.py": "lr = 3\nsteps = 2\n", "lib/util.py": "X = 1\n"}
    )
    assert sorted(apply_patch(diff, codebase, POLICY)) == ["lib/util.py", "train.py"]
    assert (codebase / "train.py").read_text() == "lr = 3\nsteps = 2\n"
    assert (codebase / "lib" / "util.py").read_text() == "X = 1\n"


def test_diff_without_prefixes_applies(codebase):
    diff = "--- train.py\n+++ train.py\n@@ -1,2 +1,2 @@\n-lr = 1\n+lr = 5\n steps = 2\n"
    apply_patch(diff, codebase, POLICY)
    assert (codebase / "train.py").read_text().startswith("lr = 5")


@pytest.mark.parametrize(
    "diff, reason",
    [
        (unified_diff({"evaluate.py": "print('eval')\n"}, {"evaluate.py": "print(0)\n"}), "locked"),
        ("--- a/../x.py\n+++ b/../x.py\n@@ -0,0 +1 @@\n+x\n", "escapes the codebase"),
        ("--- /dev/null\n+++ /etc/passwd\n@@ -0,0 +1 @@\n+x\n", "absolute"),
        ("diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc\n", "symlink"),
        ("diff --git a/m.bin b/m.bin\nGIT binary patch\nliteral 1\nIcmZo*00001\n", "binary"),
        ("this is not a diff at all\n", "no file changes"),
        ("--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-lr = 9\n+lr = 5\n steps = 2\n", "does not apply"),
        ("--- a/train.py\n+++ b/train.py\n@@ -1,5 +1,2 @@\n-lr = 1\n+lr = 5\n steps = 2\n", "malformed|does not apply"),
    ],
)
def test_rule_breaking_or_broken_patches_are_rejected_and_nothing_changes(codebase, diff, reason):
    before = {p.name: p.read_text() for p in codebase.iterdir()}
    with pytest.raises(PatchError, match=reason):
        apply_patch(diff, codebase, POLICY)
    assert {p.name: p.read_text() for p in codebase.iterdir()} == before


def test_paths_through_symlinks_are_rejected(codebase, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.py").write_text("a\n")
    os.symlink(outside, codebase / "link")
    diff = "--- a/link/f.py\n+++ b/link/f.py\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(PatchError, match="symlink"):
        apply_patch(diff, codebase, POLICY)
    assert (outside / "f.py").read_text() == "a\n"


def test_oversized_patch_is_rejected(codebase):
    big = unified_diff({"train.py": "lr = 1\nsteps = 2\n"}, {"train.py": "x = 1\n" * 200_000})
    with pytest.raises(PatchError, match="over the limit"):
        apply_patch(big, codebase, POLICY)


def test_trial_apply_leaves_the_codebase_untouched(codebase):
    diff = unified_diff({"train.py": "lr = 1\nsteps = 2\n"}, {"train.py": "lr = 2\nsteps = 2\n"})
    attempt = trial_apply(diff, codebase, POLICY)
    assert attempt.applied and attempt.files == ["train.py"] and len(attempt.codebase_hash) == 64
    assert (codebase / "train.py").read_text() == "lr = 1\nsteps = 2\n"
    rejected = trial_apply(unified_diff({"evaluate.py": "print('eval')\n"}, {"evaluate.py": ""}), codebase, POLICY)
    assert not rejected.applied and "locked" in rejected.error


def test_patch_applies_inside_an_enclosing_git_repository(codebase, tmp_path):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    diff = unified_diff({"train.py": "lr = 1\nsteps = 2\n"}, {"train.py": "lr = 7\nsteps = 2\n"})
    apply_patch(diff, codebase, POLICY)
    assert (codebase / "train.py").read_text().startswith("lr = 7")


# --- check_patch, restoring, unified_diff --------------------------------------------------


def test_check_patch_reports_files_and_strip_level(codebase):
    rename = (
        "diff --git a/train.py b/lib/train.py\nsimilarity index 100%\nrename from train.py\nrename to lib/train.py\n"
    )
    assert check_patch(rename, codebase, POLICY) == (["train.py", "lib/train.py"], 1)
    plain = "--- train.py\n+++ train.py\n@@ -1,2 +1,2 @@\n-lr = 1\n+lr = 5\n steps = 2\n"
    assert check_patch(plain, codebase, POLICY) == (["train.py"], 0)


def test_a_failure_while_writing_is_undone(codebase, monkeypatch):
    """git checks every hunk before writing, but writing itself can fail part-way."""
    real = patching._git

    def writes_then_fails(args, text, root):
        proc = real(args, text, root)
        if "--numstat" in args:
            return proc
        return subprocess.CompletedProcess(args, 1, b"", b"error: unable to write file 'lib/util.py'")

    monkeypatch.setattr(patching, "_git", writes_then_fails)
    diff = unified_diff(
        {"train.py": "lr = 1\nsteps = 2\n"}, {"train.py": "lr = 3\nsteps = 2\n", "lib/deep/util.py": "X = 1\n"}
    )
    with pytest.raises(PatchError, match="unable to write"):
        apply_patch(diff, codebase, POLICY)
    assert (codebase / "train.py").read_text() == "lr = 1\nsteps = 2\n"
    assert not (codebase / "lib").exists()


@pytest.mark.parametrize(
    "before, after",
    [
        ({"a.py": "x = 1\f\ny = '\u2028'\n"}, {"a.py": "x = 2\f\ny = '\u2028'\n"}),  # split at \n only
        ({}, {"empty.py": ""}),  # new empty file
        ({"train.py": "lr = 1\nsteps = 2\n", "gone.py": ""}, {"train.py": "lr = 1\nsteps = 2\n"}),
        ({"a.py": "a\nb"}, {"a.py": "a\nc"}),  # no final newline
        ({"a.py": "a\r\nb\r\n"}, {"a.py": "a\r\nc\r\n"}),  # CRLF file
    ],
)
def test_unified_diff_round_trips_through_apply_patch(tmp_path, before, after):
    root = tmp_path / "rt"
    root.mkdir()
    for name, text in before.items():
        (root / name).write_bytes(text.encode())
    apply_patch(unified_diff(before, after), root, POLICY)
    assert {p.name: p.read_bytes().decode() for p in root.iterdir()} == after


# --- extract_diff ----------------------------------------------------------------------------

DIFF = "--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-lr = 1\n+lr = 5\n steps = 2\n"


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Sure:\n```diff\n" + DIFF + "```\nDone.", DIFF),
        ("```patch\n" + DIFF + "```\n```python\nprint('not a diff')\n```\n```\n" + DIFF + "```", DIFF + DIFF),
        ("```python\n" + DIFF + "```", DIFF),  # mislabelled, but a diff
        ("Here it is.\n\n" + DIFF + "\nThat lowers nothing.\n", DIFF + "\n"),
        (DIFF.rstrip("\n"), DIFF),  # final newline added
        (DIFF.replace("\n", "\r\n"), DIFF),
        (DIFF.replace("\n", "\r"), DIFF),
        # A fence indented inside a list item: its body loses the list's indentation.
        ("1. Lower it:\n\n   ```diff\n" + "".join("   " + line for line in DIFF.splitlines(True)) + "   ```\n", DIFF),
        ("diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n\n---\nNotes", None),
    ],
)
def test_extract_diff(answer, expected):
    got = extract_diff(answer)
    if expected is None:
        assert got == "diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n\n"
    else:
        assert got == expected


def test_extract_diff_without_a_diff_says_what_it_saw():
    with pytest.raises(PatchError, match=r"no unified diff found in the answer: 'I think.*SEARCH/REPLACE blocks"):
        extract_diff("I think\ntrain.py\n<<<<<<< SEARCH\nlr = 1\n=======\nlr = 2\n>>>>>>> REPLACE\n")
    assert looks_like_search_replace("x\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n")
    assert not looks_like_search_replace(DIFF)
