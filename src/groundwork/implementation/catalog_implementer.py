"""Implementer for catalog ideas: makes the idea's deterministic edits and writes them
as a unified diff, which then takes the same checked path as any model-written diff."""

from __future__ import annotations

from pathlib import Path

from groundwork.patch.edits import Edit, EditError, apply_edits
from groundwork.patch.patching import PatchPolicy, trial_apply, unified_diff
from groundwork.protocols import PatchAttempt
from groundwork.records import Idea


class CatalogImplementer:
    label = "catalog edits (no LLM)"

    def __init__(self, policy: PatchPolicy):
        self.policy = policy

    def implement(self, idea: Idea, codebase: Path) -> list[PatchAttempt]:
        edits = [Edit.model_validate(e) for e in idea.payload.get("edits", [])]
        if not edits:
            return [PatchAttempt(diff="", applied=False, error="the idea carries no catalog edits")]
        names = sorted({e.file for e in edits})
        before = {n: (codebase / n).read_text(encoding="utf-8") for n in names if (codebase / n).is_file()}
        try:
            after = apply_edits(before, edits)
        except EditError as exc:
            return [PatchAttempt(diff="", applied=False, error=str(exc))]
        return [trial_apply(unified_diff(before, after), codebase, self.policy)]
