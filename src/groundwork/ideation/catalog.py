"""The offline catalog ideator: concrete ideas written down in the environment's
`catalog.toml`, each a plain-language description plus a deterministic code edit.

It needs no language model, so the whole pipeline (diff, apply, run, evaluate, search)
runs anywhere, and it is the control baseline for model-written ideas. Exploit requests
mutate a numeric knob of a winning idea or combine two winners; explore requests pick
catalog entries not tried yet. Everything it writes is labelled "catalog (no LLM)".
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from groundwork.environments.manifest import ManifestError
from groundwork.patch.edits import Edit, EditError, apply_edits
from groundwork.protocols import IdeaDraft, IdeationRequest, Scored, SearchHistory
from groundwork.records import PromptKind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LABEL = "catalog (no LLM)"
MUTATION_FACTORS = (0.5, 0.7, 1.4, 2.0)


class CatalogIdea(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    title: str
    category: str = "other"
    description: str
    edit: list[Edit] = Field(min_length=1)
    # The profiles the idea fits (None: all). A scale preset that sets a knob for the GPU
    # profiles makes an edit of that knob a no-op there.
    profiles: list[str] | None = None


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idea: list[CatalogIdea] = Field(min_length=1)


def load_catalog(path: Path, profile: str | None = None) -> list[CatalogIdea]:
    """The catalog's ideas; with `profile`, only those that fit it."""
    return [idea for idea in _load_all(path) if profile is None or idea.profiles is None or profile in idea.profiles]


def _load_all(path: Path) -> list[CatalogIdea]:
    try:
        catalog = Catalog.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ManifestError(path, [f"this environment has no {path.name}, so the catalog ideator cannot run"]) from None
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ManifestError(path, [str(exc)]) from None
    ids = [i.id for i in catalog.idea]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ManifestError(path, [f"duplicate idea ids: {duplicates}"])
    return catalog.idea


def _number(value: str) -> float | int | None:
    try:
        return int(value) if re.fullmatch(r"-?\d+", value.strip()) else float(value)
    except ValueError:
        return None


def _format(old: float | int, new: float) -> str:
    if isinstance(old, int):
        return str(max(1, round(new)))
    return f"{new:.3g}"


def _edits_of(scored: Scored) -> list[Edit]:
    return [Edit.model_validate(e) for e in scored.idea.payload.get("edits", [])]


def _key(edits: list[Edit]) -> tuple:
    return tuple(sorted((e.target, e.value or e.replace or "") for e in edits))


def _metric(scored: Scored) -> str:
    return f"{scored.result.metric:.4g}" if scored.result.metric is not None else "n/a"


