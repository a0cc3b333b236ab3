"""Deciding slots: how many jobs run at once, with how many CPU threads and which GPUs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import psutil

MEMORY_SHARE = 0.8  # of the machine's memory, shared by the jobs running on it at once


def total_memory_mb() -> float:
    return psutil.virtual_memory().total / 2**20


def job_memory_cap_mb(requested: float | None, declared: int | None, slots: int, local: bool) -> float | None:
    """The resident-memory cap of a job: the one asked for (`--memory-limit-mb`; 0: none), else
    the profile's `resources.memory_mb`, else (local backend) MEMORY_SHARE of this machine split
    over its slots. None: a remote worker takes MEMORY_SHARE of its own machine."""
    if requested is not None:
        return requested
    if declared:
        return float(declared)
    return float(round(MEMORY_SHARE * total_memory_mb() / max(1, slots))) if local else None


@dataclass(frozen=True)
class SlotPlan:
    slots: int
    threads: int  # CPU threads per job
    gpus: dict[int, list[int]]  # slot -> GPU ids (empty lists for CPU jobs)


def detect_gpus() -> list[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(range(sum(1 for line in out.splitlines() if line.startswith("GPU "))))


def plan_slots(
    requested: int,
    gpus_per_job: int,
    cpu_count: int | None = None,
    gpus: list[int] | None = None,
    *,
    cluster: bool = False,
    cpus_per_job: int = 1,
) -> SlotPlan:
    """`cluster`: jobs run on a cluster that places them by their resources (Ray, Slurm),
    so this machine's GPUs do not matter; each job gets `cpus_per_job` threads."""
    if cluster:
        return SlotPlan(requested, max(1, cpus_per_job), {s: [] for s in range(requested)})
    cpu_count = cpu_count or os.cpu_count() or 1
    if gpus_per_job == 0:
        return SlotPlan(requested, max(1, cpu_count // requested), {s: [] for s in range(requested)})
    gpus = detect_gpus() if gpus is None else gpus
    fit = len(gpus) // gpus_per_job
    if fit == 0:
        raise RuntimeError(
            f"this profile needs {gpus_per_job} GPU(s) per job but {len(gpus)} are visible here; "
            "use a CPU profile (e.g. --profile tiny) or run on a machine with GPUs"
        )
    slots = min(requested, fit)
    return SlotPlan(
        slots,
        max(1, cpu_count // slots),
        {s: gpus[s * gpus_per_job : (s + 1) * gpus_per_job] for s in range(slots)},
    )
