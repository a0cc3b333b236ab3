"""Model calls run in threads (they wait on the network); their records are written by the
caller, one at a time, as each finishes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def each_as_finished(work: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """(item, work(item)) in the order they finish; a failure is raised once the others
    have finished and been handed over (the first failure, when several fail)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(work, item): item for item in items}
        failure: BaseException | None = None
        for future in as_completed(futures):
            try:
                result = future.result()
            except BaseException as exc:  # keep what the others finished; raise the first failure
                failure = failure or exc
                continue
            yield futures[future], result
        if failure is not None:
            raise failure
