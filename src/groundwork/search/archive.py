"""A MAP-Elites archive of ideas: each idea falls into one cell, keyed by descriptors of
what it changes (its category, the size of its diff, the prompt that made it); each cell
keeps its best confirmed idea (its elite). Exploit parents are drawn from the elites, one
per cell, so no single kind of idea takes every parent slot.

Parent rule: among the cells whose elite beats the baseline by more than the noise (the
exploit pool's rule), `k` cells are drawn uniformly without replacement, seeded by the run
seed and the epoch; each gives its elite, and the parents are ordered best first."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from groundwork.analysis.categories import CATEGORIES, fold, keyword_category
from groundwork.protocols import Scored, SearchHistory
from groundwork.records import Idea

DIFF_BINS = (4, 16, 64)  # upper edges (lines added + removed) of the diff-size bins; the last is open
DIFF_LABELS = ("<=4", "5-16", "17-64", ">64")
KIND_LABELS = ("simple", "explore", "exploit")


def idea_category(idea: Idea) -> str:
    """The idea's own label folded into the report's six, else by keywords (no model call:
    the cell of an idea must not change between runs)."""
    label = fold(idea.category)
    if label == "other" and idea.category.strip().lower() != "other":  # a label of none of the six
        return keyword_category(idea.title, idea.text)
    return label


def changed_lines(diff: str) -> int:
    return sum(1 for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))


def diff_bin(lines: int) -> str:
    for edge, label in zip(DIFF_BINS, DIFF_LABELS, strict=False):
        if lines <= edge:
            return label
    return DIFF_LABELS[-1]


# name -> (the descriptor of an idea given its diff's changed lines, the descriptor's values in order)
DESCRIPTORS: dict[str, tuple[Callable[[Idea, int], str], tuple[str, ...]]] = {
    "category": (lambda idea, lines: idea_category(idea), CATEGORIES),
    "diff_size": (lambda idea, lines: diff_bin(lines), DIFF_LABELS),
    "kind": (
        lambda idea, lines: str(idea.prompt_kind) if str(idea.prompt_kind) in KIND_LABELS else "simple",
        KIND_LABELS,
    ),
}


def check_descriptors(names: Sequence[str]) -> list[str]:
    names = [n.strip() for n in names if n.strip()]
    bad = [n for n in names if n not in DESCRIPTORS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(
            f"archive descriptors must be one or more distinct names of {', '.join(DESCRIPTORS)}; got "
            f"{','.join(names) or 'none'} (e.g. --descriptors category,diff_size)"
        )
    return names


def cell_of(idea: Idea, lines: int, descriptors: Sequence[str]) -> tuple[str, ...]:
    """The idea's cell: one value per descriptor, a pure function of the idea and its diff."""
    return tuple(DESCRIPTORS[name][0](idea, lines) for name in descriptors)


@dataclass(frozen=True)
class Elite:
    cell: tuple[str, ...]
    scored: Scored
    mean: float  # the metric's mean over the idea's runs
    improving: bool  # beats the baseline by more than the noise (an exploit parent)


class MapElitesArchive:
    """Parent selection from a MAP-Elites archive (see the module's rule)."""

    def __init__(self, descriptors: Sequence[str] = ("category", "diff_size"), seed: int = 0):
        self.descriptors = check_descriptors(descriptors)
        self.seed = seed

    def elites(self, history: SearchHistory) -> dict[tuple[str, ...], Elite]:
        """Each filled cell's best confirmed valid idea, by the mean over its runs."""
        pool = {s.idea.id for s in history.beating_baseline()}
        best: dict[tuple[str, ...], Elite] = {}
        for s in history.ranked():  # best first: a cell's first idea is its elite
            if not history.confirmed(s):
                continue
            cell = cell_of(s.idea, history.diff_lines.get(s.idea.id, 0), self.descriptors)
            if cell not in best:
                best[cell] = Elite(cell, s, history.estimate(s).mean, s.idea.id in pool)
        return dict(sorted(best.items(), key=lambda kv: history.metric.rank_key(kv[1].mean)))

    def select(self, history: SearchHistory, epoch: int, k: int) -> list[Scored]:
        improving = [e for e in self.elites(history).values() if e.improving]
        cells = sorted(e.cell for e in improving)  # a fixed order before the seeded draw
        drawn = set(random.Random(f"map-elites:{self.seed}:{epoch}").sample(cells, min(k, len(cells))))
        return [e.scored for e in improving if e.cell in drawn]  # elites() is best first
