#!/usr/bin/env python3
"""Regenerate the shipped replay recording `src/groundwork/llm/recordings/nanogpt-tiny.jsonl`.

The answers are hand-written in the style a frontier model writes them (ideas in tagged
blocks; diffs in fenced blocks with prose around them; two first attempts whose diffs do
not apply and are revised; one idea with a bug that crashes at run time). They are labelled
model "handwritten-fixture", provider "scripted": no real model produced them. They go
through the real pipeline (prompts, parsing, patch checks, training, evaluation) on the
nanogpt tiny profile, and every call is exported as the recording.

Run after changing the nanogpt baseline or the prompt templates:
    .venv/bin/python scripts/record_nanogpt_fixture.py
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from groundwork.config import RunConfig
from groundwork.environments import load_environment
from groundwork.llm.base import LLMRequest, LLMResponse, Usage
from groundwork.llm.recording import RECORDINGS_DIR, export_recording
from groundwork.loop import ResearchLoop
from groundwork.patch.patching import unified_diff
from groundwork.runs import create_run, run_config, run_environment
from groundwork.wiring import build_components

TRAIN = (load_environment("nanogpt").codebase_dir / "train.py").read_text()

IDEAS = {
    "ideate:e1:simple": [
        (
            "Shorter context for more optimizer steps",
            "hyperparameter",
            "Halve block_size from 128 to 64 bytes. Attention cost per token drops and, with the batch size kept at 16 "
            "sequences, each step processes half the tokens, so the fixed token budget buys twice as many optimizer "
            "steps. At ~100 steps the model is badly under-trained, and most of the predictable structure in Python "
            "source (indentation, keywords, identifiers) is local, so the extra steps should matter more than the "
            "lost long-range context.",
            "train.py: block_size = 64.",
        ),
        (
            "Less momentum in AdamW",
            "optimizer",
            "Lower beta1 from 0.9 to 0.8. With only about a hundred steps, a first-moment average over ~10 steps lags "
            "the rapidly changing early gradients; a shorter memory lets the optimizer follow the loss landscape more "
            "closely in this short-horizon regime.",
            "train.py: beta1 = 0.8.",
        ),
        (
            "SwiGLU feed-forward at equal parameter count",
            "architecture",
            "Replace the GELU MLP with a SwiGLU gated unit (SiLU(xW1) * xW3, then W2), with the hidden size reduced "
            "from 4*n_embd to 8/3*n_embd (rounded) so the parameter count stays the same. Gated units consistently "
            "train faster per step in small language models.",
            "train.py: MLP gets a gate projection; hidden size int(8 * n_embd / 3); forward uses F.silu(gate) * up.",
        ),
        (
            "ReLU-squared activation",
            "architecture",
            "Swap GELU for ReLU squared in the MLP. It is cheaper than GELU on CPU and was found to speed up small "
            "transformer pre-training (Primer; modded-nanoGPT speedruns).",
            "train.py: x = F.relu(x).square().",
        ),
    ],
    "ideate:e2:exploit": [
        (
            "Short context combined with lower beta1",
            "hyperparameter",
            "Combine the two winning changes: block_size = 64 for twice the optimizer steps, and beta1 = 0.8 for a "
            "more responsive first moment. They act on different things (step count versus optimizer memory), so the "
            "gains may add up.",
            "train.py: block_size = 64; beta1 = 0.8.",
        ),
        (
            "Shorter warmup for the short-context model",
            "schedule",
            "Keep block_size = 64 and cut warmup from 10 to 4 steps: with twice as many steps and smaller batches of "
            "tokens, a long warmup spends a larger share of a short run at a low learning rate.",
            "train.py: block_size = 64; warmup_steps = 4.",
        ),
    ],
    "ideate:e2:explore": [
        (
            "Decay the learning rate to zero",
            "schedule",
            "Set min_lr_ratio from 0.1 to 0.0 so the cosine schedule anneals fully by the end of the budget. Short "
            "runs benefit most from a full anneal, which lowers the final loss at a fixed budget.",
            "train.py: min_lr_ratio = 0.0.",
        ),
        (
            "Multi-query attention",
            "architecture",
            "Share a single key and value head across all query heads. It cuts the attention projection cost, which "
            "can buy extra steps within the budget.",
            "train.py: c_attn projects to n_embd + 2 * head_dim; keys and values are broadcast across heads.",
        ),
    ],
}


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new, 1)


def _knobs(**values: str) -> str:
    text = TRAIN
    for knob, value in values.items():
        text, n = re.subn(rf"^({knob} = )[^#\n]*?(\s*#)", rf"\g<1>{value}\2", text, count=1, flags=re.MULTILINE)
        assert n == 1, knob
    return text


SWIGLU = _edit(
    _edit(
        _edit(
            TRAIN,
            "        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)\n",
            "        hidden = int(8 * n_embd / 3)  # SwiGLU: 3 matrices at the parameter count of 2\n"
            "        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)\n"
            "        self.c_gate = nn.Linear(n_embd, hidden, bias=bias)\n",
        ),
        "        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)\n",
        "        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)\n",
    ),
    "        x = self.c_fc(x)\n        x = F.gelu(x)\n",
    "        x = F.silu(self.c_gate(x)) * self.c_fc(x)\n",
)

# A bug a model might write: keys and values sized for one head but reshaped for all.
MQA = _edit(
    _edit(
        TRAIN,
        "        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # q, k, v in one matmul\n",
        "        self.c_attn = nn.Linear(n_embd, n_embd + 2 * (n_embd // n_head), bias=bias)  # q, shared k, v\n",
    ),
    "        q, k, v = self.c_attn(x).split(C, dim=2)\n",
    "        q, k, v = self.c_attn(x).split([C, C // self.n_head, C // self.n_head], dim=2)\n",
)

PATCHED = {
    "Shorter context for more optimizer steps": _knobs(block_size="64"),
    "Less momentum in AdamW": _knobs(beta1="0.8"),
    "SwiGLU feed-forward at equal parameter count": SWIGLU,
    "ReLU-squared activation": _edit(TRAIN, "        x = F.gelu(x)\n", "        x = F.relu(x).square()\n"),
    "Short context combined with lower beta1": _knobs(block_size="64", beta1="0.8"),
    "Shorter warmup for the short-context model": _knobs(block_size="64", warmup_steps="4"),
    "Decay the learning rate to zero": _knobs(min_lr_ratio="0.0"),
    "Multi-query attention": MQA,
}


def _ideas_answer(key: str) -> str:
    blocks = [
        f"<idea>\n<title>{t}</title>\n<category>{c}</category>\n<description>{d}</description>\n"
        f"<changes>{ch}</changes>\n</idea>"
        for t, c, d, ch in IDEAS[key]
    ]
    intro = (
        "Looking at train.py, the run is short (about a hundred optimizer steps on 0.45M parameters), so "
        "ideas that buy more useful steps or make each step count should help most.\n\n"
    )
    return intro + "\n\n".join(blocks) + "\n"


def _diff_answer(title: str, revision: bool) -> str:
    diff = unified_diff({"train.py": TRAIN}, {"train.py": PATCHED[title]})
    if not revision and title == "SwiGLU feed-forward at equal parameter count":
        diff = diff.replace(" class MLP(nn.Module):", " class FeedForward(nn.Module):")  # misremembered context
    if not revision and title == "ReLU-squared activation":
        diff = re.sub(r"@@ -(\d+),7 \+(\d+),7 @@", r"@@ -\1,9 +\2,9 @@", diff, count=1)  # wrong hunk line counts
    note = "Here is the corrected patch against the original file." if revision else "Here is the change."
    return f"{note}\n\n```diff\n{diff}```\n\nThe rest of the training script is unchanged.\n"


class ScriptedLLM:
    provider = "scripted"
    model = "handwritten-fixture"

    def complete(self, request: LLMRequest) -> LLMResponse:
        if request.role == "ideator":
            text = _ideas_answer(request.call_key)
        else:
            task = request.messages[0]["content"]
            title = re.search(r"Title: (.*)", task).group(1).strip()
            text = _diff_answer(title, revision=len(request.messages) > 1)
        chars_in = len(request.system) + len(request.context) + sum(len(m["content"]) for m in request.messages)
        usage = Usage(input_tokens=chars_in // 4, output_tokens=len(text) // 4)
        return LLMResponse(text=text, model=self.model, provider=self.provider, usage=usage)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        # A generous budget, so that the tiny profile's token cap ends every training run rather
        # than a busy machine's speed: the recorded outcomes are then the same on any machine.
        config = RunConfig(
            environment="nanogpt",
            profile="tiny",
            epochs=2,
            ideas_per_epoch=4,
            slots=2,
            ideator_llm="catalog",
            time_budget_s=600,
        )
        store = create_run(config, Path(tmp), name="fixture")
        env = run_environment(store)
        parts = build_components(env, env.profile("tiny"), run_config(store), store.run_dir)
        from groundwork.ideation.llm_ideator import LLMIdeator
        from groundwork.implementation.llm_implementer import LLMImplementer
        from groundwork.llm.pricing import PriceTable
        from groundwork.llm.recording import RecordingLLM
        from groundwork.patch.patching import PatchPolicy
        from groundwork.prompting import PromptLibrary

        llm = RecordingLLM(ScriptedLLM(), store.run_dir, PriceTable.load())
        prompts = PromptLibrary()
        policy = PatchPolicy(protected=frozenset(env.manifest.files.locked) | frozenset(env.manifest.files.hidden))
        shown_budget_s = env.profile("tiny").time_budget_s  # what a replaying user's profile runs under
        parts.ideator = LLMIdeator(llm, env, prompts, shown_budget_s)
        parts.implementer = LLMImplementer(llm, env, prompts, policy, shown_budget_s)
        parts.implementation_workers = 4
        ResearchLoop(store, parts).run()
        out = RECORDINGS_DIR / "nanogpt-tiny.jsonl"
        count = export_recording(store.run_dir, out)
        results = store.results()
        for idea in store.ideas():
            r = results[idea.id]
            print(f"{idea.id:10} {idea.title[:50]:50} {r.metric if r.valid else r.failure}")
        print(f"wrote {count} calls to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
