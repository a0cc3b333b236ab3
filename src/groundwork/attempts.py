"""Patch attempts as store records, the jobs they queue, and the spec each job runs with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from groundwork.config import RunConfig
from groundwork.environments import Environment
from groundwork.environments.registry import ResolvedProfile
from groundwork.execution.early_abort import rule_from_baselines
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.resources import job_memory_cap_mb
from groundwork.idea_building import NOT_SEARCHED
from groundwork.protocols import JobSpec, PatchAttempt
from groundwork.records import FailureCategory, Idea, Job, Patch, PatchStatus, PromptKind, Result
from groundwork.store import ArtifactStore, RunStore

if TYPE_CHECKING:
    from groundwork.wiring import Components


class AttemptRecorder:
    """Writes an idea's patch attempts (each diff an artifact) and queues the job of the
    applied one, or ends the idea with its patch failure."""

    def __init__(self, store: RunStore, artifacts: ArtifactStore, profile: ResolvedProfile, parts: Components):
        self.store = store
        self.artifacts = artifacts
        self.profile = profile
        self.parts = parts  # read at each job: a caller may swap the backend after wiring

    def _job(self, idea: Idea, patch_id: str, seed: int | None) -> Job:
        return Job(
            id=f"job-{idea.id}",
            idea_id=idea.id,
            patch_id=patch_id,
            backend=self.parts.backend.name,
            resources=self.profile.resources.model_dump(),
            seed=seed,
        )

    def record_attempts(self, idea: Idea, attempts: list[PatchAttempt], implementer: str) -> None:
        patches = self.patches(idea, attempts, implementer)
        applied = [p for p in patches if p.status == PatchStatus.APPLIED]
        if applied:
            seed = idea.payload.get("seed") if idea.prompt_kind == PromptKind.BASELINE else None
            self.store.record_implementation(idea.id, patches, self._job(idea, applied[0].id, seed), None)
        else:
            reason = patches[-1].error if patches else "the implementer produced no patch"
            failure = Result(idea_id=idea.id, failure=FailureCategory.PATCH_FAILED, detail=reason)
            self.store.record_implementation(idea.id, patches, None, failure)

    def patches(self, idea: Idea, attempts: list[PatchAttempt], implementer: str, repair_round: int = 0) -> list[Patch]:
        """Attempts as patch records, numbered after the idea's stored ones, each diff
        written to `patches/<idea>.attempt-N.diff` (rewritten alike by a resumed run)."""
        done = len(self.store.patches(idea.id))
        patches = []
        for n, attempt in enumerate(attempts, start=done + 1):
            rel = f"patches/{idea.id}.attempt-{n}.diff"
            sha = self.artifacts.put_text(rel, attempt.diff)
            patches.append(
                Patch(
                    id=f"{idea.id}.p{n}",
                    idea_id=idea.id,
                    attempt=n,
                    implementer=attempt.implementer or implementer,
                    status=PatchStatus.APPLIED if attempt.applied else PatchStatus.FAILED,
                    diff_path=rel,
                    diff_sha256=sha,
                    error=attempt.error,
                    files=attempt.files,
                    codebase_hash=attempt.codebase_hash,
                    model=attempt.model,
                    repair_round=repair_round,
                    cost_usd=attempt.cost_usd,
                    tokens=attempt.tokens,
                )
            )
        return patches

    def queue_replicate(self, idea: Idea) -> None:
        """A confirmation re-runs its parent's applied patch with its own seed."""
        # The patch its parent's job ran: after a repair round, the corrected one.
        parent = next(p for p in reversed(self.store.patches(idea.parents[0])) if p.status == PatchStatus.APPLIED)
        self.store.record_implementation(idea.id, [], self._job(idea, parent.id, idea.payload["seed"]), None)

    def record_repair(self, job: Job, attempts: list[PatchAttempt], why_not: str, implementer: str) -> bool:
        """A repair round's attempts; True when a corrected patch was queued as the job's next attempt."""
        idea = self.store.idea(job.idea_id)
        patches = self.patches(idea, attempts, implementer, repair_round=job.repairs + 1)
        applied = next((p for p in patches if p.status == PatchStatus.APPLIED), None)
        ran = next(p for p in self.store.patches(idea.id) if p.id == job.patch_id)
        if applied is not None and applied.diff_sha256 == ran.diff_sha256:  # it would fail the same way
            applied, why_not = None, "no repair: the corrected diff is the one that failed"
        if applied is None:
            why_not = why_not or (patches[-1].error if patches else "the implementer produced no patch")
            detail = f"repair round {job.repairs + 1}: {why_not}"
        else:
            detail = f"repair round {job.repairs + 1}: {applied.id} queued"
        self.store.record_repair(job.id, patches, applied.id if applied else None, detail)
        return applied is not None


