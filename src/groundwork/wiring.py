"""The concrete parts of a run, wired from its configuration: ideator, implementer,
search strategy, backend and slot plan (a model portfolio where several models are named)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from groundwork.config import RunConfig
from groundwork.environments import Environment
from groundwork.environments.registry import ResolvedProfile
from groundwork.execution.backends import make_backend
from groundwork.execution.resources import SlotPlan, plan_slots
from groundwork.ideation.catalog import CatalogIdeator
from groundwork.ideation.llm_ideator import LLMIdeator
from groundwork.ideation.novelty import make_novelty
from groundwork.implementation.catalog_implementer import CatalogImplementer
from groundwork.implementation.llm_implementer import LLMImplementer
from groundwork.llm.factory import make_llm
from groundwork.llm.portfolio import Portfolio, PortfolioIdeator, PortfolioImplementer
from groundwork.llm.pricing import PriceTable
from groundwork.llm.recording import RecordingLLM
from groundwork.noise_floor import load_noise_floor
from groundwork.patch.patching import PatchPolicy
from groundwork.prompting import PromptLibrary
from groundwork.protocols import Backend, Ideator, Implementer, SearchStrategy
from groundwork.search.archive import MapElitesArchive
from groundwork.search.evolution import BestOfNStrategy, EvolutionStrategy, ExploitSchedule, SteadyStateStrategy
from groundwork.search.islands import IslandStrategy


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
