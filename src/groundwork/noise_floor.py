"""The baseline's measured spread over seeds, cached per environment and profile, where
the search (its noise margin) and reports find it without a run of their own."""

from __future__ import annotations

import json
from pathlib import Path

from groundwork.environments.registry import cache_root
from groundwork.store.artifacts import write_atomic


def noise_floor_path(environment: str, profile: str) -> Path:
    return cache_root() / "noise" / f"{environment}-{profile}.json"


def write_noise_floor(floor: dict) -> Path:
    """Store a floor record (`environment`, `profile`, `mean`, `std`, `budget`, ...)."""
    path = noise_floor_path(floor["environment"], floor["profile"])
    write_atomic(path, json.dumps(floor, indent=2))
    return path


def load_noise_floor(environment: str, profile: str, budget: str | None = None) -> dict | None:
    """The stored floor; None when there is none or, given `budget`, when it was measured
    under another budget (floors saved before budgets existed were time budgets)."""
    path = noise_floor_path(environment, profile)
    if not path.is_file():
        return None
    floor = json.loads(path.read_text())
    if budget is not None and floor.get("budget", "time") != budget:
        return None
    return floor
