"""The run store: one SQLite file per run plus an artifact folder."""

from groundwork.store.artifacts import ArtifactStore
from groundwork.store.sqlite_store import InvalidTransition, RunInfo, RunStore, StoreError

__all__ = ["ArtifactStore", "InvalidTransition", "RunInfo", "RunStore", "StoreError"]
