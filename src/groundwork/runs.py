"""Creating, finding and opening run folders.

A run folder is self-contained: its SQLite store, a snapshot of the environment it ran
(manifest, catalog, pristine baseline codebase) and its artifacts (diffs, job folders).
"""

from __future__ import annotations

import platform
import secrets
import shutil
import sys
import time
from pathlib import Path

from groundwork import __version__
from groundwork.config import RunConfig
from groundwork.environments import Environment, load_environment
from groundwork.patch.codebase import codebase_hash, file_sha256
from groundwork.store import RunStore, StoreError

DEFAULT_RUNS_DIR = Path("runs")
ENV_SNAPSHOT = "environment"


def create_run(config: RunConfig, runs_dir: Path = DEFAULT_RUNS_DIR, name: str | None = None) -> RunStore:
    env = load_environment(config.environment, profile=config.profile)  # fails early on a bad profile name
    profile = env.profile().with_budget(config.budget, config.time_budget_s)  # a budget it lacks fails here
    # The budget chosen is recorded: a resumed run keeps it even if the profile's default changes.
    config = config.model_copy(update={"profile": profile.name, "budget": profile.budget})
    run_id = name or f"{time.strftime('%Y%m%d-%H%M%S')}-{env.name}-{secrets.token_hex(2)}"
    run_dir = Path(runs_dir) / run_id
    if run_dir.exists():
        raise FileExistsError(
            f"run folder {run_dir} already exists: pick another --name, or `groundwork resume {run_id}`"
        )
    # The snapshot is taken before the store exists, so a store always has its snapshot.
    staging = Path(runs_dir) / f".{run_id}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(env.root, staging / ENV_SNAPSHOT, ignore=shutil.ignore_patterns("__pycache__"))
    snapshot = load_environment(staging / ENV_SNAPSHOT, profile=profile.name)
    locked = {rel: file_sha256(snapshot.codebase_dir / rel) for rel in snapshot.manifest.files.locked}
    info = {
        "environment": env.name,
        "environment_source": str(env.root),
        "profile": profile.name,
        "locked_hashes": locked,
        "baseline_hash": codebase_hash(snapshot.codebase_dir),
        "groundwork_version": __version__,
        "python": sys.version.split()[0],
        "host": platform.node(),
    }
    RunStore.create(staging, run_id, config.model_dump(), info).close()
    staging.rename(run_dir)
    return RunStore(run_dir)


def run_environment(store: RunStore) -> Environment:
    """The run's snapshot of its environment, as the run's profile sees it."""
    return load_environment(store.run_dir / ENV_SNAPSHOT, profile=store.run_info().config.get("profile"))


def run_config(store: RunStore) -> RunConfig:
    return RunConfig.model_validate(store.run_info().config)


def find_run(ref: str | None, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """A run folder from an id, a path, or (None) the most recent run."""
    if ref is None:
        candidates = sorted(
            (p for p in Path(runs_dir).glob("*/store.sqlite")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        if not candidates:
            raise StoreError(f"no runs in {Path(runs_dir).resolve()}: start one with `groundwork run`")
        return candidates[0].parent
    for candidate in (Path(ref), Path(runs_dir) / ref):
        if (candidate / "store.sqlite").is_file():
            return candidate
    raise StoreError(f"no run {ref!r}: not a run folder, and not in {Path(runs_dir).resolve()}")
