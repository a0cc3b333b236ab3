"""`env init --llm SPEC`: a model drafts the locked evaluation and the data split from the
repository, starting from the templates; the user sees them as a diff, and they are kept
only once a baseline run with them produced the declared metric."""

from __future__ import annotations

import difflib
import re

from groundwork.llm.base import LLM, LLMRequest

FILE_BLOCK = re.compile(r"^=== FILE: (\S+) ===\n(.*?)^=== END ===", re.S | re.M)
SYSTEM = """You turn a third-party training repository into a Groundwork research environment.
Write the files asked for, complete and runnable, in Python, offline, on CPU.
The evaluation is locked: it reads the checkpoint the training script saved under GROUNDWORK_OUT_DIR
and the held-out data under GROUNDWORK_DATA_DIR, computes the metric, and writes a JSON object holding
it under the exact metric name to GROUNDWORK_RESULT_PATH. It exits non-zero on anything wrong.
Answer with one block per file and nothing else:
=== FILE: NAME ===
<the whole file>
=== END ==="""


def _context(repo_files: dict[str, str], facts: list[str], manifest: str) -> str:
    parts = ["What was inferred:\n" + "\n".join(f"- {f}" for f in facts), f"The manifest:\n{manifest}"]
    parts += [f"--- {name} ---\n{text}" for name, text in repo_files.items()]
    return "\n\n".join(parts)


def ask(llm: LLM, repo_files: dict[str, str], facts: list[str], manifest: str, drafts: dict[str, str],
        error: str = "") -> dict[str, str]:  # fmt: skip
    """The model's versions of `drafts` (the same names; others in its answer are ignored)."""
    request_text = "Rewrite these drafted files so that they work for this repository:\n\n" + "\n\n".join(
        f"=== FILE: {name} ===\n{text}=== END ===" for name, text in drafts.items()
    )
    if error:
        request_text += f"\n\nThe previous version failed when run:\n{error}\nFix it."
    response = llm.complete(
        LLMRequest(
            role="implementer",
            call_key=f"env-init:draft:{'retry' if error else 'first'}",
            system=SYSTEM,
            context=_context(repo_files, facts, manifest),
            messages=[{"role": "user", "content": request_text}],
            max_tokens=8000,
        )
    )
    answer = {name: text for name, text in FILE_BLOCK.findall(response.text) if name in drafts}
    if not answer:
        raise ValueError(
            f"the model's answer holds none of the files {', '.join(drafts)} as '=== FILE: NAME ===' blocks"
        )
    return {**drafts, **answer}


def diff(before: dict[str, str], after: dict[str, str]) -> str:
    """What the model changed, file by file, as a unified diff against the templates."""
    out = []
    for name in after:
        if before.get(name) != after[name]:
            out += difflib.unified_diff(
                before.get(name, "").splitlines(keepends=True),
                after[name].splitlines(keepends=True),
                f"a/{name} (template)",
                f"b/{name} (drafted)",
            )
    return "".join(out)
