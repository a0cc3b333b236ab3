"""A corpus of hostile, broken and awkward diffs, as models write them.

Each case is either applied exactly as written (the resulting files are asserted in full)
or rejected with its reason (a regex on the message), and then nothing on disk changed,
the symlink target outside the codebase included. Most cases run under a worker's policy
(only the locked file is known); those about the editable list run under an environment's
`[files]` rules. Generated hostile diffs then show that nothing but a PatchError escapes,
and a real run whose stored model answer is hostile ends that idea as `patch_failed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groundwork.config import RunConfig
from groundwork.environments import load_environment
from groundwork.implementation.llm_implementer import LLMImplementer
from groundwork.llm.base import LLMRequest, LLMResponse
from groundwork.loop import ResearchLoop
from groundwork.patch.diff_text import extract_diff
from groundwork.patch.patching import PatchError, PatchPolicy, apply_patch
from groundwork.prompting import PromptLibrary
from groundwork.records import FailureCategory, Idea, PromptKind
from groundwork.runs import create_run, run_config
from groundwork.store import RunStore
from groundwork.wiring import build_components

POLICY = PatchPolicy(protected=frozenset({"evaluate.py"}))
EDITABLE = frozenset({"train.py", "sub/util.py"})
STRICT = PatchPolicy(protected=frozenset({"evaluate.py"}), editable=EDITABLE)  # no new files, no deletions
LENIENT = PatchPolicy(
    protected=frozenset({"evaluate.py"}), editable=EDITABLE, allow_new=("*.py", "*.pth"), allow_delete=True
)

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
    policy: PatchPolicy = POLICY


def applied(diff: str, changes: dict[str, str | None], *, answer: bool = False, policy=POLICY) -> Case:
    return Case(diff, changes=changes, answer=answer, policy=policy)


def rejected(diff: str, reason: str, *, answer: bool = False, policy=POLICY) -> Case:
    return Case(diff, reason=reason, answer=answer, policy=policy)


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
    pytest.param(rejected("", "^no change: the diff is empty"), id="empty-diff-changes-nothing"),
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


MODE_ONLY = "diff --git a/{path} b/{path}\nold mode 100644\nnew mode 100755\n"
DELETE_TRAIN = (
    "diff --git a/train.py b/train.py\ndeleted file mode 100644\n--- a/train.py\n+++ /dev/null\n"
    f"@@ -1,{TRAIN.count(chr(10))} +0,0 @@\n" + "".join(f"-{line}\n" for line in TRAIN.splitlines())
)

CASES += [
    # paths through files: git fails, and putting the codebase back must not fail too
    pytest.param(
        rejected(NEW_FILE.format(path="train.py/helpers.py"), "goes through 'train.py', which is a file"),
        id="new-file-through-a-file",
    ),
    pytest.param(
        rejected(LR_DIFF.replace("train.py", "train.py/inner.py"), "goes through 'train.py', which is a file"),
        id="edit-through-a-file",
    ),
    pytest.param(
        rejected(RENAME.format(a="sub/util.py", b="sub/util.py/x.py"), "goes through 'sub/util.py', which is a file"),
        id="rename-into-a-file",
    ),
    # git writes a.py, then cannot write a.py/b.py: the written a.py is taken back
    pytest.param(
        rejected(NEW_FILE.format(path="a.py") + NEW_FILE.format(path="a.py/b.py"), "Not a directory"),
        id="new-file-through-a-file-the-diff-creates",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="sub") + NEW_FILE.format(path="sub/util.py/x.py"), "goes through"),
        id="new-file-onto-a-folder",
    ),
    pytest.param(rejected(NEW_FILE.format(path="outlink"), "goes through the symlink 'outlink'"), id="onto-a-symlink"),
    pytest.param(rejected(NEW_FILE.format(path="x" * 300 + ".py"), "cannot be used"), id="name-too-long"),
    pytest.param(
        rejected("diff --git a/train.py b/train.py\n" + NEW_FILE.format(path="tr\0ain.py"), "NUL byte"),
        id="nul-byte-in-path",
    ),
    pytest.param(
        rejected(
            "diff --git /etc/passwd /etc/passwd\n--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-root\n+r\n",
            "absolute",
        ),
        id="absolute-path-in-git-header",
    ),
    pytest.param(
        rejected("--- a/train.py\n+++ b/train.py\n@@ -1,999999999 +1,999999999 @@\n import math\n", "shorter"),
        id="huge-hunk-counts",
    ),
    pytest.param(
        rejected(RENAME.replace("rename", "copy").format(a="train.py", b="evaluate.py"), "'evaluate.py' is locked"),
        id="copy-onto-locked-file",
    ),
    pytest.param(
        rejected(RENAME.format(a="sub/util.py", b="Evaluate.py"), "'Evaluate.py' is locked"),
        id="rename-onto-locked-file-other-case",
    ),
    # changes that change nothing
    pytest.param(rejected(MODE_ONLY.format(path="train.py"), "^no change: "), id="mode-change-only"),
    pytest.param(
        rejected(LR_DIFF.replace("+lr = 0.05", "+lr = 0.1"), "^no change: .*content is as it was"),
        id="hunk-that-changes-nothing",
    ),
    pytest.param(
        rejected(
            DELETE_TRAIN
            + NEW_FILE.format(path="train.py")
            .replace("+x = 1\n", "")
            .replace("@@ -0,0 +1 @@", f"@@ -0,0 +1,{TRAIN.count(chr(10))} @@")
            + "".join(f"+{line}\n" for line in TRAIN.splitlines()),
            "^no change: ",
        ),
        id="delete-and-recreate-identically",
    ),
    pytest.param(
        applied(MODE_ONLY.format(path="train.py") + LR_DIFF, {"train.py": LR_TRAIN}), id="mode-change-with-an-edit"
    ),
    pytest.param(
        rejected(MODE_ONLY.format(path="notes.txt") + LR_DIFF, "names other files than its '--- a/train.py'"),
        id="git-header-naming-other-files-than-its-headers",
    ),
    # the editable list
    pytest.param(applied(LR_DIFF, {"train.py": LR_TRAIN}, policy=STRICT), id="strict-edit-editable-file"),
    pytest.param(
        rejected(
            "--- a/notes.txt\n+++ b/notes.txt\n@@ -1,2 +1,2 @@\n-old notes\n+new notes\n second line\n",
            r"'notes\.txt' is not editable: patches may change only sub/util\.py, train\.py",
            policy=STRICT,
        ),
        id="strict-edit-file-outside-editable",
    ),
    pytest.param(
        rejected(
            MODE_ONLY.format(path="notes.txt") + "diff --git a/train.py b/train.py\n" + LR_DIFF,
            "'notes.txt' is not editable",
            policy=STRICT,
        ),
        id="strict-mode-change-outside-editable",
    ),
    pytest.param(
        rejected(DELETE_TRAIN, r"'train\.py' would be deleted .*allow_delete = false", policy=STRICT),
        id="strict-delete-editable-file",
    ),
    pytest.param(applied(DELETE_TRAIN, {"train.py": None}, policy=LENIENT), id="lenient-delete-editable-file"),
    pytest.param(
        rejected(
            "diff --git a/notes.txt b/notes.txt\ndeleted file mode 100644\n--- a/notes.txt\n+++ /dev/null\n"
            "@@ -1,2 +0,0 @@\n-old notes\n-second line\n",
            "'notes.txt' is not editable",
            policy=LENIENT,
        ),
        id="lenient-delete-file-outside-editable",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="helpers.py"), "'helpers.py' is a new file.*allows no new files", policy=STRICT),
        id="strict-new-file",
    ),
    pytest.param(
        rejected(
            RENAME.format(a="sub/util.py", b="sub/helpers.py"),
            r"'sub/util\.py' would be deleted.*; 'sub/helpers\.py' is a new file",
            policy=STRICT,
        ),
        id="strict-rename-editable-file",
    ),
    pytest.param(
        applied(NEW_FILE.format(path="helpers.py"), {"helpers.py": "x = 1\n"}, policy=LENIENT),
        id="lenient-new-file",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="notes.md"), r"only new files matching \['\*\.py', '\*\.pth'\]", policy=LENIENT),
        id="lenient-new-file-not-matching",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="sitecustomize.py"), "sitecustomize module.*start-up", policy=LENIENT),
        id="new-sitecustomize",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="sub/usercustomize.py"), "usercustomize module", policy=LENIENT),
        id="new-usercustomize-in-a-folder",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="sitecustomize/__init__.py"), "sitecustomize module", policy=LENIENT),
        id="new-sitecustomize-package",
    ),
    # a worker's policy knows no editable list, but start-up hooks are never created
    pytest.param(rejected(NEW_FILE.format(path="sitecustomize.py"), "start-up"), id="worker-new-sitecustomize"),
    pytest.param(rejected(NEW_FILE.format(path="evil.pth"), r"\.pth file", policy=LENIENT), id="new-pth-file"),
    pytest.param(
        rejected(NEW_FILE.format(path="json.py"), "shadow the standard library's module 'json'", policy=LENIENT),
        id="new-file-shadowing-stdlib",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="JSON.py"), "module 'JSON'", policy=LENIENT),
        id="new-file-shadowing-stdlib-other-case",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="pydantic/__init__.py"), "installed module 'pydantic'", policy=LENIENT),
        id="new-package-shadowing-an-installed-one",
    ),
    pytest.param(
        rejected(NEW_FILE.format(path="sub/random.py"), r"shadow .* 'random': code run from sub/", policy=LENIENT),
        id="new-file-shadowing-beside-an-editable-script",
    ),
    pytest.param(
        applied(NEW_FILE.format(path="notes_pkg/json.py"), {"notes_pkg/json.py": "x = 1\n"}, policy=LENIENT),
        id="new-module-named-like-stdlib-inside-a-package",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_diff(case: Case, codebase: Path):
    tree = codebase.parent
    before = snapshot(tree)

    def run() -> list[str]:
        return apply_patch(extract_diff(case.diff) if case.answer else case.diff, codebase, case.policy)

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


# --- generated hostile diffs ----------------------------------------------------------------

PATHS = [
    "train.py",
    "sub/util.py",
    "notes.txt",
    "noeol.py",
    "new.py",
    "evaluate.py",
    "EVALUATE.py",
    "train.py/helpers.py",
    "sub/util.py/x.py",
    "a.py",
    "a.py/b.py",
    "sub",
    "outlink",
    "outlink/secret.py",
    "../evil.py",
    "sub/../../evil.py",
    "/tmp/evil.py",
    "~/evil.py",
    ".git/config",
    "sitecustomize.py",
    "json.py",
    "x.pth",
    "dir with space/f.py",
    "donn\xe9es.py",
    "tr\0ain.py",
    "x" * 300,
    "",
]
LINES = [*TRAIN.splitlines(), *UTIL.splitlines(), "old notes", "second line", "a = 1", "b = 2", "", "x = 1"]


def _hunks(draw, path: str) -> str:
    """One to three hunks: an exact edit of the file when it exists, or lines drawn from
    the codebase's; now and then with counts that lie, some wildly."""
    lines = FILES.get(path, "").splitlines()
    out = []
    for _ in range(draw(st.integers(1, 3))):
        if lines and draw(st.booleans()):
            k = draw(st.integers(0, len(lines) - 1))
            body = [f" {line}" for line in lines]
            body[k : k + 1] = [f"-{lines[k]}", f"+{draw(st.sampled_from(LINES) | st.text(max_size=8))}"]
            start = 1
        else:
            body = [
                draw(st.sampled_from(" -+")) + draw(st.sampled_from(LINES) | st.text(max_size=8))
                for _ in range(draw(st.integers(1, 6)))
            ]
            start = draw(st.integers(0, 20))
        olds = sum(1 for line in body if line[0] in " -")
        news = sum(1 for line in body if line[0] in " +")
        if draw(st.integers(0, 5)) == 0:
            olds, news = draw(st.integers(0, 10**9)), draw(st.integers(0, 12))
        out.append(f"@@ -{start},{olds} +{start},{news} @@\n" + "".join(line + "\n" for line in body))
    return "".join(out)