class CatalogIdeator:
    label = LABEL

    def __init__(self, catalog: list[CatalogIdea], seed: int = 0, baseline_files: dict[str, str] | None = None):
        self.catalog = catalog
        self.seed = seed
        # The editable files as the baseline has them: a mutation or combination that would
        # leave them unchanged (a knob scaled back to its baseline value) is not proposed.
        self.baseline_files = baseline_files

    @classmethod
    def from_file(
        cls, path: Path, seed: int = 0, baseline_files: dict[str, str] | None = None, profile: str | None = None
    ) -> CatalogIdeator:
        return cls(load_catalog(path, profile), seed, baseline_files)

    def _baseline_value(self, edit: Edit) -> str | None:
        """The value a knob has in the baseline (None: unknown), the diff's starting point."""
        text = (self.baseline_files or {}).get(edit.file, "")
        found = re.search(rf"^{re.escape(edit.knob or '')}\s*=\s*([^\s#]+)", text, flags=re.MULTILINE)
        return found.group(1) if edit.knob and found else None

    def _changes_nothing(self, edits: list[Edit]) -> bool:
        if self.baseline_files is None:
            return False
        try:
            return apply_edits(self.baseline_files, edits) == self.baseline_files
        except EditError:
            return False  # the implementer reports an edit that does not fit

    def propose(self, request: IdeationRequest, history: SearchHistory) -> list[IdeaDraft]:
        rng = random.Random(f"{self.seed}:{request.epoch}:{request.kind}:{request.seed}")
        seen = {_key([Edit.model_validate(e) for e in i.payload.get("edits", [])]) for i in history.proposed}
        tried_ids = {cid for i in history.proposed for cid in i.payload.get("catalog_ids", [])}
        if request.kind == PromptKind.EXPLOIT and request.parents:
            drafts = self._exploit(request, history, rng, seen)
        else:
            drafts = []
        # Explore (and any exploit shortfall): catalog entries not tried yet.
        fresh = [c for c in self.catalog if c.id not in tried_ids]
        rng.shuffle(fresh)
        for entry in fresh:
            if len(drafts) >= request.count:
                break
            if _key(entry.edit) in seen:
                continue
            seen.add(_key(entry.edit))
            drafts.append(
                IdeaDraft(
                    title=entry.title,
                    text=entry.description.strip(),
                    category=entry.category,
                    payload={"catalog_ids": [entry.id], "edits": [e.model_dump(exclude_none=True) for e in entry.edit]},
                )
            )
        return drafts

    def _exploit(
        self, request: IdeationRequest, history: SearchHistory, rng: random.Random, seen: set
    ) -> list[IdeaDraft]:
        drafts: list[IdeaDraft] = []
        parents = list(request.parents)
        base = f"{history.baseline.metric:.4g}" if history.baseline and history.baseline.metric is not None else "n/a"
        for attempt in range(request.count * 6):
            if len(drafts) >= request.count:
                break
            parent = parents[attempt % len(parents)]
            combine = len(parents) > 1 and rng.random() < 0.5
            draft = (
                self._combine(parent, rng.choice([p for p in parents if p is not parent]), base) if combine else None
            )
            draft = draft or self._mutate(parent, rng, base)
            if draft is None:
                continue
            edits = [Edit.model_validate(e) for e in draft.payload["edits"]]
            key = _key(edits)
            if key not in seen and not self._changes_nothing(edits):
                seen.add(key)
                drafts.append(draft)
        return drafts

    def _mutate(self, parent: Scored, rng: random.Random, base: str) -> IdeaDraft | None:
        edits = _edits_of(parent)
        numeric = [
            (i, e, _number(e.value)) for i, e in enumerate(edits) if e.knob and _number(e.value or "") is not None
        ]
        if not numeric:
            return None
        index, edit, old = rng.choice(numeric)
        new_value = _format(old, old * rng.choice(MUTATION_FACTORS))
        if new_value == edit.value:
            return None
        changed = [e if i != index else e.model_copy(update={"value": new_value}) for i, e in enumerate(edits)]
        idea = parent.idea
        # The title states what the diff does (against the baseline, as every patch is): the
        # value it sets. "parent's value -> new" read as the diff's own change, which it is not.
        root = idea.payload.get("title_root") or idea.title
        was = self._baseline_value(edit)
        return IdeaDraft(
            title=f"{root}: {edit.knob} {was} -> {new_value}" if was else f"{root}: {edit.knob} = {new_value}",
            text=(
                f'Refine "{idea.title}", which reached {_metric(parent)} against the baseline\'s {base}: '
                f"keep its change but set {edit.knob} = {new_value} (it set {edit.value}). "
                f"Original idea: {idea.text}"
            ),
            category=idea.category,
            parents=[idea.id],
            payload={
                "catalog_ids": idea.payload.get("catalog_ids", []),
                "edits": _dump(changed),
                "mutation": edit.knob,
                "title_root": root,
            },
        )

    def _combine(self, a: Scored, b: Scored, base: str) -> IdeaDraft | None:
        edits_a, edits_b = _edits_of(a), _edits_of(b)
        if {e.target for e in edits_a} & {e.target for e in edits_b}:
            return None
        ia, ib = a.idea, b.idea
        return IdeaDraft(
            title=f"{ia.title} + {ib.title}",
            text=(
                f'Combine two changes that each beat the baseline ({base}): "{ia.title}" ({_metric(a)}) and '
                f'"{ib.title}" ({_metric(b)}). They touch different parts of the training script, so their '
                f"gains may add up. First: {ia.text} Second: {ib.text}"
            ),
            category=ia.category if ia.category == ib.category else "other",
            parents=[ia.id, ib.id],
            payload={
                "catalog_ids": [*ia.payload.get("catalog_ids", []), *ib.payload.get("catalog_ids", [])],
                "edits": _dump(edits_a + edits_b),
            },
        )


def _dump(edits: list[Edit]) -> list[dict[str, Any]]:
    return [e.model_dump(exclude_none=True) for e in edits]
