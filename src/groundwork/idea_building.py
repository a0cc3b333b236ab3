"""Every Idea a run stores is built here: the baseline's seeds, ideas from an ideator's
drafts, and the confirmation re-runs of a top idea."""

from __future__ import annotations

from groundwork.protocols import IdeaDraft, Scored
from groundwork.records import Idea, PromptKind

BASELINE_ID = "baseline"
NOT_SEARCHED = (PromptKind.BASELINE, PromptKind.CONFIRM)  # runs that are not ideas of the search


def baseline_ideas(seeds: list[int]) -> list[Idea]:
    """Epoch 0: the unmodified codebase, once per seed (several seeds measure the noise floor)."""
    return [
        Idea(
            id=BASELINE_ID if k == 0 else f"{BASELINE_ID}-seed{seed}",
            epoch=0,
            index=k,
            title="Baseline (unmodified codebase)" + (f", seed {seed}" if k else ""),
            text="The environment's baseline, run as it is: the reference every idea is measured against.",
            category="baseline",
            prompt_kind=PromptKind.BASELINE,
            origin="environment",
            payload={"seed": seed},
        )
        for k, seed in enumerate(seeds)
    ]


def idea_from_draft(
    d: IdeaDraft, kind: PromptKind, epoch: int, index: int, idea_id: str, origin: str, thinking: bool = True
) -> Idea:
    """An ideator's draft as an idea; `origin` names the ideator unless the draft names its model."""
    return Idea(
        id=idea_id,
        epoch=epoch,
        index=index,
        title=d.title,
        text=d.text,
        category=d.category,
        prompt_kind=kind,
        origin=d.payload.get("origin", origin),  # a portfolio names the model
        parents=d.parents,
        thinking=d.thinking if thinking else "",
        payload=d.payload,
    )


def epoch_ideas(epoch: int, drafts: list[tuple[PromptKind, IdeaDraft]], origin: str) -> list[Idea]:
    """One proposal's drafts as the epoch's ideas, numbered e<epoch>-<NN>."""
    return [
        idea_from_draft(d, kind, epoch, index, f"e{epoch}-{index:02d}", origin)
        for index, (kind, d) in enumerate(drafts, start=1)
    ]


def drafted_ideas(epoch: int, start: int, kind: PromptKind, drafts: list[IdeaDraft], origin: str) -> list[Idea]:
    """Drafts of a proposal still being made, as provisional ideas (never stored under these ids)."""
    return [
        idea_from_draft(d, kind, epoch, start + k, f"draft-e{epoch}-{start + k}", origin, thinking=False)
        for k, d in enumerate(drafts, start=1)
    ]


def confirmation_idea(scored: Scored, seed: int, k: int) -> Idea:
    """The k-th re-run of a scored idea's patch, with its own seed."""
    idea = scored.idea
    return Idea(
        id=f"{idea.id}-seed{seed}",
        epoch=idea.epoch,
        index=1000 + 100 * idea.index + k,
        title=f"{idea.title} (seed {seed})",
        text=f"A re-run of {idea.id} with seed {seed}, to tell its gain from noise.",
        category=idea.category,
        prompt_kind=PromptKind.CONFIRM,
        origin="confirmation",
        parents=[idea.id],
        payload={"seed": seed},
    )