KINDS = ["edit"] * 4 + ["new"] * 3 + ["delete", "rename", "copy", "mode", "symlink", "binary"]


@st.composite
def hostile_diffs(draw) -> str:
    sections = []
    for _ in range(draw(st.integers(1, 3))):
        a, b = draw(st.sampled_from(PATHS)), draw(st.sampled_from(PATHS))
        kind = draw(st.sampled_from(KINDS))
        head = f"diff --git a/{a} b/{b if kind in ('rename', 'copy') else a}\n" if draw(st.booleans()) else ""
        if kind == "edit":
            sections.append(f"{head}--- a/{a}\n+++ b/{a}\n{_hunks(draw, a)}")
        elif kind == "new":
            sections.append(f"{head}new file mode 100644\n--- /dev/null\n+++ b/{a}\n{_hunks(draw, '')}")
        elif kind == "delete":
            sections.append(f"{head}deleted file mode 100644\n--- a/{a}\n+++ /dev/null\n{_hunks(draw, '')}")
        elif kind in ("rename", "copy"):
            sections.append(f"diff --git a/{a} b/{b}\nsimilarity index 100%\n{kind} from {a}\n{kind} to {b}\n")
        elif kind == "mode":
            mode = draw(st.sampled_from(["100755", "100644", "120000", "160000", "777"]))
            sections.append(f"diff --git a/{a} b/{a}\nold mode 100644\nnew mode {mode}\n")
        elif kind == "symlink":
            sections.append(f"{head}new file mode 120000\n--- /dev/null\n+++ b/{a}\n@@ -0,0 +1 @@\n+../outside\n")
        else:
            sections.append(f"diff --git a/{a} b/{a}\nGIT binary patch\nliteral 1\nIcmZo*00001\n\n")
    diff = "".join(sections)
    if draw(st.integers(0, 5)) == 0:  # damage: a cut, a stray line, CRLF, a NUL
        diff = diff[: draw(st.integers(0, len(diff)))] + draw(st.sampled_from(["", "\n", "garbage\n", "\r\n", "\0"]))
    return diff


