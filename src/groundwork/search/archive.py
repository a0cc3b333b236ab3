"""A MAP-Elites archive of ideas: each idea falls into one cell, keyed by descriptors of
what it changes (descriptors.py: its category, the size of its diff, the prompt that made
it); each cell keeps its best confirmed idea (its elite). Exploit parents are drawn from
the elites, one per cell, so no single kind of idea takes every parent slot.

Parent rule: among the cells whose elite beats the baseline by more than the noise (the
exploit pool's rule), `k` cells are drawn uniformly without replacement, seeded by the run
seed and the epoch; each gives its elite, and the parents are ordered best first."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from groundwork.descriptors import cell_of, check_descriptors
from groundwork.protocols import Scored, SearchHistory


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
