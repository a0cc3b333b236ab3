"""Noise-aware selection: which ideas are re-run with fresh seeds before they may be exploited."""

from __future__ import annotations

from groundwork.idea_building import confirmation_idea
from groundwork.protocols import SearchHistory
from groundwork.records import Idea


def confirmations_due(history: SearchHistory, started: set[str], top: int, seeds: int, seed: int) -> list[Idea]:
    """Re-runs for the `top` best ideas that beat the baseline and have none yet (`started`
    names the ideas already re-run): `seeds` of them, with seeds seed+1.. (the baseline's
    seeds, for a paired comparison). Empty without re-runs asked for or a baseline."""
    if seeds == 0 or history.baseline_mean is None:
        return []
    best = [s for s in history.ranked() if history.gain(s) > 0][:top]
    return [
        confirmation_idea(s, fresh, k)
        for s in best
        if s.idea.id not in started
        for k, fresh in enumerate(range(seed + 1, seed + 1 + seeds))
    ]