def _tree(tmp: Path) -> Path:
    root = tmp / "code"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp / "outside").mkdir()
    (tmp / "outside" / "secret.py").write_text("SECRET = 1\n")
    os.symlink("../outside", root / "outlink")
    return root


FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None, print_blob=True)


@FUZZ
@given(diff=hostile_diffs(), policy=st.sampled_from([POLICY, STRICT, LENIENT]))
def test_generated_hostile_diffs_apply_or_raise_a_patch_error(diff: str, policy: PatchPolicy):
    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(Path(tmp))
        before = snapshot(Path(tmp))
        try:
            files = apply_patch(diff, root, policy)
        except PatchError as exc:
            assert str(exc) and not str(exc).startswith("the patch could not be applied")  # a reason, not a crash
            assert snapshot(Path(tmp)) == before  # a rejected patch changes nothing, outside included
            return
        after = snapshot(Path(tmp))
        assert files and {k for k in after if not k.startswith("code/")} == {
            k for k in before if not k.startswith("code/")
        }
        assert all(after[k] == before[k] for k in before if not k.startswith("code/"))
        assert not any(v.startswith("-> ") for k, v in after.items() if k != "code/outlink")  # no new symlinks


class Answers:
    """Test double of a model: gives the same answer to every call."""

    provider, model = "scripted", "scripted-model"

    def __init__(self, text: str):
        self.text = text

    def complete(self, request: LLMRequest) -> LLMResponse:
        return LLMResponse(text=self.text, model=self.model, provider=self.provider)


