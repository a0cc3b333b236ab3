"""Choosing a backend from a run's configuration."""

from __future__ import annotations

from pathlib import Path

from groundwork.config import RunConfig
from groundwork.execution.local import LocalBackend
from groundwork.execution.resources import SlotPlan
from groundwork.protocols import Backend
from groundwork.store import ArtifactStore, RunStore


def make_backend(config: RunConfig, plan: SlotPlan, run_dir: Path) -> Backend:
    run_dir = Path(run_dir)
    if config.backend == "local":
        return LocalBackend(plan.slots)
    index = RunStore(run_dir)  # its own connection, used from the controller's thread
    artifacts = ArtifactStore(run_dir, config.artifacts_url, on_put=index.record_artifact)
    run_id = index.run_info().id
    if config.backend == "ray":
        from groundwork.execution.ray_backend import RayBackend

        return RayBackend(plan.slots, artifacts, run_id, address=config.address, lease_s=config.lease_s)
    from groundwork.execution.slurm_backend import SlurmBackend

    return SlurmBackend(
        plan.slots,
        artifacts,
        run_dir / "slurm",
        partition=config.slurm_partition,
        account=config.slurm_account,
        lease_s=config.lease_s,
    )
