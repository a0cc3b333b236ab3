"""A corpus of hostile, broken and awkward diffs, as models write them.

Each case is either applied exactly as written (the resulting files are asserted in full)
or rejected with its reason (a regex on the message), and then nothing on disk changed,
the symlink target outside the codebase included.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from groundwork.implementation.diff_text import extract_diff
from groundwork.implementation.patching import PatchError, PatchPolicy, apply_patch

POLICY = PatchPolicy(protected=frozenset({"evaluate.py"}))

TRAIN = (
    "import math\n"
    "\n"
    "lr = 0.1\n"
    "steps = 100\n"
    "batch = 32\n"
    "\n"
    "\n"
    "def schedule(step):\n"
    "    return lr * math.cos(step / steps)\n"
    "\n"
    "\n"
    "def main():\n"
    "    for step in range(steps):\n"
    "        print(step, schedule(step))\n"
)
UTIL = "def double(x):\n    return 2 * x\n"
FILES = {
    "train.py": TRAIN,
    "evaluate.py": "print('eval')\n",
    "sub/__init__.py": "",
    "sub/util.py": UTIL,
    "notes.txt": "old notes\nsecond line\n",
    "noeol.py": "a = 1\nb = 2",
}


@pytest.fixture
def codebase(tmp_path: Path) -> Path:
    """train.py, a locked evaluate.py, a sub/ package, and `outlink`, a symlink to a folder outside."""
    root = tmp_path / "code"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.py").write_text("SECRET = 1\n")
    os.symlink("../outside", root / "outlink")
    return root


def snapshot(tree: Path) -> dict[str, str]:
    """Every file under `tree` (symlinks not followed): text, or '-> target' for a link."""
    out = {}
    for folder, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(tree).as_posix()
            if path.is_symlink():
                out[rel] = f"-> {os.readlink(path)}"
            elif path.is_file():
                out[rel] = path.read_bytes().decode()
    return out


@dataclass
class Case:
    diff: str
    changes: dict[str, str | None] = field(default_factory=dict)  # applied: new texts under code/, None = deleted
    reason: str | None = None  # rejected: regex on the message
    answer: bool = False  # a raw model answer: through extract_diff first


def applied(diff: str, changes: dict[str, str | None], *, answer: bool = False) -> Case:
    return Case(diff, changes=changes, answer=answer)


def rejected(diff: str, reason: str, *, answer: bool = False) -> Case:
    return Case(diff, reason=reason, answer=answer)


LR_HUNK = "@@ -2,4 +2,4 @@\n \n-lr = 0.1\n+lr = 0.05\n steps = 100\n batch = 32\n"
LR_DIFF = "--- a/train.py\n+++ b/train.py\n" + LR_HUNK
LR_TRAIN = TRAIN.replace("lr = 0.1", "lr = 0.05")
UTIL_DIFF = (
    "--- a/sub/util.py\n+++ b/sub/util.py\n@@ -1,2 +1,2 @@\n def double(x):\n-    return 2 * x\n+    return x + x\n"
)
UTIL_NEW = "def double(x):\n    return x + x\n"
NEW_FILE = "--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x = 1\n"
RENAME = "diff --git a/{a} b/{b}\nsimilarity index 100%\nrename from {a}\nrename to {b}\n"
DELETE_EVALUATE = (
    "diff --git a/evaluate.py b/evaluate.py\n"
    "deleted file mode 100644\n"
    "--- a/evaluate.py\n"
    "+++ /dev/null\n"
    "@@ -1 +0,0 @@\n"
    "-print('eval')\n"
)

CASES = [
    pytest.param(
        applied(
            "diff --git a/train.py b/train.py\n"
            "index 1111111..2222222 100644\n"
            "--- a/train.py\n"
            "+++ b/train.py\n"
            "@@ -1,5 +1,5 @@\n"
            " import math\n"
            " \n"
            "-lr = 0.1\n"
            "+lr = 0.05\n"
            " steps = 100\n"
            " batch = 32\n"
            "@@ -11,4 +11,5 @@\n"
            " \n"
            " def main():\n"
            "     for step in range(steps):\n"
            "         print(step, schedule(step))\n"
            "+    print('done')\n",
            {"train.py": LR_TRAIN + "    print('done')\n"},
        ),
        id="clean-multi-hunk",
    ),
    pytest.param(
        applied(
            UTIL_DIFF + "diff --git a/pkg/deep/new.py b/pkg/deep/new.py\n"
            "new file mode 100644\n"
            "--- /dev/null\n"
            "+++ b/pkg/deep/new.py\n"
            "@@ -0,0 +1,2 @@\n"
            "+def triple(x):\n"
            "+    return 3 * x\n",
            {"sub/util.py": UTIL_NEW, "pkg/deep/new.py": "def triple(x):\n    return 3 * x\n"},
        ),
        id="multi-file-new-file-in-new-subdirectory",
    ),
    pytest.param(
        applied(
            "diff --git a/notes.txt b/notes.txt\n"
            "deleted file mode 100644\n"
            "--- a/notes.txt\n"
            "+++ /dev/null\n"
            "@@ -1,2 +0,0 @@\n"
            "-old notes\n"
            "-second line\n",
            {"notes.txt": None},
        ),
        id="delete-editable-file",
    ),
    pytest.param(
        applied(RENAME.format(a="sub/util.py", b="sub/helpers.py"), {"sub/util.py": None, "sub/helpers.py": UTIL}),
        id="rename-editable-file",
    ),
    pytest.param(
        rejected(LR_DIFF.replace("@@ -2,4 +2,4 @@", "@@ -2,x +2 @@"), "malformed hunk header"),
        id="malformed-hunk-header",
    ),
    pytest.param(
        rejected(LR_DIFF.replace("@@ -2,4 +2,4 @@", "@@ ... @@"), "malformed hunk header"),
        id="hunk-header-without-line-numbers",
    ),
    # git itself would apply the first four lines and silently drop '+extra = 1'.
    pytest.param(
        rejected(
            "--- a/train.py\n+++ b/train.py\n@@ -3,2 +3,2 @@\n"
            "-lr = 0.1\n+lr = 0.05\n steps = 100\n+extra = 1\n batch = 32\n",
            r"line 7 .*outside any hunk.*@@ -3,2 \+3,2 @@.*counts too few lines",
        ),
        id="hunk-counts-too-small",
    ),
    pytest.param(
        rejected(
            "--- a/train.py\n+++ b/train.py\n@@ -1,1 +1,2 @@\n import math\n \n+x = 1\n", "longer than its header says"
        ),
        id="hunk-old-count-too-small-inside-hunk",
    ),
    pytest.param(
        rejected(LR_DIFF.replace("@@ -2,4 +2,4 @@", "@@ -2,6 +2,6 @@"), "shorter than its header says"),
        id="hunk-counts-too-large",
    ),
    pytest.param(
        rejected(LR_DIFF.replace("@@ -2,4 +2,4 @@", "@@ -2,6 +2,6 @@") + UTIL_DIFF, "shorter than its header says"),
        id="hunk-counts-too-large-swallowing-next-file",
    ),
    pytest.param(
        rejected(
            LR_DIFF.replace("-lr = 0.1", "-lr = 0.2"),
            r"hunk 1 of 1 for train\.py \(@@ -2,4 \+2,4 @@, line 3 of the diff\) does not match.*"
            r"line 3 of the file is 'lr = 0\.1' but the hunk expects 'lr = 0\.2'",
        ),
        id="context-does-not-match",
    ),
    pytest.param(
        rejected(LR_DIFF.replace("-lr = 0.1", "-lr  = 0.1"), "differ in whitespace"), id="context-differs-in-whitespace"
    ),
    pytest.param(applied(LR_DIFF.replace("\n", "\r\n"), {"train.py": LR_TRAIN}), id="crlf-diff-against-lf-file"),
    pytest.param(
        rejected(
            "--- a/train.py\n+++ b/train.py\n" + LR_HUNK.replace("\n", "\r\n").replace("@@\r\n", "@@\n"),
            "the diff's lines end in CRLF but the file uses LF",
        ),
        id="crlf-context-lines-against-lf-file",
    ),
    pytest.param(
        applied(
            "--- a/noeol.py\n+++ b/noeol.py\n@@ -1,2 +1,2 @@\n a = 1\n-b = 2\n\\ No newline at end of file\n+b = 3\n",
            {"noeol.py": "a = 1\nb = 3\n"},
        ),
        id="no-newline-at-end-old-side",
    ),
    pytest.param(
        applied(UTIL_DIFF + "\\ No newline at end of file\n", {"sub/util.py": UTIL_NEW.rstrip("\n")}),
        id="no-newline-at-end-new-side",
    ),
    pytest.param(
        applied(
            "--- a/noeol.py\n+++ b/noeol.py\n@@ -1,2 +1,2 @@\n a = 1\n-b = 2\n\\ No newline at end of file\n"
            "+b = 4\n\\ No newline at end of file\n",
            {"noeol.py": "a = 1\nb = 4"},
        ),
        id="no-newline-at-end-both-sides",
    ),
    pytest.param(
        rejected(
            "--- a/sub/util.py\n+++ b/sub/util.py\n@@ -1,2 +1,2 @@\n def double(x):\n-    return 2 * x\n"
            "\\ No newline at end of file\n+    return x + x\n",
            "does not apply",
        ),
        id="no-newline-marker-but-file-has-one",
    ),
    pytest.param(
        applied(
            "Here is the change:\n\n```diff\n" + LR_DIFF + "```\n\nThis halves the learning rate.\n",
            {"train.py": LR_TRAIN},
            answer=True,
        ),
        id="fenced-diff-with-prose-around",
    ),
    pytest.param(
        applied(
            "First the rate:\n```diff\n" + LR_DIFF + "```\nThen the helper:\n```\n" + UTIL_DIFF + "```\nDone.\n",
            {"train.py": LR_TRAIN, "sub/util.py": UTIL_NEW},
            answer=True,
        ),
        id="two-fenced-blocks",
    ),
    pytest.param(
        applied(
            "I changed two files.\n" + LR_DIFF + "\nand also\n\n" + UTIL_DIFF + "\nThat is all.\n",
            {"train.py": LR_TRAIN, "sub/util.py": UTIL_NEW},
            answer=True,
        ),
        id="unfenced-answer-with-prose",
    ),
    pytest.param(rejected(LR_DIFF + "That is all.\n", "line 9 .*outside any hunk"), id="raw-diff-with-trailing-prose"),
    pytest.param(
        applied("--- train.py\n+++ train.py\n" + LR_HUNK, {"train.py": LR_TRAIN}), id="paths-without-prefixes"
    ),
    pytest.param(
        rejected("--- a/train.py\n+++ train.py\n" + LR_HUNK, "mixes paths with and without a/ b/"),
        id="paths-mixed-prefixes",
    ),
    pytest.param(
        applied(
            "--- a/train.py\t2024-05-01 10:00:00.000000000 +0200\n+++ b/train.py\t2024-05-01 10:05:00.000000000 +0200\n"
            + LR_HUNK,
            {"train.py": LR_TRAIN},
        ),
        id="headers-with-timestamps",
    ),
    pytest.param(
        applied(LR_DIFF.replace("@@ -2,4 +2,4 @@", "@@ -5,4 +5,4 @@"), {"train.py": LR_TRAIN}),
        id="hunk-line-numbers-off-but-lines-exact",
    ),
    pytest.param(
        applied(LR_DIFF.replace("@@\n \n", "@@\n\n"), {"train.py": LR_TRAIN}), id="empty-context-line-without-its-space"
    ),
    pytest.param(
        rejected(
            "--- a/train.py\n+++ b/train.py\n@@ -4 +4 @@\n-steps = 100\n+steps = 200\n", "no unchanged context lines"
        ),
        id="zero-context-hunk-mid-file",
    ),
    pytest.param(rejected(NEW_FILE.format(path="../evil.py"), "escapes the codebase"), id="dotdot-traversal"),
    pytest.param(
        rejected(NEW_FILE.format(path="sub/../../evil.py"), "escapes the codebase"), id="dotdot-traversal-inside-path"
    ),
    pytest.param(
        rejected(NEW_FILE.replace("b/{path}", "{path}").format(path="/tmp/evil.py"), "absolute"), id="absolute-path"
    ),
    pytest.param(rejected(NEW_FILE.replace("b/{path}", "{path}").format(path="~/evil.py"), "absolute"), id="home-path"),
    pytest.param(rejected(NEW_FILE.format(path="tr\x01ain.py"), "control characters"), id="control-char-in-path"),
    pytest.param(rejected("--- a/\n+++ b/\n@@ -0,0 +1 @@\n+x = 1\n", "path in the patch is empty"), id="empty-path"),
    pytest.param(
        rejected(
            "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n"
            "+/etc/passwd\n\\ No newline at end of file\n",
            "symlink",
        ),
        id="diff-creates-symlink",
    ),
    pytest.param(
        rejected("diff --git a/train.py b/train.py\nold mode 100644\nnew mode 120000\n", "symlink"),
        id="diff-turns-file-into-symlink",
    ),
    pytest.param(
        rejected("diff --git a/train.py b/train.py\nindex 1111111..2222222 120000\n" + LR_DIFF, "symlink"),
        id="symlink-mode-on-index-line",
    ),
    pytest.param(
        rejected(
            "diff --git a/m b/m\nnew file mode 160000\n--- /dev/null\n+++ b/m\n@@ -0,0 +1 @@\n+x\n",
            "file mode 160000 is not accepted",
        ),
        id="submodule-mode",
    ),
    pytest.param(
        rejected(
            "--- a/outlink/secret.py\n+++ b/outlink/secret.py\n@@ -1 +1 @@\n-SECRET = 1\n+SECRET = 2\n",
            "goes through the symlink 'outlink'",
        ),
        id="edit-through-symlink-pointing-outside",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="outlink/new.py"), "goes through the symlink"),
        id="create-through-symlink-pointing-outside",
    ),
    pytest.param(
        rejected("--- a/evaluate.py\n+++ b/evaluate.py\n@@ -1 +1 @@\n-print('eval')\n+print(0.0)\n", "locked"),
        id="edit-locked-file",
    ),
    pytest.param(rejected(DELETE_EVALUATE, "locked"), id="delete-locked-file"),
    pytest.param(
        rejected(RENAME.format(a="evaluate.py", b="eval_old.py"), "'evaluate.py' is locked"), id="rename-locked-file"
    ),
    pytest.param(
        rejected(RENAME.format(a="train.py", b="evaluate.py"), "'evaluate.py' is locked"),
        id="rename-editable-onto-locked",
    ),
    pytest.param(
        rejected(RENAME.replace("rename", "copy").format(a="evaluate.py", b="leak.py"), "locked"), id="copy-locked-file"
    ),
    pytest.param(
        rejected(
            "diff --git a/train.py b/../train.py\nsimilarity index 100%\nrename from train.py\nrename to ../train.py\n",
            "escapes the codebase",
        ),
        id="rename-out-of-the-tree",
    ),
    pytest.param(rejected(NEW_FILE.format(path="EVALUATE.py"), "locked"), id="locked-file-other-case"),
    pytest.param(rejected(NEW_FILE.format(path=".git/config"), r"inside \.git"), id="git-config"),
    pytest.param(rejected(NEW_FILE.format(path="sub/.GIT/hooks/pre-commit"), r"inside \.git"), id="nested-git-folder"),
    pytest.param(
        rejected(
            "diff --git a/m.bin b/m.bin\nnew file mode 100644\nGIT binary patch\nliteral 1\nIcmZo*00001\n\n", "binary"
        ),
        id="git-binary-patch",
    ),
    pytest.param(
        rejected(
            "diff --git a/m.bin b/m.bin\nindex 1111111..2222222 100644\nBinary files a/m.bin and b/m.bin differ\n",
            "binary",
        ),
        id="binary-files-differ",
    ),
    pytest.param(rejected(NEW_FILE.format(path="n.py").replace("x = 1", "x = '\0'"), "NUL byte"), id="nul-byte"),
    pytest.param(
        rejected("--- /dev/null\n+++ b/big.py\n@@ -0,0 +1,100000 @@\n" + "+x = 1\n" * 100_000, "over the limit"),
        id="oversized-diff",
    ),
    pytest.param(applied("", {}), id="empty-diff-changes-nothing"),
    pytest.param(rejected("", "no unified diff found", answer=True), id="empty-answer"),
    pytest.param(
        rejected("I would lower the learning rate to 0.05.\n", "no unified diff found", answer=True),
        id="prose-answer-without-diff",
    ),
    pytest.param(rejected("this is not a diff at all\n", "no file changes"), id="prose-passed-as-diff"),
    pytest.param(
        rejected("@@ -1 +1 @@\n-import math\n+import cmath\n", "has no file header"), id="hunk-without-file-header"
    ),
    pytest.param(
        rejected("diff --git a/train.py b/train.py\nindex 1111111..2222222 100644\n", "changes nothing"),
        id="git-header-without-changes",
    ),
    pytest.param(rejected(NEW_FILE.format(path="train.py"), "'train.py' already exists"), id="add-existing-file"),
    pytest.param(
        rejected(
            "--- a/missing.py\n+++ b/missing.py\n@@ -1 +1 @@\n-a\n+b\n", "'missing.py' does not exist in the codebase"
        ),
        id="modify-missing-file",
    ),
    pytest.param(
        applied(
            LR_DIFF + "--- a/train.py\n+++ b/train.py\n"
            "@@ -3,3 +3,3 @@\n lr = 0.05\n-steps = 100\n+steps = 200\n batch = 32\n",
            {"train.py": LR_TRAIN.replace("steps = 100", "steps = 200")},
        ),
        id="duplicate-file-sections-in-sequence",
    ),
    pytest.param(
        rejected(
            LR_DIFF + "--- a/train.py\n+++ b/train.py\n@@ -3,2 +3,2 @@\n-lr = 0.1\n+lr = 0.2\n steps = 100\n",
            r"train\.py appears in more than one file section",
        ),
        id="duplicate-file-sections-conflicting",
    ),
    pytest.param(
        applied(
            '--- /dev/null\n+++ "b/donn\\303\\251es.py"\n@@ -0,0 +1 @@\n+x = "\xe9"\n',
            {"donn\xe9es.py": 'x = "\xe9"\n'},
        ),
        id="quoted-non-ascii-path",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_diff(case: Case, codebase: Path):
    tree = codebase.parent
    before = snapshot(tree)

    def run() -> list[str]:
        return apply_patch(extract_diff(case.diff) if case.answer else case.diff, codebase, POLICY)

    if case.reason is not None:
        with pytest.raises(PatchError, match=case.reason):
            run()
        assert snapshot(tree) == before
        return
    files = run()
    expected = dict(before)
    for rel, text in case.changes.items():
        if text is None:
            expected.pop(f"code/{rel}")
        else:
            expected[f"code/{rel}"] = text
    assert snapshot(tree) == expected
    assert sorted(files) == sorted(case.changes)
