"""Evolutionary search over ideas, as in the paper: each epoch mixes exploit requests
(refine or combine ideas that beat the baseline) and explore requests (new directions),
with the exploit share rising with the epoch."""

from __future__ import annotations

import math

from groundwork.protocols import IdeationRequest, SearchHistory
from groundwork.records import PromptKind


def exploit_share(epoch: int) -> float:
    return min(0.5 + 0.1 * math.floor(epoch / 2), 0.8)


class EvolutionStrategy:
    name = "evolution"

    def __init__(self, epochs: int, ideas_per_epoch: int, top_k: int = 4, seed: int = 0):
        if epochs < 0 or ideas_per_epoch < 1:
            raise ValueError(f"epochs must be >= 0 and ideas_per_epoch >= 1, got {epochs} and {ideas_per_epoch}")
        self.epochs = epochs
        self.ideas_per_epoch = ideas_per_epoch
        self.top_k = top_k
        self.seed = seed

    def plan_epoch(self, epoch: int, history: SearchHistory) -> list[IdeationRequest]:
        winners = history.beating_baseline()[: self.top_k]
        n_exploit = round(self.ideas_per_epoch * exploit_share(epoch)) if winners else 0
        n_explore = self.ideas_per_epoch - n_exploit
        requests = []
        if n_exploit:
            requests.append(IdeationRequest(PromptKind.EXPLOIT, n_exploit, epoch, parents=winners, seed=self.seed))
        if n_explore:
            kind = PromptKind.EXPLORE if history.scored else PromptKind.SIMPLE
            requests.append(IdeationRequest(kind, n_explore, epoch, tried=list(history.scored), seed=self.seed))
        return requests


class BestOfNStrategy:
    """The control the paper compares evolution against: every epoch asks for fresh ideas
    from the codebase and goal alone, never shown results, at the same number of ideas."""

    name = "best-of-n"

    def __init__(self, epochs: int, ideas_per_epoch: int, seed: int = 0):
        if epochs < 0 or ideas_per_epoch < 1:
            raise ValueError(f"epochs must be >= 0 and ideas_per_epoch >= 1, got {epochs} and {ideas_per_epoch}")
        self.epochs = epochs
        self.ideas_per_epoch = ideas_per_epoch
        self.seed = seed

    def plan_epoch(self, epoch: int, history: SearchHistory) -> list[IdeationRequest]:
        return [IdeationRequest(PromptKind.SIMPLE, self.ideas_per_epoch, epoch, seed=self.seed)]
