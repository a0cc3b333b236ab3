"""The joint budget: LLM dollars (checked before each model call, in llm/recording.py),
device-hours of jobs and the controller's wall-clock time. A run that reaches a cap stops
cleanly and continues with `groundwork resume RUN --max-...` once the cap is raised."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from groundwork.config import RunConfig
from groundwork.llm.recording import BudgetExceeded
from groundwork.records import JobState, RunStatus
from groundwork.store import RunStore


class CapReached(BudgetExceeded):
    """A compute or time cap is reached; `flag` names the option that raises it."""

    def __init__(self, message: str, flag: str):
        super().__init__(message)
        self.flag = flag


def devices_per_job(gpus: int) -> int:
    """GPU-hours count a job's GPUs; a CPU-only job counts as one device."""
    return max(1, gpus)


def device_hours(events: list[dict[str, Any]], gpus: int, at: float | None = None) -> float:
    """Hours of devices held by jobs, from the store's job events: every attempt from
    `running` to its next state (a stopped or lost attempt counts too; a running one up to now)."""
    at = at or time.time()
    seconds, running = 0.0, {}
    for event in sorted(events, key=lambda e: e["id"]):
        if event["entity"] != "job":
            continue
        started = running.pop(event["entity_id"], None)
        if started is not None:
            seconds += max(0.0, event["ts"] - started)
        if event["to_state"] == JobState.RUNNING:
            running[event["entity_id"]] = event["ts"]
    seconds += sum(max(0.0, at - started) for started in running.values())
    return seconds * devices_per_job(gpus) / 3600.0


def active_hours(events: list[dict[str, Any]], at: float | None = None) -> float:
    """Hours a controller drove the run, summed over resumes: from each `running` status to
    the next status change. A controller killed without a word is counted up to the last
    thing the run recorded before the next start."""
    at = at or time.time()
    total, started, last_ts = 0.0, None, None
    for event in sorted(events, key=lambda e: e["id"]):
        if event["entity"] == "run" and event["to_state"] not in ("config",):
            if started is not None:
                end = event["ts"] if event["to_state"] != RunStatus.RUNNING else (last_ts or event["ts"])
                total += max(0.0, end - started)
                started = None
            if event["to_state"] == RunStatus.RUNNING:
                started = event["ts"]
        last_ts = event["ts"]
    if started is not None:
        total += max(0.0, at - started)
    return total / 3600.0


@dataclass(frozen=True)
class Usage:
    gpu_hours: float
    hours: float


def usage(store: RunStore, gpus: int) -> Usage:
    events = store.events()
    return Usage(device_hours(events, gpus), active_hours(events))


def cap_reached(config: RunConfig, used: Usage) -> CapReached | None:
    if config.max_gpu_hours is not None and used.gpu_hours >= config.max_gpu_hours:
        return CapReached(
            f"jobs used {used.gpu_hours:.3f} GPU-hours, the cap is {config.max_gpu_hours:g}", "--max-gpu-hours"
        )
    if config.max_hours is not None and used.hours >= config.max_hours:
        return CapReached(
            f"the run has been driven for {used.hours:.3f} h, the cap is {config.max_hours:g} h", "--max-hours"
        )
    return None
