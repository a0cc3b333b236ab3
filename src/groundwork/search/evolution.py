"""Evolutionary search over ideas, as in the paper: each epoch mixes exploit requests
(refine or combine ideas that beat the baseline) and explore requests (new directions,
shown a sample of what was tried), with the exploit share rising with the epoch."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from groundwork.protocols import IdeationRequest, ParentSelector, SearchHistory
from groundwork.records import PromptKind


@dataclass(frozen=True)
class ExploitSchedule:
    """exploit share = min(start + step * floor(epoch / every), cap); the paper's by default."""

    start: float = 0.5
    step: float = 0.1
    every: int = 2
    cap: float = 0.8

    def __post_init__(self) -> None:
        if not (0.0 <= self.start <= 1.0 and 0.0 <= self.cap <= 1.0) or self.every < 1:
            raise ValueError(
                f"exploit schedule: start and cap must lie in [0, 1] and every >= 1, got "
                f"start={self.start}, cap={self.cap}, every={self.every}"
            )

    def share(self, epoch: int) -> float:
        return max(0.0, min(self.start + self.step * math.floor(epoch / self.every), self.cap))


def exploit_share(epoch: int, schedule: ExploitSchedule = ExploitSchedule()) -> float:
    return schedule.share(epoch)


class EvolutionStrategy:
    name = "evolution"

    def __init__(
        self,
        epochs: int,
        ideas_per_epoch: int,
        top_k: int = 4,
        seed: int = 0,
        schedule: ExploitSchedule = ExploitSchedule(),
        explore_sample: int = 40,
        parents: ParentSelector | None = None,
    ):
        if epochs < 0 or ideas_per_epoch < 1:
            raise ValueError(f"epochs must be >= 0 and ideas_per_epoch >= 1, got {epochs} and {ideas_per_epoch}")
        self.epochs = epochs
        self.ideas_per_epoch = ideas_per_epoch
        self.top_k = top_k
        self.seed = seed
        self.schedule = schedule
        self.explore_sample = explore_sample
        self.parents = parents  # None: the top_k of the exploit pool

    def plan_epoch(self, epoch: int, history: SearchHistory, count: int | None = None) -> list[IdeationRequest]:
        return self._requests(epoch, self.share_epoch(epoch, history), history, count or self.ideas_per_epoch)

    def share_epoch(self, epoch: int, history: SearchHistory) -> int:
        """The epoch whose exploit share a request for `epoch` gets."""
        return epoch

    def epochs_done(self, epoch: int, history: SearchHistory) -> int:
        """Epochs finished before `epoch` is proposed (island migrations count these)."""
        return max(0, epoch - 1)

    def _requests(self, epoch: int, share_epoch: int, history: SearchHistory, count: int) -> list[IdeationRequest]:
        if self.parents is not None:
            winners = self.parents.select(history, epoch, self.top_k)
        else:
            winners = history.beating_baseline()[: self.top_k]
        n_exploit = round(count * self.schedule.share(share_epoch)) if winners else 0
        n_explore = count - n_exploit
        requests = []
        if n_exploit:
            requests.append(IdeationRequest(PromptKind.EXPLOIT, n_exploit, epoch, parents=winners, seed=self.seed))
        if n_explore:
            tried = list(history.scored)
            if len(tried) > self.explore_sample:  # a seeded sample keeps long runs' prompts bounded
                tried = random.Random(f"{self.seed}:{epoch}").sample(tried, self.explore_sample)
            kind = PromptKind.EXPLORE if tried else PromptKind.SIMPLE
            requests.append(IdeationRequest(kind, n_explore, epoch, tried=tried, seed=self.seed))
        return requests


class SteadyStateStrategy(EvolutionStrategy):
    """Evolution without epoch barriers: the loop asks for a batch whenever slots free up.
    A batch's exploit share follows how many ideas have finished, as if they came in epochs
    of `ideas_per_epoch`; parents are drawn from whatever results are in so far."""

    name = "steady-state"

    def share_epoch(self, epoch: int, history: SearchHistory) -> int:
        return 1 + len(history.scored) // self.ideas_per_epoch

    def epochs_done(self, epoch: int, history: SearchHistory) -> int:
        return len(history.scored) // self.ideas_per_epoch


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

    def plan_epoch(self, epoch: int, history: SearchHistory, count: int | None = None) -> list[IdeationRequest]:
        return [IdeationRequest(PromptKind.SIMPLE, count or self.ideas_per_epoch, epoch, seed=self.seed)]
