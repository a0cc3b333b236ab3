"""When an epoch is settled: all its ideas have results, or a quorum of them plus a straggler deadline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from groundwork.records import PromptKind
from groundwork.store import RunStore


def epoch_settled(store: RunStore, epoch: int, quorum: float, straggler_s: float) -> Callable[[], bool] | None:
    """With a quorum below 1: settled once that share of the epoch's ideas have results
    and either all have or `straggler_s` has passed since the quorum was reached."""
    if quorum >= 1.0:
        return None
    quorum_at: float | None = None
    seen, total, done = -1, 0, 0

    def settled() -> bool:
        nonlocal quorum_at, seen, total, done
        if store.count_results() != seen:  # recount only when a result arrived
            seen = store.count_results()
            ids = {i.id for i in store.ideas(epoch=epoch) if i.prompt_kind != PromptKind.CONFIRM}
            total, done = len(ids), len(ids & set(store.results()))
        if done < math.ceil(quorum * total):
            return False
        quorum_at = quorum_at or time.time()
        return done == total or time.time() - quorum_at >= straggler_s

    return settled
