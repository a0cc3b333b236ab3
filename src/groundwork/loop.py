"""The research loop: propose, implement, execute, learn; epoch after epoch.

Every step reads what to do from the run store and writes what it did before moving on,
so `run` and `resume` are the same code: resuming a run killed at any point re-enters
the loop, adopts jobs still running, and skips whatever is already recorded. The parts it
drives are wired in `wiring`; what it records, in `attempts`, `repair_rounds` and
`idea_building`; the history it shows them, in `search.history_from_store`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from groundwork.attempts import AttemptRecorder, JobSpecs
from groundwork.baseline import BaselineFailed, failed_twice, failure_reason
from groundwork.environments.interpreters import record_in_run
from groundwork.execution.scheduler import Scheduler
from groundwork.idea_building import BASELINE_ID, NOT_SEARCHED, baseline_ideas, drafted_ideas, epoch_ideas
from groundwork.llm.recording import BudgetExceeded
from groundwork.parallel import each_as_finished
from groundwork.protocols import IdeaDraft, Migrating, PatchAttempt, SearchHistory
from groundwork.records import IdeaState, JobState, PromptKind, RunStatus
from groundwork.repair_rounds import RepairRounds
from groundwork.run_lock import controller_lock
from groundwork.runs import run_config, run_environment
from groundwork.search.budget import CapReached, cap_reached, usage
from groundwork.search.confirmation import confirmations_due
from groundwork.search.history_from_store import NoiseFloor, StoreHistory
from groundwork.search.quorum import epoch_settled
from groundwork.store import ArtifactStore, RunStore
from groundwork.wiring import Components, build_components

log = logging.getLogger(__name__)


class ResearchLoop:
    def __init__(
        self, store: RunStore, components: Components | None = None, on_change: Callable[[], None] | None = None
    ):
        self.store = store
        self.config = run_config(store)
        self.env = run_environment(store)
        self.profile = self.env.profile(self.config.profile).with_budget(self.config.budget, self.config.time_budget_s)
        self.parts = components or build_components(self.env, self.profile, self.config, store.run_dir)
        self.artifacts = ArtifactStore(store.run_dir, self.config.artifacts_url, on_put=store.record_artifact)
        self.on_change = on_change or (lambda: None)
        self.info = store.run_info().info
        self.data_dir: Path | None = None  # set by run(), or beforehand by a caller that prepared it
        self._baseline_retried = False  # by this controller: a resumed run retries once more
        floor = NoiseFloor(self.info["environment"], self.info["profile"], self.profile.budget)
        self._history = StoreHistory(store, self.artifacts, self.env.manifest.metric, self.config, floor)
        self.recorder = AttemptRecorder(store, self.artifacts, self.profile, self.parts)
        self.specs = JobSpecs(
            store, self.artifacts, self.env, self.profile, self.config, self.parts, self.info["locked_hashes"]
        )
        self.repairs = RepairRounds(
            store, self.artifacts, self.parts, self.recorder, self.env.codebase_dir, self.config.max_debug_rounds
        )

    # ---- the loop -----------------------------------------------------------------

    def run(self) -> None:
        with controller_lock(self.store.run_dir):
            self._run()

    def _run(self) -> None:
        self.store.set_run_status(RunStatus.RUNNING, f"controller pid {os.getpid()} on {socket.gethostname()}")
        scheduler = Scheduler(
            self.store,
            self.parts.backend,
            lambda job: self.specs.spec(job, self.data_dir),
            max_attempts=self.config.max_attempts,
            on_tick=self.on_change,
            repairable=self.repairs.repairable,
        )
        try:
            scheduler.recover()
            self._prepare_slots(scheduler)  # workers start while the data and the baseline are made ready
            if self.data_dir is None:  # the CLI prepares visibly before it starts the loop
                self.data_dir = self.env.prepare(self.profile, quiet=True)
            preflight = self.env.manifest.preflight_profile(self.profile.name)
            if preflight and self.config.preflight is not False:  # its data, once (cached)
                self.env.for_profile(preflight).prepare(self.env.profile(preflight), quiet=True)
            built = self.env.interpreter()  # built by the preparation: its requirements fail before any job
            if built:
                record_in_run(self.store.run_dir, built)
            self._ensure_baseline()
            try:
                if self.config.search == "steady-state":
                    self._steady_state(scheduler)
                else:
                    self._epochs(scheduler)
            except BudgetExceeded as exc:
                if not isinstance(exc, CapReached):  # the dollar cap: queued jobs are paid for, finish them
                    self._wait(scheduler)
                    self.store.set_run_status(RunStatus.BUDGET_EXHAUSTED, str(exc))
                raise
        except BudgetExceeded:
            raise  # already recorded
        except BaselineFailed as exc:
            self.store.set_run_status(RunStatus.BASELINE_FAILED, str(exc))
            raise
        except KeyboardInterrupt:
            scheduler.cancel_running("interrupted by the user")
            self.store.set_run_status(RunStatus.INTERRUPTED, "Ctrl+C")
            raise
        except BaseException as exc:
            self.store.set_run_status(RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.parts.backend.shutdown()
        self.store.set_run_status(RunStatus.FINISHED)
        self.on_change()

    def _epochs(self, scheduler: Scheduler) -> None:
        """Epoch after epoch: propose, implement, then wait for the epoch's results (all of
        them, or a quorum plus the straggler deadline; stragglers are recorded later).
        Epoch 1's ideas are proposed while the baseline's jobs run (they need no result, and
        a model's proposal takes as long as a job); they are implemented, and their jobs
        queued, only once the baseline has settled, so every idea's job starts with the
        baseline's curves (its early-abort rule) and its result in the history."""
        if self.parts.strategy.epochs >= 1 and not self.store.epoch_proposed(1):
            self._check_caps(scheduler)
            self._propose(1)
        self._wait(scheduler, self._epoch_settled(0))
        for epoch in range(1, self.parts.strategy.epochs + 1):
            self._check_caps(scheduler)
            self._prepare_slots(scheduler, self.config.ideas_per_epoch)  # workers start while the ideas are written
            if not self.store.epoch_proposed(epoch):
                self._propose(epoch)
            self._implement_pending(scheduler)
            # The jobs are queued: keep the workers waiting for them, or start them now.
            self._prepare_slots(scheduler, len(self.store.jobs({JobState.QUEUED})))
            self._wait(scheduler, self._epoch_settled(epoch))
        self._wait(scheduler)  # stragglers and confirmations

    def _steady_state(self, scheduler: Scheduler) -> None:
        """No epoch barrier: whenever a slot is idle, propose and implement a batch of ideas
        for it, with parents drawn from the results so far, until the run's ideas
        (epochs x ideas per epoch) are proposed; then wait for the last jobs."""
        target = self.config.epochs * self.config.ideas_per_epoch
        empty_batches = 0  # in a row; the ideator has nothing new to offer after a few
        seen = -1
        while True:
            busy, seen = self._round(scheduler, seen)
            idle = scheduler.free_slots - len(self.store.jobs({JobState.QUEUED}))
            searched = sum(1 for i in self.store.ideas() if i.prompt_kind not in NOT_SEARCHED)
            exhausted = empty_batches >= 3
            if idle > 0 and not exhausted and searched < target:
                batch = 1
                while self.store.epoch_proposed(batch):
                    batch += 1
                self._prepare_slots(scheduler, min(idle, target - searched))
                made = self._propose(batch, count=min(idle, target - searched))
                empty_batches = 0 if made else empty_batches + 1
                self._implement_pending(scheduler)
                continue
            if not busy and (exhausted or searched >= target):
                return
            scheduler.wait()

    def _prepare_slots(self, scheduler: Scheduler, jobs: int | None = None) -> None:
        """Jobs are coming: let the backend start what they will run in (bounded by the
        free slots; a no-op on backends whose jobs start at once)."""
        scheduler.prepare(self.profile.resources.model_dump(), jobs)

    def _round(self, scheduler: Scheduler, seen: int) -> tuple[bool, int]:
        """One scheduler tick; confirmation re-runs when results arrived since `seen` of them;
        the compute and time caps. Returns (jobs still queued or running, results seen)."""
        busy = scheduler.tick()
        busy = self.repairs.repair_failed(self.on_change) or busy
        results = self.store.count_results()
        if results != seen:
            busy = self._check_baseline(scheduler) or busy
            busy = self._queue_confirmations() or busy
        self._check_caps(scheduler)
        return busy, results

    def _epoch_settled(self, epoch: int) -> Callable[[], bool] | None:
        return epoch_settled(self.store, epoch, self.config.quorum, self.config.straggler_s)

    def _wait(self, scheduler: Scheduler, settled: Callable[[], bool] | None = None) -> None:
        """Tick the scheduler until no job is left (or `settled()`), queueing confirmation
        re-runs as results arrive and stopping cleanly at a compute or time cap."""
        seen = -1
        while True:
            busy, seen = self._round(scheduler, seen)
            if not busy or (settled is not None and settled()):
                return
            scheduler.wait()

    def _check_caps(self, scheduler: Scheduler) -> None:
        if self.config.max_gpu_hours is None and self.config.max_hours is None:
            return
        cap = cap_reached(self.config, usage(self.store, self.profile.resources.gpus))
        if cap is not None:
            scheduler.cancel_running(f"stopped at a cap: {cap}")  # re-queued: resume runs them
            self.store.set_run_status(RunStatus.BUDGET_EXHAUSTED, str(cap))
            raise cap

    def history(self) -> SearchHistory:
        return self._history.build()

    def _queue_confirmations(self) -> bool:
        """Noise-aware selection (`search.confirmation`): re-runs of the top ideas with fresh
        seeds before they may enter the exploit pool. True when jobs were queued."""
        if self.config.confirm_seeds == 0:
            return False
        started = {i.parents[0] for i in self.store.ideas() if i.prompt_kind == PromptKind.CONFIRM}
        c = self.config
        new = confirmations_due(self.history(), started, c.confirm_top, c.confirm_seeds, c.seed)
        if not new:
            return False
        self.store.add_ideas(new)
        self._implement_pending()
        self.on_change()
        return True

    # ---- stages -------------------------------------------------------------------

    def _ensure_baseline(self) -> None:
        """Epoch 0: the unmodified codebase, once per baseline seed (several seeds measure
        the environment's noise floor)."""
        if not self.store.epoch_proposed(0):
            self.store.add_epoch(0, baseline_ideas([self.config.seed + k for k in range(self.config.baseline_seeds)]))
        self._implement_pending()

    def _check_baseline(self, scheduler: Scheduler) -> bool:
        """Every idea is measured against the baseline: a baseline that failed runs once more
        (the reason is logged; a slow start-up on a busy machine is the usual one), and failing
        again stops the run, its running jobs back in the queue. A resumed run gives a failed
        baseline its second chance again. True when the baseline was queued again."""
        result = self.store.results().get(BASELINE_ID)
        if result is None or result.valid:
            return False
        reason = failure_reason(result)
        job_id = f"job-{BASELINE_ID}"
        if not self._baseline_retried:
            self._baseline_retried = True
            log.warning("the baseline failed (%s); running it once more", reason)
            self.store.retry_job(job_id, f"baseline retried once after it failed ({reason})")
            return True
        scheduler.cancel_running("the baseline failed twice: the run stops")  # re-queued: resume runs them
        job = self.store.job(job_id)
        log_path = self.store.run_dir / job.job_dir / "job.log" if job.job_dir else self.store.run_dir
        raise failed_twice(result, log_path, self.store.run_dir)

    def _propose(self, epoch: int, count: int | None = None) -> int:
        history = self.history()
        strategy = self.parts.strategy
        if isinstance(strategy, Migrating):  # stored before the proposal: a resumed run replays it
            due = strategy.due_migrations(epoch, history)
            for round_ in due:
                self.store.record_migration(round_)
            history = self.history() if due else history
        drafts: list[tuple[PromptKind, IdeaDraft]] = []
        for request in strategy.plan_epoch(epoch, history, count):
            made = self.parts.ideator.propose(request, history)
            if request.island is not None:
                made = [replace(d, payload={**d.payload, "island": request.island}) for d in made]
                # The next island's request sees these as proposed, so no two islands propose one idea.
                drafted = drafted_ideas(epoch, len(drafts), request.kind, made, self.parts.ideator.label)
                history = replace(history, proposed=[*history.proposed, *drafted])
            drafts += [(request.kind, d) for d in made]
        ideas = epoch_ideas(epoch, drafts, self.parts.ideator.label)
        self.store.add_epoch(epoch, ideas)
        self.on_change()
        return len(ideas)

    def _implement_pending(self, scheduler: Scheduler | None = None) -> None:
        """Implement every proposed idea, queueing a job for each that applies. With
        `scheduler`, each job is dispatched as soon as it is queued, while the epoch's
        other ideas are still being implemented."""
        pending = self.store.ideas(state=IdeaState.PROPOSED)
        for idea in [i for i in pending if i.prompt_kind == PromptKind.BASELINE]:
            attempts = [PatchAttempt(diff="", applied=True, codebase_hash=self.info["baseline_hash"])]
            self.recorder.record_attempts(idea, attempts, "none (baseline)")
        for idea in [i for i in pending if i.prompt_kind == PromptKind.CONFIRM]:
            self.recorder.queue_replicate(idea)
        ideas = [i for i in pending if i.prompt_kind not in NOT_SEARCHED]
        if not ideas:
            return
        implementer = self.parts.implementer
        work = lambda idea: implementer.implement(idea, self.env.codebase_dir)  # noqa: E731
        for idea, attempts in each_as_finished(work, ideas, self.parts.implementation_workers):
            self.recorder.record_attempts(idea, attempts, implementer.label)
            if scheduler is not None:
                scheduler.tick()  # start its job now (a slot may be free); results are recorded too
            self.on_change()
