"""Typed run configuration: what the user asked for, stored with the run so that
`resume` continues with exactly the same settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from groundwork.descriptors import check_descriptors


class RunConfig(BaseModel):
    """Every field is a `groundwork run` option (cli_config.py): its description is the option's help."""

    model_config = ConfigDict(extra="forbid")

    environment: str = Field(
        default="nanogpt", description="Built-in environment name or folder with environment.toml."
    )
    profile: str | None = Field(default=None, description="Scale profile (default: the environment's).")
    search: Literal["evolution", "steady-state", "best-of-n"] = Field(
        default="evolution",
        description="evolution (epochs of exploit + explore), steady-state (evolution keeping every slot busy) "
        "or best-of-n (the control).",
    )
    backend: Literal["local", "ray", "slurm"] = Field(default="local", description="Where jobs run.")
    address: str | None = Field(
        default=None, description="Ray cluster: auto, ray://HOST:10001 (default: start a local one)."
    )
    artifacts_url: str | None = Field(
        default=None, description="fsspec URL workers can reach (s3://..., /shared/...); default: the run folder."
    )
    slurm_partition: str | None = Field(default=None, description="Slurm partition for jobs.")
    slurm_account: str | None = Field(default=None, description="Slurm account jobs are charged to.")
    sandbox: Literal["auto", "required", "off"] = Field(
        default="auto", description="Bubblewrap for model-written code: auto (where it runs), required, or off."
    )
    memory_limit_mb: float | None = Field(
        default=None,
        ge=0,
        description="Per job, resident, its whole process tree; 0: no limit. Default: the profile's "
        "resources.memory_mb, else 80% of this machine's memory split over the slots.",
    )
    log_limit_mb: float = Field(default=50, gt=0, description="A job's log per phase; output past it is dropped.")
    lease_s: float = Field(
        default=120,
        gt=0,
        description="Ray and Slurm: seconds of silence after which a job's worker counts as lost "
        "(waiting to start, in the queue or for room, is not silence).",
    )
    ideator_llm: str = Field(
        default="catalog",
        description="Ideas and diffs by: catalog (offline, no LLM), anthropic:MODEL, openai:MODEL, "
        "openai-compatible:MODEL@BASE_URL, replay:RUN|FILE|NAME.",
    )
    implementer_llm: str | None = Field(default=None, description="Model for diffs (default: the ideator's).")
    # Two or more specs: a portfolio, one model chosen per proposal by a bandit (llm/portfolio.py);
    # ideator_llm / implementer_llm then hold the first. Empty: the one model above.
    ideator_llms: list[str] = Field(
        default_factory=list,
        description="Model for ideas only (default: --llm). Repeat it for a portfolio: a bandit picks one per "
        "proposal.",
    )
    implementer_llms: list[str] = Field(
        default_factory=list,
        description="Model for diffs only (default: the ideator's first). Repeat it for a portfolio.",
    )
    portfolio_floor: float = Field(
        default=0.1, ge=0, lt=1, description="Least share of the proposals each portfolio model gets."
    )
    max_dollars: float | None = Field(default=None, ge=0, description="Stop cleanly when LLM spend reaches this.")
    max_revisions: int = Field(default=2, ge=0, description="Self-revisions after a patch fails.")
    max_debug_rounds: int = Field(
        default=2, ge=0, description="Repairs of a model's patch whose run crashed (0: none)."
    )
    edit_format: Literal["diff", "search_replace"] = Field(default="diff", description="Implementer output.")
    thinking_budget: int | None = Field(default=None, ge=1024, description="Anthropic extended thinking tokens.")
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        default=None, description="OpenAI reasoning effort."
    )
    llm_concurrency: int = Field(default=8, ge=1, description="Model calls in flight at once.")
    prompts_dir: str | None = Field(
        default=None, description="Folder of prompt templates overriding the built-in ones."
    )
    epochs: int = Field(
        default=2, ge=0, description="Epochs of ideas after the baseline (0: the baseline only, e.g. its noise)."
    )
    baseline_seeds: int = Field(default=1, ge=1, description="Baseline runs with different seeds (noise).")
    ideas_per_epoch: int = Field(default=4, ge=1, description="Ideas per epoch.")
    slots: int = Field(default=2, ge=1, description="Jobs run in parallel.")
    seed: int = Field(default=0, description="Seed for the search and for training.")
    budget: Literal["time", "compute"] | None = Field(
        default=None,
        description="What paces training: time (seconds, the paper's rule) or compute (the profile's tokens or "
        "steps, the same on any machine); default: the profile's.",
    )
    time_budget_s: float | None = Field(
        default=None, gt=0, description="Budget training by time, this many seconds (implies --budget time)."
    )
    max_attempts: int = Field(default=3, ge=1, description="Tries for a job whose worker is lost.")
    # Search (search/): exploit share = min(start + step * floor(epoch / every), max), the paper's by default.
    exploit_start: float = Field(default=0.5, ge=0, le=1, description="Exploit share of an epoch at epoch 0.")
    exploit_step: float = Field(default=0.1, description="Exploit share added every --exploit-every.")
    exploit_every: int = Field(default=2, ge=1, description="Epochs between exploit share steps.")
    exploit_max: float = Field(default=0.8, ge=0, le=1, description="Highest exploit share.")
    # Islands (search/islands.py): a ring, the best of each island joining the next.
    islands: int = Field(default=1, ge=1, description="Sub-populations, each with its own exploit pool.")
    migrate_every: int = Field(default=2, ge=1, description="Epochs between island migrations.")
    migrants: int = Field(default=1, ge=1, description="Best ideas of each island sent to the next one.")
    archive: Literal["none", "map-elites"] = Field(
        default="none", description="map-elites: draw exploit parents one per cell of --descriptors (none: off)."
    )
    descriptors: list[str] = Field(
        default_factory=lambda: ["category", "diff_size"],
        description="Archive cells, comma-separated: category, diff_size, kind.",
    )
    # Late results are not lost: ideas past the quorum keep running and are recorded when they end.
    quorum: float = Field(
        default=1.0, gt=0, le=1, description="An epoch ends when this share of its ideas have results (1: all)."
    )
    straggler_s: float = Field(
        default=0.0, ge=0, description="After the quorum, wait at most this long for the rest (they keep running)."
    )
    # Noise-aware selection: re-run before entering the exploit pool.
    confirm_seeds: int = Field(
        default=0, ge=0, description="Re-run the top ideas with this many fresh seeds before exploiting them."
    )
    confirm_top: int = Field(default=2, ge=1, description="How many of the best ideas are re-run.")
    # The joint budget, next to max_dollars; summed over resumes.
    max_gpu_hours: float | None = Field(
        default=None, gt=0, description="Stop cleanly at this many GPU-hours of jobs (CPU jobs: one device each)."
    )
    max_hours: float | None = Field(default=None, gt=0, description="Stop cleanly after this many hours of wall time.")
    novelty: Literal["text", "embedding", "auto"] = Field(
        default="text",
        description="Drop near-duplicate model ideas by text similarity, sentence embeddings (the novelty extra) "
        "or auto (embeddings if installed).",
    )
    # Early abort (execution/early_abort.py) needs the baseline's spread: baseline_seeds >= 2.
    early_abort: bool = Field(
        default=False,
        description="Stop jobs whose training curve trails the baseline's (needs --baseline-seeds 2+).",
    )
    abort_k: float = Field(default=3.0, gt=0, description="Early abort: baseline sd a curve may trail by.")
    abort_warmup: float = Field(
        default=0.3, ge=0, le=1, description="Early abort: share of the baseline's compute before any verdict."
    )
    abort_patience: int = Field(
        default=2, ge=1, description="Early abort: trailing logged points in a row that stop a job."
    )
    preflight: bool | None = Field(
        default=None,
        description="Run each idea first at the manifest's pre-flight profile (default: as the manifest says; "
        "on needs the manifest to name one).",
    )

    @model_validator(mode="before")
    @classmethod
    def _portfolio_leads(cls, data: Any) -> Any:
        # A portfolio given alone (e.g. in a --config file) leads with its first model.
        if isinstance(data, dict):
            for single, many in (("ideator_llm", "ideator_llms"), ("implementer_llm", "implementer_llms")):
                if data.get(many) and data.get(single) is None:
                    data = {**data, single: data[many][0]}
        return data

    @model_validator(mode="after")
    def _abort_needs_spread(self) -> RunConfig:
        if self.early_abort and self.baseline_seeds < 2:
            raise ValueError(
                f"--early-abort compares each job with the spread of the baseline's curves over seeds: "
                f"it needs --baseline-seeds 2 or more (got {self.baseline_seeds})"
            )
        return self

    @model_validator(mode="after")
    def _one_budget(self) -> RunConfig:
        if self.budget == "compute" and self.time_budget_s is not None:
            raise ValueError(
                f"--time-budget {self.time_budget_s:g} asks for a time budget, --budget compute for a compute "
                "budget: give one of the two"
            )
        return self

    @model_validator(mode="after")
    def _structured_search(self) -> RunConfig:
        self.descriptors = check_descriptors(self.descriptors)
        if self.search == "best-of-n" and (self.islands > 1 or self.archive != "none"):
            raise ValueError(
                f"best-of-n search never exploits, so --islands {self.islands} / --archive {self.archive} would do "
                "nothing: use --search evolution or steady-state"
            )
        return self

    @model_validator(mode="after")
    def _portfolios(self) -> RunConfig:
        for flag, specs in (("--ideator-llm", self.ideator_llms), ("--implementer-llm", self.implementer_llms)):
            if not specs:
                continue
            if len(set(specs)) != len(specs) or len(specs) < 2:
                raise ValueError(f"{flag} given {specs}: a portfolio needs two or more different models")
            if any(s == "catalog" or s.startswith("rl:") for s in specs):
                raise ValueError(f"{flag} {specs}: a portfolio is of model specs (catalog is not a model)")
            if self.portfolio_floor * len(specs) > 1:
                raise ValueError(
                    f"--portfolio-floor {self.portfolio_floor:g} for {len(specs)} models asks for more than every "
                    f"proposal: give at most {1 / len(specs):.3g}"
                )
        if self.ideator_llms and self.ideator_llm != self.ideator_llms[0]:
            raise ValueError(f"ideator_llm {self.ideator_llm!r} must be the first of ideator_llms {self.ideator_llms}")
        if self.implementer_llms and self.implementer != self.implementer_llms[0]:
            raise ValueError(
                f"implementer_llm {self.implementer_llm!r} must be the first of "
                f"implementer_llms {self.implementer_llms}"
            )
        return self

    @property
    def ideator_models(self) -> list[str]:
        return self.ideator_llms or [self.ideator_llm]

    @property
    def implementer_models(self) -> list[str]:
        return self.implementer_llms or [self.implementer]

    @property
    def implementer(self) -> str:
        return self.implementer_llm or self.ideator_llm

    @property
    def calls_models(self) -> bool:
        """Whether ideas or diffs come from model calls (an API, a local server, a replay):
        not from the offline catalog, the knob implementer or an RL run's own policy."""
        offline = ("catalog", "knobs")
        return any(
            s not in offline and not s.startswith("rl:") for s in [*self.ideator_models, *self.implementer_models]
        )
