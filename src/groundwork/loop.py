"""The research loop: propose, implement, execute, learn; epoch after epoch.

Every step reads what to do from the run store and writes what it did before moving on,
so `run` and `resume` are the same code: resuming a run killed at any point re-enters
the loop, adopts jobs still running, and skips whatever is already recorded.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from groundwork.config import RunConfig
from groundwork.environments import Environment
from groundwork.environments.registry import ResolvedProfile
from groundwork.execution.local import LocalBackend
from groundwork.execution.resources import SlotPlan, plan_slots
from groundwork.execution.scheduler import Scheduler
from groundwork.ideation.catalog import CatalogIdeator
from groundwork.ideation.llm_ideator import LLMIdeator
from groundwork.implementation.catalog_implementer import CatalogImplementer
from groundwork.implementation.llm_implementer import LLMImplementer
from groundwork.implementation.patching import PatchPolicy
from groundwork.llm.factory import make_llm
from groundwork.llm.pricing import PriceTable
from groundwork.llm.recording import BudgetExceeded, RecordingLLM
from groundwork.prompting import PromptLibrary
from groundwork.protocols import (
    Backend,
    IdeaDraft,
    Ideator,
    Implementer,
    JobSpec,
    PatchAttempt,
    Scored,
    SearchHistory,
    SearchStrategy,
)
from groundwork.records import FailureCategory, Idea, IdeaState, Job, Patch, PatchStatus, PromptKind, Result
from groundwork.runs import run_config, run_environment
from groundwork.search.evolution import BestOfNStrategy, EvolutionStrategy
from groundwork.store import ArtifactStore, RunStore

BASELINE_ID = "baseline"


class RunBusy(RuntimeError):
    pass


@contextmanager
def controller_lock(run_dir: Path) -> Iterator[None]:
    """One controller per run: a second `run`/`resume` of a live run is refused."""
    path = run_dir / "controller.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RunBusy(f"run {run_dir} is already being driven by {holder}; wait for it or stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        yield


@dataclass
class Components:
    ideator: Ideator
    implementer: Implementer
    strategy: SearchStrategy
    backend: Backend
    slot_plan: SlotPlan
    implementation_workers: int = 1  # ideas implemented at once (model calls run in parallel)


def build_components(env: Environment, profile: ResolvedProfile, config: RunConfig, run_dir: Path) -> Components:
    policy = PatchPolicy(protected=frozenset(env.manifest.files.locked) | frozenset(env.manifest.files.hidden))
    plan = plan_slots(config.slots, profile.resources.gpus)
    budget_s = config.time_budget_s or profile.time_budget_s
    prompts = PromptLibrary(Path(config.prompts_dir) if config.prompts_dir else None)
    prices = PriceTable.load()

    def model(spec: str, role: str) -> RecordingLLM:
        return RecordingLLM(make_llm(spec, role), run_dir, prices, config.max_dollars, config.llm_concurrency)

    thinking = {"thinking_budget": config.thinking_budget, "reasoning_effort": config.reasoning_effort}
    if config.ideator_llm == "catalog":
        ideator: Ideator = CatalogIdeator.from_file(env.catalog_path, seed=config.seed)
    else:
        ideator = LLMIdeator(model(config.ideator_llm, "ideator"), env, prompts, budget_s, **thinking)
    if config.implementer == "catalog":
        if config.ideator_llm != "catalog":
            raise ValueError(
                "catalog edits exist only for catalog ideas: give model-written ideas a model "
                "implementer (--implementer-llm PROVIDER:MODEL)"
            )
        implementer: Implementer = CatalogImplementer(policy)
    else:
        implementer = LLMImplementer(
            model(config.implementer, "implementer"),
            env,
            prompts,
            policy,
            budget_s,
            max_revisions=config.max_revisions,
            edit_format=config.edit_format,
            **thinking,
        )
    return Components(
        ideator=ideator,
        implementer=implementer,
        strategy=(EvolutionStrategy if config.search == "evolution" else BestOfNStrategy)(
            config.epochs, config.ideas_per_epoch, seed=config.seed
        ),
        backend=LocalBackend(plan.slots),
        slot_plan=plan,
        implementation_workers=1 if config.implementer == "catalog" else config.llm_concurrency,
    )


class ResearchLoop:
    def __init__(
        self, store: RunStore, components: Components | None = None, on_change: Callable[[], None] | None = None
    ):
        self.store = store
        self.config = run_config(store)
        self.env = run_environment(store)
        self.profile = self.env.profile(self.config.profile)
        self.parts = components or build_components(self.env, self.profile, self.config, store.run_dir)
        self.artifacts = ArtifactStore(store.run_dir)
        self.on_change = on_change or (lambda: None)
        self.info = store.run_info()["info"]
        self.data_dir: Path | None = None  # set by run(), or beforehand by a caller that prepared it

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
        )
        try:
            if self.data_dir is None:  # the CLI prepares visibly before it starts the loop
                self.data_dir = self.env.prepare(self.profile, quiet=True)
            scheduler.recover()
            self._ensure_baseline()
            scheduler.drain()
            for epoch in range(1, self.parts.strategy.epochs + 1):
                try:
                    if not self.store.epoch_proposed(epoch):
                        self._propose(epoch)
                    self._implement_pending()
                except BudgetExceeded as exc:
                    scheduler.drain()  # jobs already queued are paid for: let them finish
                    self.store.set_run_status("budget_exhausted", str(exc))
                    raise
                scheduler.drain()
        except BudgetExceeded:
            raise  # already recorded, after the queued jobs finished
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

    def history(self) -> SearchHistory:
        results = self.store.results()
        ideas = self.store.ideas()
        ideas = [i for i in ideas if i.prompt_kind != PromptKind.BASELINE]
        scored = [Scored(i, results[i.id]) for i in ideas if i.id in results]
        return SearchHistory(
            metric=self.env.manifest.metric,
            baseline=results.get(BASELINE_ID),
            scored=scored,
            proposed=ideas,
        )

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

    def _propose(self, epoch: int) -> None:
        history = self.history()
        drafts: list[tuple[PromptKind, IdeaDraft]] = []
        for request in self.parts.strategy.plan_epoch(epoch, history):
            drafts += [(request.kind, d) for d in self.parts.ideator.propose(request, history)]
        ideas = [
            Idea(
                id=f"e{epoch}-{index:02d}",
                epoch=epoch,
                index=index,
                title=d.title,
                text=d.text,
                category=d.category,
                prompt_kind=kind,
                origin=self.parts.ideator.label,
                parents=d.parents,
                thinking=d.thinking,
                payload=d.payload,
            )
            for index, (kind, d) in enumerate(drafts, start=1)
        ]
        self.store.add_epoch(epoch, ideas)
        self.on_change()

    def _implement_pending(self) -> None:
        pending = self.store.ideas(state=IdeaState.PROPOSED)
        for idea in [i for i in pending if i.prompt_kind == PromptKind.BASELINE]:
            attempts = [PatchAttempt(diff="", applied=True, codebase_hash=self.info["baseline_hash"])]
            self._record_attempts(idea, attempts, "none (baseline)")
        ideas = [i for i in pending if i.prompt_kind != PromptKind.BASELINE]
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
                self.on_change()
            if failure is not None:
                raise failure

    def _record_attempts(self, idea: Idea, attempts: list[PatchAttempt], implementer: str) -> None:
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
                    implementer=implementer,
                    status=PatchStatus.APPLIED if attempt.applied else PatchStatus.FAILED,
                    diff_path=rel,
                    diff_sha256=sha,
                    error=attempt.error,
                    files=attempt.files,
                    codebase_hash=attempt.codebase_hash,
                    model=attempt.model,
                    cost_usd=attempt.cost_usd,
                    tokens=attempt.tokens,
                )
            )
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

    def _spec(self, job: Job) -> JobSpec:
        patch = next(p for p in self.store.patches(job.idea_id) if p.id == job.patch_id)
        manifest = self.env.manifest
        run_dir = self.store.run_dir.resolve()
        plan = self.parts.slot_plan
        assert job.slot is not None and self.data_dir is not None
        return JobSpec(
            job_id=job.id,
            attempt=job.attempt,
            job_dir=str(run_dir / job.job_dir),
            baseline_dir=str(self.env.codebase_dir.resolve()),
            diff_path=str(run_dir / patch.diff_path) if self.artifacts.get_text(patch.diff_path) else "",
            codebase_hash=patch.codebase_hash,
            locked_hashes=self.info["locked_hashes"],
            train_command=manifest.run.train,
            eval_command=manifest.run.evaluate,
            time_budget_s=self.config.time_budget_s or self.profile.time_budget_s,
            grace_s=self.profile.grace_s,
            eval_timeout_s=self.profile.eval_timeout_s,
            env={
                **self.profile.env,
                **self.env.data_env(self.data_dir),  # the whole folder, and training's view of it
                "GROUNDWORK_SEED": str(self.config.seed if job.seed is None else job.seed),
            },
            metric_name=manifest.metric.name,
            result_file=manifest.metric.result_file,
            plausible_range=manifest.metric.plausible_range,
            slot=job.slot,
            threads=plan.threads,
            gpu_ids=plan.gpus.get(job.slot, []),
        )
