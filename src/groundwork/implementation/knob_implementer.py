"""Implementer for hyperparameter ideas, with no language model: an idea that sets knobs
(`lr=3e-3 warmup=50`, in any order, anywhere in its text) becomes edits of the matching
top-level `name = value` lines of the editable files, written as a unified diff that
takes the same checked path as any model-written one. An idea that names no knob, an
unknown knob, a knob the profile's scale preset sets again (the edit would change
nothing there), or a value that is not a Python number or literal fails to implement."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from groundwork.patch.edits import Edit, EditError, apply_edits
from groundwork.patch.patching import PatchPolicy, trial_apply, unified_diff
from groundwork.protocols import PatchAttempt
from groundwork.records import Idea

ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*[^=\n]", re.MULTILINE)
SETTING = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^\s,;]+)")


def knobs_of(codebase: Path, files: list[str]) -> dict[str, str]:
    """Knob name (lower case) -> the file that assigns it once at top level."""
    found: dict[str, list[str]] = {}
    for rel in files:
        path = codebase / rel
        if path.suffix == ".py" and path.is_file():
            for name in ASSIGNMENT.findall(path.read_text(encoding="utf-8")):
                found.setdefault(name, []).append(rel)
    return {name: rels[0] for name, rels in found.items() if len(rels) == 1}


def preset_knobs(source: str, scale: str | None) -> set[str]:
    """Names a training script assigns again in a module-level `if SCALE == "<scale>"`
    block (the built-in environments' per-scale presets, chosen by GROUNDWORK_SCALE): at
    that scale, an edit of the knob's own line changes nothing."""
    if not scale:
        return set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    branches = [node for node in tree.body if isinstance(node, ast.If)]
    while branches:
        branch = branches.pop()
        if f"SCALE == {scale!r}" in ast.unparse(branch.test).replace('"', "'"):
            for node in ast.walk(ast.Module(body=branch.body, type_ignores=[])):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        branches += [node for node in branch.orelse if isinstance(node, ast.If)]
    return names


class KnobImplementer:
    label = "knob edits (no LLM)"

    def __init__(self, policy: PatchPolicy, editable: list[str], scale: str | None = None):
        self.policy = policy
        self.editable = editable
        self.scale = scale  # the profile's GROUNDWORK_SCALE: knobs its preset sets are refused

    def implement(self, idea: Idea, codebase: Path) -> list[PatchAttempt]:
        knobs = knobs_of(codebase, self.editable)
        by_lower = {name.lower(): name for name in knobs}
        settings = SETTING.findall(f"{idea.title}\n{idea.text}")
        if not settings:
            return [self._fail(f"the idea sets no knob (write name=value, e.g. {self._example(knobs)})")]
        edits: dict[str, Edit] = {}  # a knob set twice: the last setting wins, as in a config override
        for name, value in settings:
            knob = by_lower.get(name.lower())
            if knob is None:
                return [self._fail(f"unknown knob {name!r}; the editable files set: {', '.join(sorted(knobs))}")]
            try:
                ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return [self._fail(f"{name}={value}: the value is not a Python literal (e.g. 3e-3, 50, True)")]
            edits[knob] = Edit(file=knobs[knob], knob=knob, value=value)
        names = sorted({e.file for e in edits.values()})
        before = {n: (codebase / n).read_text(encoding="utf-8") for n in names}
        presets = {name: preset_knobs(text, self.scale) for name, text in before.items()}
        for edit in edits.values():
            if edit.knob in presets[edit.file]:
                return [
                    self._fail(
                        f"{edit.knob} is set again by the {self.scale!r} preset in {edit.file}: at this profile "
                        "the edit would change nothing; choose another knob"
                    )
                ]
        try:
            after = apply_edits(before, list(edits.values()))
        except EditError as exc:
            return [self._fail(str(exc))]
        if after == before:
            return [self._fail("the knobs already have these values: the idea changes nothing")]
        return [trial_apply(unified_diff(before, after), codebase, self.policy)]

    @staticmethod
    def _fail(error: str) -> PatchAttempt:
        return PatchAttempt(diff="", applied=False, error=error)

    @staticmethod
    def _example(knobs: dict[str, str]) -> str:
        return " ".join(f"{name}=..." for name in sorted(knobs)[:2]) or "lr=3e-3"
