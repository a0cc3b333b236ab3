"""Leases on jobs running elsewhere: a job's worker renews its lease by writing a
heartbeat to the artifact store; a job whose heartbeat has not changed for `lease_s`
(measured on the controller's clock, so clock skew between machines does not matter) is
declared lost, its worker is cancelled and the job re-queued. A job that has not started on
its worker yet (queued in Slurm, a Ray worker still being placed or started) keeps its lease:
its silence counts from when it starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from groundwork.execution.remote_job import HEARTBEAT_FILE
from groundwork.store.artifacts import RemoteArtifacts


@dataclass
class _Lease:
    job_rel: str
    renewed_at: float
    last_beat: bytes = b""
    checked_at: float = 0.0


@dataclass
class Leases:
    store: RemoteArtifacts
    lease_s: float = 60.0  # silence after which a job counts as lost
    check_every_s: float = 2.0  # reads of the store per job at most this often
    _leases: dict[str, _Lease] = field(default_factory=dict)

    def grant(self, job_id: str, job_rel: str) -> None:
        self._leases[job_id] = _Lease(job_rel, time.monotonic())

    def release(self, job_id: str) -> None:
        self._leases.pop(job_id, None)

    def expired(self, waiting: Callable[[str], bool] = lambda job_id: False) -> list[tuple[str, str]]:
        """(job id, reason) of jobs whose lease ran out; they are released. `waiting(job_id)`:
        the job is still waiting to start on its worker (asked only when no new beat came)."""
        t = time.monotonic()
        lost = []
        for job_id, lease in list(self._leases.items()):
            if t - lease.checked_at >= self.check_every_s:
                lease.checked_at = t
                try:
                    beat = self.store.get_bytes(f"{lease.job_rel}/{HEARTBEAT_FILE}")
                except (FileNotFoundError, OSError):
                    beat = lease.last_beat
                if beat != lease.last_beat:
                    lease.last_beat, lease.renewed_at = beat, t
                elif waiting(job_id):
                    lease.renewed_at = t
            if t - lease.renewed_at > self.lease_s:
                lost.append((job_id, f"no heartbeat for {t - lease.renewed_at:.0f}s (lease {self.lease_s:g}s)"))
                self.release(job_id)
        return lost