class JobSpecs:
    """The spec a job of this run runs with: its patch, seed, slot, caps, early-abort rule
    and pre-flight profile."""

    def __init__(
        self,
        store: RunStore,
        artifacts: ArtifactStore,
        env: Environment,
        profile: ResolvedProfile,
        config: RunConfig,
        parts: Components,
        locked_hashes: dict,
    ):
        self.store, self.artifacts, self.env, self.profile = store, artifacts, env, profile
        self.config, self.parts, self.locked_hashes = config, parts, locked_hashes

    def spec(self, job: Job, data_dir: Path | None) -> JobSpec:
        patch = next(p for p in self.store.patches() if p.id == job.patch_id)  # a confirmation's is its parent's
        run_dir = self.store.run_dir.resolve()
        plan = self.parts.slot_plan
        assert job.slot is not None and data_dir is not None
        return environment_job_spec(
            self.env,
            self.profile,
            data_dir,
            run_dir / job.job_dir,
            job_id=job.id,
            attempt=job.attempt,
            seed=self.config.seed if job.seed is None else job.seed,
            diff_path=str(run_dir / patch.diff_path) if self.artifacts.get_text(patch.diff_path) else "",
            codebase_hash=patch.codebase_hash,
            locked_hashes=self.locked_hashes,
            time_budget_s=self.config.time_budget_s,
            slot=job.slot,
            threads=plan.threads,
            gpu_ids=plan.gpus.get(job.slot, []),
            sandbox=self.config.sandbox,
            memory_limit_mb=job_memory_cap_mb(
                self.config.memory_limit_mb,
                self.profile.resources.memory_mb,
                plan.slots,
                local=self.config.backend == "local",
            ),
            log_limit_mb=self.config.log_limit_mb,
            abort_rule=self.abort_rule(job),
            preflight=self.preflight_profile(job),
        )

    def abort_rule(self, job: Job) -> dict | None:
        """The early-abort rule for an idea's job (never the baseline's or a confirmation's),
        from the baseline seeds' curves once two or more have ended."""
        if not self.config.early_abort:
            return None
        ideas = {i.id: i for i in self.store.ideas()}
        if ideas[job.idea_id].prompt_kind in NOT_SEARCHED:
            return None
        results = self.store.results()
        curves = [
            results[i].curve
            for i, idea in ideas.items()
            if idea.prompt_kind == PromptKind.BASELINE and i in results and results[i].valid
        ]
        rule = rule_from_baselines(
            curves, k=self.config.abort_k, warmup=self.config.abort_warmup, patience=self.config.abort_patience
        )
        return rule.to_dict() if rule else None

    def preflight_profile(self, job: Job):
        """The profile an idea's job pre-flights at (never the baseline's or a confirmation's)."""
        name = self.env.manifest.preflight_profile(self.profile.name)
        if self.config.preflight is True and name is None:
            raise ValueError(
                f"--preflight: the manifest names no pre-flight profile for profile {self.profile.name!r}; "
                'set [run] preflight = "PROFILE" (or the profile\'s own preflight) or drop --preflight'
            )
        if self.config.preflight is False or name is None:
            return None
        idea = next(i for i in self.store.ideas() if i.id == job.idea_id)
        return None if idea.prompt_kind in NOT_SEARCHED else self.env.profile(name)
