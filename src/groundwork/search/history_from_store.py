"""A run's SearchHistory, rebuilt from what its store holds (before every proposal and
confirmation round): results, confirmation re-runs, baseline seeds and the noise floor."""

from __future__ import annotations

from groundwork.comparison import run_noise_std
from groundwork.config import RunConfig
from groundwork.descriptors import changed_lines
from groundwork.environments.manifest import Metric
from groundwork.idea_building import BASELINE_ID, NOT_SEARCHED
from groundwork.noise_floor import load_noise_floor, noise_floor_path
from groundwork.protocols import Scored, SearchHistory
from groundwork.records import Patch, PatchStatus, PromptKind, Result
from groundwork.store import ArtifactStore, RunStore


class NoiseFloor:
    """The stored noise floor's std for one environment, profile and budget, read again only
    when its file changes (a history is built before every proposal and confirmation round)."""

    def __init__(self, environment: str, profile: str, budget: str | None):
        self.key = (environment, profile, budget)
        self.path = noise_floor_path(environment, profile)
        self._seen: tuple[int, int] | None = None
        self._std: float | None = None

    def std(self) -> float | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._std = None, None
            return None
        if (stat.st_mtime_ns, stat.st_size) != self._seen:
            self._std = (load_noise_floor(*self.key) or {}).get("std")
            self._seen = (stat.st_mtime_ns, stat.st_size)
        return self._std


class StoreHistory:
    """Builds the history a search strategy and an ideator see."""

    def __init__(self, store: RunStore, artifacts: ArtifactStore, metric: Metric, config: RunConfig, floor: NoiseFloor):
        self.store = store
        self.artifacts = artifacts
        self.metric = metric
        self.config = config
        self.floor = floor
        self._diff_line_cache: dict[str, int] = {}  # by diff sha256: lines changed (archive descriptors)

    def build(self) -> SearchHistory:
        results = self.store.results()
        everything = self.store.ideas()
        ideas = [i for i in everything if i.prompt_kind not in NOT_SEARCHED]
        scored = [Scored(i, results[i.id]) for i in ideas if i.id in results]
        replicates: dict[str, list[Result]] = {}
        for idea in everything:
            if idea.prompt_kind == PromptKind.CONFIRM and idea.id in results:
                replicates.setdefault(idea.parents[0], []).append(results[idea.id])
        baseline_values = [
            float(results[i.id].metric)  # type: ignore[arg-type]
            for i in everything
            if i.prompt_kind == PromptKind.BASELINE and i.id in results and results[i.id].valid
        ]
        return SearchHistory(
            metric=self.metric,
            baseline=results.get(BASELINE_ID),
            scored=scored,
            proposed=ideas,
            replicates=replicates,
            baseline_values=baseline_values,
            noise_std=run_noise_std(baseline_values, self.floor.std()),
            confirm_seeds=self.config.confirm_seeds,
            diff_lines=self._diff_lines([s.idea.id for s in scored]) if self.config.archive != "none" else {},
            migrations=self.store.migrations() if self.config.islands > 1 else [],
        )

    def _diff_lines(self, idea_ids: list[str]) -> dict[str, int]:
        """Lines changed by each idea's applied patch (the last applied: after a repair, the
        corrected one), read once per diff."""
        applied: dict[str, Patch] = {}
        for patch in self.store.patches():
            if patch.status == PatchStatus.APPLIED:
                applied[patch.idea_id] = patch
        cache = self._diff_line_cache
        out = {}
        for idea_id in idea_ids:
            patch = applied.get(idea_id)
            if patch is None:
                continue
            if patch.diff_sha256 not in cache:
                cache[patch.diff_sha256] = changed_lines(self.artifacts.get_text(patch.diff_path))
            out[idea_id] = cache[patch.diff_sha256]
        return out
