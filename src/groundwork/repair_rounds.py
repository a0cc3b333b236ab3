"""Run-time repair: a failed job of a model-written patch waits while the implementer is
shown the failure and corrects the patch; the correction runs as the job's next attempt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from groundwork.attempts import AttemptRecorder
from groundwork.idea_building import NOT_SEARCHED
from groundwork.implementation.repair import log_excerpt, repairable
from groundwork.llm.base import LLMError
from groundwork.llm.recording import BudgetExceeded
from groundwork.parallel import each_as_finished
from groundwork.protocols import FailedRun, PatchAttempt, Repairer
from groundwork.records import Idea, Job, JobOutcome
from groundwork.store import ArtifactStore, RunStore

if TYPE_CHECKING:
    from groundwork.wiring import Components

LOG_EXCERPT_CHARS = 6000  # of a failed job's log, shown to the implementer that repairs it


class RepairRounds:
    def __init__(
        self,
        store: RunStore,
        artifacts: ArtifactStore,
        parts: Components,
        recorder: AttemptRecorder,
        codebase_dir: Path,
        max_rounds: int,
    ):
        self.store, self.artifacts, self.parts, self.recorder = store, artifacts, parts, recorder
        self.codebase_dir, self.max_rounds = codebase_dir, max_rounds

    def repairable(self, job: Job, outcome: JobOutcome) -> bool:
        """Whether a failed job's result waits for a repair round: a crash or missing metric
        of a searched idea whose patch a model wrote, with repair rounds left."""
        if not isinstance(self.parts.implementer, Repairer) or job.repairs >= self.max_rounds:
            return False
        if not repairable(outcome):
            return False
        idea = self.store.idea(job.idea_id)
        return idea.prompt_kind not in NOT_SEARCHED

    def repair_failed(self, on_change: Callable[[], None]) -> bool:
        """Ask the implementer to correct each patch whose run failed and waits for a repair;
        queue the corrected patch as the job's next attempt, or end the idea with its failed
        result. True when a job was queued."""
        held = self.store.jobs_awaiting_repair()
        if not held:
            return False
        queued = False
        shown = {job.id: self._failed_run(job) for job in held}  # read here: the store serves this thread
        label = self.parts.implementer.label
        for job, (attempts, why_not) in each_as_finished(
            lambda j: self._repair_attempts(*shown[j.id]), held, self.parts.implementation_workers
        ):
            queued = self.recorder.record_repair(job, attempts, why_not, label) or queued
            on_change()
        return queued

    def _failed_run(self, job: Job) -> tuple[Idea, FailedRun]:
        """What a repair of a held job is shown."""
        assert job.awaiting_repair is not None
        idea = self.store.idea(job.idea_id)
        patch = next(p for p in self.store.patches(idea.id) if p.id == job.patch_id)
        failed = FailedRun(
            diff=self.artifacts.get_text(patch.diff_path),
            failure=str(job.awaiting_repair.failure),
            detail=job.awaiting_repair.detail,
            log_tail=log_excerpt(self._job_log(job), LOG_EXCERPT_CHARS),
            round=job.repairs + 1,
        )
        return idea, failed

    def _repair_attempts(self, idea: Idea, failed: FailedRun) -> tuple[list[PatchAttempt], str]:
        """(the implementer's attempts, why there are none). A model call that cannot be
        answered (a replay without a repair call, the dollar cap) means no repair."""
        assert isinstance(self.parts.implementer, Repairer)
        try:
            return self.parts.implementer.repair(idea, self.codebase_dir, failed), ""
        except (LLMError, BudgetExceeded) as exc:
            return [], f"no repair: {exc}"

    def _job_log(self, job: Job) -> str:
        rel = f"{job.job_dir}/job.log"
        local = self.store.run_dir / rel
        if local.is_file():  # read only the end: a log may be tens of megabytes
            with open(local, "rb") as fh:
                fh.seek(max(0, local.stat().st_size - 8 * LOG_EXCERPT_CHARS))
                return fh.read().decode("utf-8", errors="replace")
        try:
            return self.artifacts.get_text(rel)[-8 * LOG_EXCERPT_CHARS :]
        except FileNotFoundError:
            return ""
