"""An RL run: a run folder like any other (same store, environment snapshot, implementer,
backend and scheduler, driven by the same `ResearchLoop`), whose ideator and search
strategy are the learning policy. `rl/config.json` in the run folder holds the RL
settings, `rl/checkpoints/` the policy, the `rl_steps` table the per-step figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from groundwork.config import RunConfig
from groundwork.environments import Environment
from groundwork.environments.registry import ResolvedProfile
from groundwork.execution.local import LocalBackend
from groundwork.execution.resources import plan_slots
from groundwork.implementation.knob_implementer import KnobImplementer
from groundwork.loop import ResearchLoop
from groundwork.patch.patching import PatchPolicy
from groundwork.prompting import PromptLibrary
from groundwork.protocols import Implementer
from groundwork.rl.config import RLConfig, load_rl_config, save_rl_config
from groundwork.rl.ideator import RLIdeator
from groundwork.runs import create_run, run_config, run_environment
from groundwork.store import RunStore
from groundwork.wiring import Components

KNOBS = "knobs"


def create_rl_run(config: RunConfig, rl: RLConfig, runs_dir: Path, name: str | None = None) -> RunStore:
    if config.implementer in ("catalog", "") or config.implementer.startswith("rl:"):
        raise ValueError(
            f"implementer {config.implementer!r} cannot implement model-written ideas: use --implementer knobs "
            "(hyperparameter ideas, no LLM) or a model (anthropic:MODEL, openai:MODEL, ...)"
        )
    if config.implementer != KNOBS:
        from groundwork.llm.factory import check_spec

        check_spec(config.implementer, "--implementer")  # a bad spec or missing key: no run folder
    store = create_run(config.model_copy(update={"epochs": rl.steps}), runs_dir, name)
    save_rl_config(store.run_dir, rl)
    return store


def make_implementer(env: Environment, profile: ResolvedProfile, config: RunConfig, run_dir: Path) -> Implementer:
    policy = PatchPolicy.from_files(env.manifest.files)
    if config.implementer == KNOBS:
        return KnobImplementer(policy, env.manifest.files.editable, scale=profile.env.get("GROUNDWORK_SCALE"))
    from groundwork.implementation.llm_implementer import LLMImplementer
    from groundwork.llm.factory import make_llm
    from groundwork.llm.pricing import PriceTable
    from groundwork.llm.recording import RecordingLLM

    llm = RecordingLLM(
        make_llm(config.implementer, "implementer"),
        run_dir,
        PriceTable.load(),
        config.max_dollars,
        config.llm_concurrency,
    )
    return LLMImplementer(
        llm,
        env,
        PromptLibrary(Path(config.prompts_dir) if config.prompts_dir else None),
        policy,
        profile.with_budget(config.budget, config.time_budget_s).prompt_budget(),
        max_revisions=config.max_revisions,
        edit_format=config.edit_format,
    )


class RLTrainer:
    def __init__(self, store: RunStore, on_change: Callable[[], None] | None = None):
        self.store = store
        self.config = run_config(store)
        self.rl = load_rl_config(store.run_dir)
        env = run_environment(store)
        profile = env.profile(self.config.profile).with_budget(self.config.budget, self.config.time_budget_s)
        plan = plan_slots(self.config.slots, profile.resources.gpus)
        prompts = PromptLibrary(Path(self.config.prompts_dir) if self.config.prompts_dir else None)
        self.ideator = RLIdeator(self.rl, env, profile.prompt_budget(), store.run_dir, prompts)
        components = Components(
            ideator=self.ideator,
            implementer=make_implementer(env, profile, self.config, store.run_dir),
            strategy=self.ideator,
            backend=LocalBackend(plan.slots),
            slot_plan=plan,
            implementation_workers=1 if self.config.implementer == KNOBS else self.config.llm_concurrency,
        )
        self.loop = ResearchLoop(store, components, on_change)

    @property
    def done(self) -> bool:
        return self.ideator.learned_step >= self.rl.steps

    def run(self, data_dir: Path | None = None) -> None:
        """Run (or resume) to the end: every step sampled, executed and learned."""
        self.loop.data_dir = data_dir
        self.loop.run()  # steps 1..N, learning from step s-1 before sampling step s
        self.ideator.finish(self.loop.history())  # and from the last step
