"""Pointing a stopped run at another Ray cluster or artifact store (`groundwork resume
--address ... --artifacts-url ...`).

Only the connection settings change; the run's records stay. A change is refused when the
run could not go on there: a new artifact store that lacks artifacts the run already has
at the old one (the error says what to copy). Jobs left running on a remote backend are
re-queued as new attempts, since the new controller can neither watch them nor read
their outcomes; the change and the re-queues are recorded in the run's events.
"""

from __future__ import annotations

from groundwork.records import JobState
from groundwork.run_lock import controller_lock
from groundwork.runs import run_config
from groundwork.store import RunStore
from groundwork.store.artifacts import RemoteArtifacts

EXAMPLES = 3  # missing artifacts named in the error


def reconnect(store: RunStore, *, address: str | None = None, artifacts_url: str | None = None) -> dict[str, str]:
    """Apply the changes (None keeps a setting); return the settings that changed, as
    {name: "old -> new"}. Raises ValueError, naming the fix, for a change the run cannot take."""
    config = run_config(store)
    changes: dict[str, str | None] = {}
    if address is not None and address != config.address:
        if config.backend != "ray":
            raise ValueError(
                f"--address {address!r} names a Ray cluster, but this run uses the {config.backend!r} backend; "
                "leave --address out"
            )
        changes["address"] = address
    if artifacts_url is not None and artifacts_url != config.artifacts_url:
        _check_artifacts_present(store, config.artifacts_url, artifacts_url)
        changes["artifacts_url"] = artifacts_url
    if not changes:
        return {}
    with controller_lock(store.run_dir):  # no controller may lease jobs while they move
        store.update_config(**changes)
        if config.backend != "local":  # local runners write into the run folder: a restart adopts them
            where = ", ".join(f"{k} {v}" for k, v in changes.items())
            for job in store.jobs({JobState.LEASED, JobState.RUNNING}):
                store.requeue_job(job.id, f"attempt {job.attempt} left behind: the run moved to {where}")
    return {k: f"{getattr(config, k)!r} -> {v!r}" for k, v in changes.items()}


def _check_artifacts_present(store: RunStore, old_url: str | None, new_url: str) -> None:
    """Every artifact the run stored at the old location must be at the new one (same
    relative path): workers read the baseline and the diffs from there."""
    old = RemoteArtifacts(old_url or str(store.run_dir.resolve())).url
    new = RemoteArtifacts(new_url)
    try:
        missing = [
            rel
            for rel, row in store.artifacts().items()
            if row["url"].startswith(old + "/") and not new.exists(rel.rstrip("/"))
        ]
    except (OSError, ValueError, ImportError) as exc:
        raise ValueError(f"cannot read the artifact store {new_url!r}: {exc}; check the URL and its access") from None
    if missing:
        folders = sorted({rel.split("/")[0] + "/" for rel in missing})
        more = len(missing) - EXAMPLES
        shown = ", ".join(missing[:EXAMPLES]) + (f" and {more} more" if more > 0 else "")
        raise ValueError(
            f"--artifacts-url {new_url!r} lacks {len(missing)} artifact(s) this run keeps at {old} ({shown}); "
            f"copy {' '.join(folders)} from {old}/ to {new.url}/ keeping their paths "
            f"(e.g. `cp -r {old}/. {new.url}/` on a shared disk, `aws s3 sync` for buckets), then resume again"
        )