TOY = load_environment(Path(__file__).parent / "fixtures" / "toyenv")
IDEA = Idea(id="e1-01", epoch=1, index=1, title="t", text="t", prompt_kind=PromptKind.SIMPLE, origin="test")


@st.composite
def search_replace_answers(draw) -> str:
    blocks = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        search = "".join(line + "\n" for line in draw(st.lists(st.sampled_from(LINES), max_size=3)))
        replace = "".join(
            line + "\n" for line in draw(st.lists(st.sampled_from(LINES) | st.text(max_size=6), max_size=3))
        )
        blocks.append(f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n")
    return "".join(blocks)


@FUZZ
@given(
    answer=st.text(max_size=300) | hostile_diffs().map(lambda d: f"Here:\n```diff\n{d}```\n") | search_replace_answers()
)
def test_generated_answers_become_attempts_never_exceptions(answer: str):
    """The model implementer's whole path (extraction or SEARCH/REPLACE, then the trial)
    turns any answer into attempts: applied, or failed with a reason."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(Path(tmp))
        for edit_format in ("diff", "search_replace"):
            implementer = LLMImplementer(
                Answers(answer), TOY, PromptLibrary(), STRICT, 3.0, max_revisions=0, edit_format=edit_format
            )
            (attempt,) = implementer.implement(IDEA, root)
            assert attempt.applied or attempt.error
            assert "could not be read" not in attempt.error and "could not be checked" not in attempt.error


# --- a hostile answer in a real run, and on resume -----------------------------------------

THROUGH_A_FILE = "```diff\n--- /dev/null\n+++ b/train.py/helpers.py\n@@ -0,0 +1 @@\n+x = 1\n```\n"


def _recording(path: Path) -> Path:
    """A replay source: one idea, and one implementer answer whose diff goes through train.py."""
    idea = (
        "<idea>\n<title>Helpers</title>\n<category>other</category>\n"
        "<description>Move helpers into their own module.</description>\n<changes>train.py</changes>\n</idea>"
    )
    rows = [("ideator", "ideate:e1:simple", idea), ("implementer", "implement:e1-01:attempt-1", THROUGH_A_FILE)]
    path.write_text(
        "".join(
            json.dumps(
                {
                    "role": role,
                    "call_key": key,
                    "fingerprint": f"recorded-{role}",
                    "model": "handwritten",
                    "provider": "scripted",
                    "epoch": 1,
                    "text": text,
                    "thinking": "",
                    "usage": "{}",
                    "cost_usd": 0.0,
                }
            )
            + "\n"
            for role, key, text in rows
        )
    )
    return path


def test_a_stored_hostile_answer_ends_its_idea_patch_failed_on_resume(toy_env, tmp_path):
    """The controller stops after the model's answer is stored and before its attempt is:
    the resumed run replays the stored answer, and the idea ends `patch_failed` with the
    reason; the run finishes."""
    config = RunConfig(
        environment=str(toy_env),
        ideator_llm=f"replay:{_recording(tmp_path / 'answers.jsonl')}",
        search="best-of-n",
        epochs=1,
        ideas_per_epoch=1,
        max_revisions=0,
    )
    store = create_run(config, tmp_path / "runs", "r")
    env = load_environment(store.run_dir / "environment")
    parts = build_components(env, env.profile(), run_config(store), store.run_dir)

    class StopsOnceAnswered:  # test-only: the controller is killed right after the answer is stored
        label = parts.implementer.label

        def implement(self, idea, codebase):
            with contextlib.suppress(Exception):
                parts.implementer.implement(idea, codebase)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ResearchLoop(store, dataclasses.replace(parts, implementer=StopsOnceAnswered())).run()
    assert store.run_info().status == "interrupted"
    assert [c["text"] for c in store.llm_calls("implementer")] == [THROUGH_A_FILE]
    assert "e1-01" not in store.results()

    resumed = RunStore(store.run_dir)
    ResearchLoop(resumed).run()
    assert resumed.run_info().status == "finished"
    result = resumed.results()["e1-01"]
    assert result.failure == FailureCategory.PATCH_FAILED
    assert "goes through 'train.py', which is a file" in result.detail
    assert len(resumed.llm_calls("implementer")) == 1  # the stored answer was replayed, not asked again
    assert resumed.results()["baseline"].valid
