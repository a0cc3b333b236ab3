"""The research loop: propose, implement, execute, learn; epoch after epoch.

Every step reads what to do from the run store and writes what it did before moving on,
so `run` and `resume` are the same code: resuming a run killed at any point re-enters
the loop, adopts jobs still running, and skips whatever is already recorded.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from groundwork.analysis.summary import load_noise_floor
from groundwork.comparison import run_noise_std
from groundwork.config import RunConfig
from groundwork.environments import Environment
from groundwork.environments.interpreters import record_in_run
from groundwork.environments.registry import ResolvedProfile
from groundwork.execution.backends import make_backend
from groundwork.execution.early_abort import rule_from_baselines
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.resources import SlotPlan, job_memory_cap_mb, plan_slots
from groundwork.execution.scheduler import Scheduler
from groundwork.ideation.catalog import CatalogIdeator
from groundwork.ideation.llm_ideator import LLMIdeator
from groundwork.ideation.novelty import make_novelty
from groundwork.implementation.catalog_implementer import CatalogImplementer
from groundwork.implementation.llm_implementer import LLMImplementer
from groundwork.implementation.repair import log_excerpt, repairable
from groundwork.llm.base import LLMError
from groundwork.llm.factory import make_llm
from groundwork.llm.portfolio import Portfolio, PortfolioIdeator, PortfolioImplementer
from groundwork.llm.pricing import PriceTable
from groundwork.llm.recording import BudgetExceeded, RecordingLLM
from groundwork.patch.patching import PatchPolicy
from groundwork.prompting import PromptLibrary
from groundwork.protocols import (
    Backend,
    FailedRun,
    IdeaDraft,
    Ideator,
    Implementer,
    JobSpec,
    Migrating,
    PatchAttempt,
    Repairer,
    Scored,
    SearchHistory,
    SearchStrategy,
)
from groundwork.records import (
    FailureCategory,
    Idea,
    IdeaState,
    Job,
    JobOutcome,
    JobState,
    Patch,
    PatchStatus,
    PromptKind,
    Result,
)
from groundwork.run_lock import controller_lock
from groundwork.runs import run_config, run_environment
from groundwork.search.archive import MapElitesArchive, changed_lines
from groundwork.search.budget import CapReached, cap_reached, usage
from groundwork.search.evolution import BestOfNStrategy, EvolutionStrategy, ExploitSchedule, SteadyStateStrategy
from groundwork.search.islands import IslandStrategy
from groundwork.store import ArtifactStore, RunStore

BASELINE_ID = "baseline"
log = logging.getLogger(__name__)


class BaselineFailed(RuntimeError):
    """The baseline failed twice: the run has no reference and stops."""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no detail"


NOT_SEARCHED = (PromptKind.BASELINE, PromptKind.CONFIRM)  # runs that are not ideas of the search
LOG_EXCERPT_CHARS = 6000  # of a failed job's log, shown to the implementer that repairs it


@dataclass
class Components:
    ideator: Ideator
    implementer: Implementer
    strategy: SearchStrategy
    backend: Backend
    slot_plan: SlotPlan
    implementation_workers: int = 1  # ideas implemented at once (model calls run in parallel)


def build_components(env: Environment, profile: ResolvedProfile, config: RunConfig, run_dir: Path) -> Components:
    policy = PatchPolicy.from_files(env.manifest.files)
    plan = plan_slots(
        config.slots, profile.resources.gpus, cluster=config.backend != "local", cpus_per_job=profile.resources.cpus
    )
    budget = profile.prompt_budget()
    prompts = PromptLibrary(Path(config.prompts_dir) if config.prompts_dir else None)
    prices = PriceTable.load()

    def model(spec: str, role: str) -> RecordingLLM:
        return RecordingLLM(make_llm(spec, role), run_dir, prices, config.max_dollars, config.llm_concurrency)

    def portfolio(role: str) -> Portfolio:
        arms = config.ideator_models if role == "ideator" else config.implementer_models
        floor = load_noise_floor(env.name, profile.name, profile.budget)
        return Portfolio(run_dir, role, arms, config.portfolio_floor, env.manifest.metric, (floor or {}).get("std"))

    thinking = {"thinking_budget": config.thinking_budget, "reasoning_effort": config.reasoning_effort}
    if config.ideator_llm == "catalog":
        editable = {rel: (env.codebase_dir / rel).read_text() for rel in env.manifest.files.editable}
        ideator: Ideator = CatalogIdeator.from_file(
            env.catalog_path, seed=config.seed, baseline_files=editable, profile=profile.name
        )
    else:
        novelty = make_novelty(config.novelty)
        ideators = {
            spec: LLMIdeator(model(spec, "ideator"), env, prompts, budget, novelty=novelty, **thinking)
            for spec in config.ideator_models
        }
        one = len(ideators) == 1
        ideator = ideators[config.ideator_llm] if one else PortfolioIdeator(ideators, portfolio("ideator"))
    if config.implementer == "catalog":
        if config.ideator_llm != "catalog":
            raise ValueError(
                "catalog edits exist only for catalog ideas: give model-written ideas a model "
                "implementer (--implementer-llm PROVIDER:MODEL)"
            )
        implementer: Implementer = CatalogImplementer(policy)
    else:
        implementers = {
            spec: LLMImplementer(
                model(spec, "implementer"),
                env,
                prompts,
                policy,
                budget,
                max_revisions=config.max_revisions,
                edit_format=config.edit_format,
                **thinking,
            )
            for spec in config.implementer_models
        }
        implementer = (
            implementers[config.implementer]
            if len(implementers) == 1
            else PortfolioImplementer(implementers, portfolio("implementer"))
        )
    return Components(
        ideator=ideator,
        implementer=implementer,
        strategy=make_strategy(config),
        backend=make_backend(config, plan, run_dir),
        slot_plan=plan,
        implementation_workers=1 if config.implementer == "catalog" else config.llm_concurrency,
    )


def make_strategy(config: RunConfig) -> SearchStrategy:
    if config.search == "best-of-n":
        return BestOfNStrategy(config.epochs, config.ideas_per_epoch, seed=config.seed)
    schedule = ExploitSchedule(config.exploit_start, config.exploit_step, config.exploit_every, config.exploit_max)
    kind = SteadyStateStrategy if config.search == "steady-state" else EvolutionStrategy
    parents = MapElitesArchive(config.descriptors, seed=config.seed) if config.archive == "map-elites" else None
    strategy = kind(config.epochs, config.ideas_per_epoch, seed=config.seed, schedule=schedule, parents=parents)
    if config.islands > 1:
        return IslandStrategy(strategy, config.islands, config.migrate_every, config.migrants)
    return strategy


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
        self.info = store.run_info()["info"]
        self.data_dir: Path | None = None  # set by run(), or beforehand by a caller that prepared it
        self._baseline_retried = False  # by this controller: a resumed run retries once more
        self._diff_line_cache: dict[str, int] = {}  # by diff sha256: lines changed (archive descriptors)

    # ---- the loop -----------------------------------------------------------------

    def run(self) -> None:
        with controller_lock(self.store.run_dir):
            self._run()

    def _run(self) -> None:
        self.store.set_run_status("running", f"controller pid {os.getpid()} on {socket.gethostname()}")
        scheduler = Scheduler(
            self.store,
            self.parts.backend,
            self._spec,
            max_attempts=self.config.max_attempts,
            on_tick=self.on_change,
            repairable=self._repairable,
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
                    self.store.set_run_status("budget_exhausted", str(exc))
                raise
        except BudgetExceeded:
            raise  # already recorded
        except BaselineFailed as exc:
            self.store.set_run_status("baseline_failed", str(exc))
            raise
        except KeyboardInterrupt:
            scheduler.cancel_running("interrupted by the user")
            self.store.set_run_status("interrupted", "Ctrl+C")
            raise
        except BaseException as exc:
            self.store.set_run_status("failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.parts.backend.shutdown()
        self.store.set_run_status("finished")
        self.on_change()

    def _epochs(self, scheduler: Scheduler) -> None:
        """Epoch after epoch: propose, implement, then wait for the epoch's results (all of
        them, or a quorum plus the straggler deadline; stragglers are recorded later)."""
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
        busy = self._repair_failed() or busy
        results = self.store.count_results()
        if results != seen:
            busy = self._check_baseline(scheduler) or busy
            busy = self._queue_confirmations() or busy
        self._check_caps(scheduler)
        return busy, results

    def _wait(self, scheduler: Scheduler, settled: Callable[[], bool] | None = None) -> None:
        """Tick the scheduler until no job is left (or `settled()`), queueing confirmation
        re-runs as results arrive and stopping cleanly at a compute or time cap."""
        seen = -1
        while True:
            busy, seen = self._round(scheduler, seen)
            if not busy or (settled is not None and settled()):
                return
            scheduler.wait()

    def _epoch_settled(self, epoch: int) -> Callable[[], bool] | None:
        """With a quorum below 1: settled once that share of the epoch's ideas have results
        and either all have or `straggler_s` has passed since the quorum was reached."""
        if self.config.quorum >= 1.0:
            return None
        quorum_at: float | None = None
        seen, total, done = -1, 0, 0

        def settled() -> bool:
            nonlocal quorum_at, seen, total, done
            if self.store.count_results() != seen:  # recount only when a result arrived
                seen = self.store.count_results()
                ids = {i.id for i in self.store.ideas(epoch=epoch) if i.prompt_kind != PromptKind.CONFIRM}
                total, done = len(ids), len(ids & set(self.store.results()))
            if done < math.ceil(self.config.quorum * total):
                return False
            quorum_at = quorum_at or time.time()
            return done == total or time.time() - quorum_at >= self.config.straggler_s

        return settled

    def _check_caps(self, scheduler: Scheduler) -> None:
        if self.config.max_gpu_hours is None and self.config.max_hours is None:
            return
        cap = cap_reached(self.config, usage(self.store, self.profile.resources.gpus))
        if cap is not None:
            scheduler.cancel_running(f"stopped at a cap: {cap}")  # re-queued: resume runs them
            self.store.set_run_status("budget_exhausted", str(cap))
            raise cap

    def history(self) -> SearchHistory:
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
        floor = load_noise_floor(self.info["environment"], self.info["profile"], self.profile.budget)
        noise_std = run_noise_std(baseline_values, (floor or {}).get("std"))
        return SearchHistory(
            metric=self.env.manifest.metric,
            baseline=results.get(BASELINE_ID),
            scored=scored,
            proposed=ideas,
            replicates=replicates,
            baseline_values=baseline_values,
            noise_std=noise_std,
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

    def _queue_confirmations(self) -> bool:
        """Noise-aware selection: the `confirm_top` best ideas that beat the baseline are
        re-run with `confirm_seeds` fresh seeds (the baseline's seeds, for a paired
        comparison) before they may enter the exploit pool. True when jobs were queued."""
        if self.config.confirm_seeds == 0:
            return False
        history = self.history()
        if history.baseline_mean is None:
            return False
        started = {i.parents[0] for i in self.store.ideas() if i.prompt_kind == PromptKind.CONFIRM}
        top = [s for s in history.ranked() if history.gain(s) > 0][: self.config.confirm_top]
        new = [
            Idea(
                id=f"{s.idea.id}-seed{seed}",
                epoch=s.idea.epoch,
                index=1000 + 100 * s.idea.index + k,
                title=f"{s.idea.title} (seed {seed})",
                text=f"A re-run of {s.idea.id} with seed {seed}, to tell its gain from noise.",
                category=s.idea.category,
                prompt_kind=PromptKind.CONFIRM,
                origin="confirmation",
                parents=[s.idea.id],
                payload={"seed": seed},
            )
            for s in top
            if s.idea.id not in started
            for k, seed in enumerate(range(self.config.seed + 1, self.config.seed + 1 + self.config.confirm_seeds))
        ]
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
            seeds = [self.config.seed + k for k in range(self.config.baseline_seeds)]
            self.store.add_epoch(
                0,
                [
                    Idea(
                        id=BASELINE_ID if k == 0 else f"{BASELINE_ID}-seed{seed}",
                        epoch=0,
                        index=k,
                        title="Baseline (unmodified codebase)" + (f", seed {seed}" if k else ""),
                        text="The environment's baseline, run as it is: the reference every idea is measured against.",
                        category="baseline",
                        prompt_kind=PromptKind.BASELINE,
                        origin="environment",
                        payload={"seed": seed},
                    )
                    for k, seed in enumerate(seeds)
                ],
            )
        self._implement_pending()

    def _check_baseline(self, scheduler: Scheduler) -> bool:
        """Every idea is measured against the baseline: a baseline that failed runs once more
        (the reason is logged; a slow start-up on a busy machine is the usual one), and failing
        again stops the run, its running jobs back in the queue. A resumed run gives a failed
        baseline its second chance again. True when the baseline was queued again."""
        result = self.store.results().get(BASELINE_ID)
        if result is None or result.valid:
            return False
        reason = f"{result.failure}: {_first_line(result.detail)}"
        job_id = f"job-{BASELINE_ID}"
        if not self._baseline_retried:
            self._baseline_retried = True
            log.warning("the baseline failed (%s); running it once more", reason)
            self.store.retry_job(job_id, f"baseline retried once after it failed ({reason})")
            return True
        scheduler.cancel_running("the baseline failed twice: the run stops")  # re-queued: resume runs them
        job = self.store.job(job_id)
        log_path = self.store.run_dir / job.job_dir / "job.log" if job.job_dir else self.store.run_dir
        advice = (
            "the job ran out of time: on a slow or busy machine give the profile a larger kill_limit_s "
            "(compute budgets) or grace_s (time budgets), or run where fewer processes compete"
            if result.failure == FailureCategory.TIMED_OUT
            else "the unmodified codebase does not run here: fix the environment (see the log)"
        )
        raise BaselineFailed(
            f"the baseline failed twice ({reason}); every idea is measured against it, so the run stops. "
            f"Job log: {log_path}. What to do: {advice}; then `groundwork resume {self.store.run_dir}` "
            "runs the baseline again"
        )

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
                drafted = self._drafted(epoch, len(drafts), request.kind, made)
                history = replace(history, proposed=[*history.proposed, *drafted])
            drafts += [(request.kind, d) for d in made]
        ideas = [
            self._idea(d, kind, epoch, index, f"e{epoch}-{index:02d}")
            for index, (kind, d) in enumerate(drafts, start=1)
        ]
        self.store.add_epoch(epoch, ideas)
        self.on_change()
        return len(ideas)

    def _drafted(self, epoch: int, start: int, kind: PromptKind, drafts: list[IdeaDraft]) -> list[Idea]:
        """Drafts of this proposal as provisional ideas (never stored under these ids)."""
        return [
            self._idea(d, kind, epoch, start + k, f"draft-e{epoch}-{start + k}", thinking=False)
            for k, d in enumerate(drafts, start=1)
        ]

    def _idea(self, d: IdeaDraft, kind: PromptKind, epoch: int, index: int, idea_id: str, thinking=True) -> Idea:
        return Idea(
            id=idea_id,
            epoch=epoch,
            index=index,
            title=d.title,
            text=d.text,
            category=d.category,
            prompt_kind=kind,
            origin=d.payload.get("origin", self.parts.ideator.label),  # a portfolio names the model
            parents=d.parents,
            thinking=d.thinking if thinking else "",
            payload=d.payload,
        )

    def _implement_pending(self, scheduler: Scheduler | None = None) -> None:
        """Implement every proposed idea, queueing a job for each that applies. With
        `scheduler`, each job is dispatched as soon as it is queued, while the epoch's
        other ideas are still being implemented."""
        pending = self.store.ideas(state=IdeaState.PROPOSED)
        for idea in [i for i in pending if i.prompt_kind == PromptKind.BASELINE]:
            attempts = [PatchAttempt(diff="", applied=True, codebase_hash=self.info["baseline_hash"])]
            self._record_attempts(idea, attempts, "none (baseline)")
        for idea in [i for i in pending if i.prompt_kind == PromptKind.CONFIRM]:
            self._queue_replicate(idea)
        ideas = [i for i in pending if i.prompt_kind not in NOT_SEARCHED]
        if not ideas:
            return
        implementer = self.parts.implementer
        # Implementations run in threads (model calls wait on the network); their records
        # are written here, one idea at a time, as each finishes.
        with ThreadPoolExecutor(max_workers=self.parts.implementation_workers) as pool:
            futures = {pool.submit(implementer.implement, idea, self.env.codebase_dir): idea for idea in ideas}
            failure: BaseException | None = None
            for future in as_completed(futures):
                try:
                    attempts = future.result()
                except BaseException as exc:  # keep what the others finished; raise the first failure
                    failure = failure or exc
                    continue
                self._record_attempts(futures[future], attempts, implementer.label)
                if scheduler is not None:
                    scheduler.tick()  # start its job now (a slot may be free); results are recorded too
                self.on_change()
            if failure is not None:
                raise failure

    def _record_attempts(self, idea: Idea, attempts: list[PatchAttempt], implementer: str) -> None:
        patches = self._patches(idea, attempts, implementer)
        applied = [p for p in patches if p.status == PatchStatus.APPLIED]
        if applied:
            resources = self.profile.resources.model_dump()
            job = Job(
                id=f"job-{idea.id}",
                idea_id=idea.id,
                patch_id=applied[0].id,
                backend=self.parts.backend.name,
                resources=resources,
                seed=idea.payload.get("seed") if idea.prompt_kind == PromptKind.BASELINE else None,
            )
            self.store.record_implementation(idea.id, patches, job, None)
        else:
            reason = patches[-1].error if patches else "the implementer produced no patch"
            failure = Result(idea_id=idea.id, failure=FailureCategory.PATCH_FAILED, detail=reason)
            self.store.record_implementation(idea.id, patches, None, failure)

    def _patches(
        self, idea: Idea, attempts: list[PatchAttempt], implementer: str, repair_round: int = 0
    ) -> list[Patch]:
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

    # ---- run-time repair --------------------------------------------------------------

    def _repairable(self, job: Job, outcome: JobOutcome) -> bool:
        """Whether a failed job's result waits for a repair round: a crash or missing metric
        of a searched idea whose patch a model wrote, with repair rounds left."""
        if not isinstance(self.parts.implementer, Repairer) or job.repairs >= self.config.max_debug_rounds:
            return False
        if not repairable(outcome):
            return False
        idea = self.store.idea(job.idea_id)
        return idea.prompt_kind not in NOT_SEARCHED

    def _repair_failed(self) -> bool:
        """Ask the implementer to correct each patch whose run failed and waits for a repair;
        queue the corrected patch as the job's next attempt, or end the idea with its failed
        result. True when a job was queued."""
        held = self.store.jobs_awaiting_repair()
        if not held:
            return False
        queued = False
        # Model calls run in threads; each idea's records are written here as it finishes.
        with ThreadPoolExecutor(max_workers=self.parts.implementation_workers) as pool:
            futures = {pool.submit(self._repair_attempts, *self._failed_run(job)): job for job in held}
            failure: BaseException | None = None
            for future in as_completed(futures):
                job = futures[future]
                try:
                    attempts, why_not = future.result()
                except BaseException as exc:  # keep what the others finished; raise the first failure
                    failure = failure or exc
                    continue
                queued = self._record_repair(job, attempts, why_not) or queued
                self.on_change()
            if failure is not None:
                raise failure
        return queued

    def _failed_run(self, job: Job) -> tuple[Idea, FailedRun]:
        """What a repair of a held job is shown (read here: the store serves this thread)."""
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
            return self.parts.implementer.repair(idea, self.env.codebase_dir, failed), ""
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

    def _record_repair(self, job: Job, attempts: list[PatchAttempt], why_not: str) -> bool:
        idea = self.store.idea(job.idea_id)
        patches = self._patches(idea, attempts, self.parts.implementer.label, repair_round=job.repairs + 1)
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

    def _queue_replicate(self, idea: Idea) -> None:
        """A confirmation re-runs its parent's applied patch with its own seed."""
        # The patch its parent's job ran: after a repair round, the corrected one.
        parent = next(p for p in reversed(self.store.patches(idea.parents[0])) if p.status == PatchStatus.APPLIED)
        job = Job(
            id=f"job-{idea.id}",
            idea_id=idea.id,
            patch_id=parent.id,
            backend=self.parts.backend.name,
            resources=self.profile.resources.model_dump(),
            seed=idea.payload["seed"],
        )
        self.store.record_implementation(idea.id, [], job, None)

    def _abort_rule(self, job: Job) -> dict | None:
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

    def _spec(self, job: Job) -> JobSpec:
        patch = next(p for p in self.store.patches() if p.id == job.patch_id)  # a confirmation's is its parent's
        run_dir = self.store.run_dir.resolve()
        plan = self.parts.slot_plan
        assert job.slot is not None and self.data_dir is not None
        return environment_job_spec(
            self.env,
            self.profile,
            self.data_dir,
            run_dir / job.job_dir,
            job_id=job.id,
            attempt=job.attempt,
            seed=self.config.seed if job.seed is None else job.seed,
            diff_path=str(run_dir / patch.diff_path) if self.artifacts.get_text(patch.diff_path) else "",
            codebase_hash=patch.codebase_hash,
            locked_hashes=self.info["locked_hashes"],
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
            abort_rule=self._abort_rule(job),
            preflight=self._preflight_profile(job),
        )

    def _preflight_profile(self, job: Job):
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
