"""Which queued jobs start now: resource-aware packing with a head-of-line reservation.

Jobs are taken in queue order. A job that does not fit what is free reserves what it
needs; later jobs may only use what is left beyond that reservation. So a stream of
1-GPU jobs cannot starve an 8-GPU job (the reservation grows as running jobs end), and
1-GPU jobs still fill the GPUs an 8-GPU job cannot use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Resources = Mapping[str, float]


def demand(resources: Mapping[str, object], capacity: Resources) -> dict[str, float]:
    """What a job asks of the kinds of resource a backend counts ("slots" always 1)."""
    wanted = {"slots": 1.0, "gpus": float(resources.get("gpus", 0) or 0), "cpus": float(resources.get("cpus", 1) or 1)}
    return {kind: wanted.get(kind, 0.0) for kind in capacity}


def fits(need: Resources, free: Resources) -> bool:
    return all(need.get(kind, 0.0) <= free.get(kind, 0.0) + 1e-9 for kind in need)


def subtract(a: Resources, b: Resources) -> dict[str, float]:
    return {kind: a.get(kind, 0.0) - b.get(kind, 0.0) for kind in a}


@dataclass(frozen=True)
class Placement:
    start: list[str]  # job ids to start now, in queue order
    impossible: dict[str, str]  # job id -> why it can never run on this backend


def pack(queued: list[tuple[str, Resources]], free: Resources, capacity: Resources) -> Placement:
    """`queued`: (job id, demand) in queue order; `free` and `capacity` per resource kind."""
    start: list[str] = []
    impossible: dict[str, str] = {}
    left = dict(free)
    reserved = False
    for job_id, need in queued:
        if not fits(need, capacity):
            short = ", ".join(f"{need[k]:g} {k}" for k in need if need[k] > capacity.get(k, 0.0))
            have = ", ".join(f"{capacity[k]:g} {k}" for k in need if need[k] > capacity.get(k, 0.0))
            impossible[job_id] = f"needs {short} but the backend has {have} in all"
            continue
        if fits(need, left):
            start.append(job_id)
            left = subtract(left, need)
        elif not reserved:
            # Hold back what the first waiting job needs; what is free now counts toward it.
            left = {kind: max(0.0, left[kind] - need.get(kind, 0.0)) for kind in left}
            reserved = True
        if left.get("slots", 1.0) < 1.0:
            break
    return Placement(start, impossible)
