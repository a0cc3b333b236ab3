"""Patches are applied strictly to an isolated copy, and rule-breaking ones are rejected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from groundwork.implementation.patching import PatchError, PatchPolicy, apply_patch, trial_apply, unified_diff

POLICY = PatchPolicy(protected=frozenset({"evaluate.py"}))


@pytest.fixture
def codebase(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    root.mkdir()
    (root / "train.py").write_text("lr = 1\nsteps = 2\n")
    (root / "evaluate.py").write_text("print('eval')\n")
    return root


def test_multi_file_diff_with_new_subdirectory_applies(codebase):
    diff = unified_diff({"train.py": "lr = 1\nsteps = 2\n"},
                        {"train.py": "lr = 3\nsteps = 2\n", "lib/util.py": "X = 1\n"})
    assert sorted(apply_patch(diff, codebase, POLICY)) == ["lib/util.py", "train.py"]
    assert (codebase / "train.py").read_text() == "lr = 3\nsteps = 2\n"
    assert (codebase / "lib" / "util.py").read_text() == "X = 1\n"


def test_diff_without_prefixes_applies(codebase):
    diff = "--- train.py\n+++ train.py\n@@ -1,2 +1,2 @@\n-lr = 1\n+lr = 5\n steps = 2\n"
    apply_patch(diff, codebase, POLICY)
    assert (codebase / "train.py").read_text().startswith("lr = 5")


@pytest.mark.parametrize("diff, reason", [
    (unified_diff({"evaluate.py": "print('eval')\n"}, {"evaluate.py": "print(0)\n"}), "locked"),
    ("--- a/../x.py\n+++ b/../x.py\n@@ -0,0 +1 @@\n+x\n", "escapes the codebase"),
    ("--- /dev/null\n+++ /etc/passwd\n@@ -0,0 +1 @@\n+x\n", "absolute"),
    ("diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc\n", "symlink"),
    ("diff --git a/m.bin b/m.bin\nGIT binary patch\nliteral 1\nIcmZo*00001\n", "binary"),
    ("this is not a diff at all\n", "no file changes"),
    ("--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-lr = 9\n+lr = 5\n steps = 2\n", "does not apply"),
    ("--- a/train.py\n+++ b/train.py\n@@ -1,5 +1,2 @@\n-lr = 1\n+lr = 5\n steps = 2\n", "malformed|does not apply"),
])
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
