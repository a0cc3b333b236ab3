"""Typed run configuration: what the user asked for, stored with the run so that
`resume` continues with exactly the same settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from groundwork.search.archive import check_descriptors


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str = "nanogpt"
    profile: str | None = None  # None: the environment's default profile
    search: Literal["evolution", "steady-state", "best-of-n"] = "evolution"
    backend: Literal["local", "ray", "slurm"] = "local"
    address: str | None = None  # Ray: "auto", "ray://HOST:10001", ...; None starts a local cluster
    artifacts_url: str | None = None  # fsspec URL workers reach (s3://..., /shared/...); None: the run folder
    slurm_partition: str | None = None
    slurm_account: str | None = None
    sandbox: Literal["auto", "required", "off"] = "auto"  # bubblewrap for model-written code
    # Per job, resident, its whole process tree; 0: no limit; None: the profile's
    # resources.memory_mb, else 80% of the machine's memory split over the local slots.
    memory_limit_mb: float | None = Field(default=None, ge=0)
    log_limit_mb: float = Field(default=50, gt=0)  # job.log per phase; output past it is dropped
    lease_s: float = Field(default=120, gt=0)  # remote backends: silence after which a job is lost
    # Who writes ideas and diffs: "catalog" (offline, no LLM), "anthropic:MODEL",
    # "openai:MODEL", "openai-compatible:MODEL@BASE_URL" or "replay:RUN|FILE|NAME".
    ideator_llm: str = "catalog"
    implementer_llm: str | None = None  # None: the same as the ideator
    # Two or more specs: a portfolio, one model chosen per proposal by a bandit (llm/portfolio.py);
    # ideator_llm / implementer_llm then hold the first. Empty: the one model above.
    ideator_llms: list[str] = Field(default_factory=list)
    implementer_llms: list[str] = Field(default_factory=list)
    portfolio_floor: float = Field(default=0.1, ge=0, lt=1)  # least share of proposals per model
    max_dollars: float | None = Field(default=None, ge=0)  # hard cap on LLM spend
    max_revisions: int = Field(default=2, ge=0)  # implementer self-revisions after a failed patch
    max_debug_rounds: int = Field(default=2, ge=0)  # repairs of a model's patch whose run crashed
    edit_format: Literal["diff", "search_replace"] = "diff"
    thinking_budget: int | None = Field(default=None, ge=1024)  # Anthropic extended thinking
    reasoning_effort: Literal["low", "medium", "high"] | None = None  # OpenAI reasoning models
    llm_concurrency: int = Field(default=8, ge=1)
    prompts_dir: str | None = None  # folder of templates overriding the built-in ones
    epochs: int = Field(default=2, ge=0)  # 0: the baseline only (e.g. to measure its noise)
    baseline_seeds: int = Field(default=1, ge=1)  # baseline runs with different seeds: the noise floor
    ideas_per_epoch: int = Field(default=4, ge=1)
    slots: int = Field(default=2, ge=1)
    seed: int = 0
    # What paces training: "time" (seconds, the paper's rule) or "compute" (the profile's tokens or
    # steps, the same on any machine); None: the profile's own. A time_budget_s makes it "time".
    budget: Literal["time", "compute"] | None = None
    time_budget_s: float | None = Field(default=None, gt=0)  # override the profile's time budget
    max_attempts: int = Field(default=3, ge=1)  # tries for a job whose worker is lost
    # Search (search/): exploit share = min(start + step * floor(epoch / every), max), the paper's by default.
    exploit_start: float = Field(default=0.5, ge=0, le=1)
    exploit_step: float = 0.1
    exploit_every: int = Field(default=2, ge=1)
    exploit_max: float = Field(default=0.8, ge=0, le=1)
    # Islands (search/islands.py): sub-populations with their own exploit pools; every
    # migrate_every epochs the best `migrants` of each join the next island (a ring).
    islands: int = Field(default=1, ge=1)
    migrate_every: int = Field(default=2, ge=1)
    migrants: int = Field(default=1, ge=1)
    # A MAP-Elites archive (search/archive.py): exploit parents drawn one per cell of these descriptors.
    archive: Literal["none", "map-elites"] = "none"
    descriptors: list[str] = Field(default_factory=lambda: ["category", "diff_size"])
    # An epoch ends when this share of its ideas have results, plus at most straggler_s
    # seconds for the rest (which keep running and are recorded when they end).
    quorum: float = Field(default=1.0, gt=0, le=1)
    straggler_s: float = Field(default=0.0, ge=0)
    # Noise-aware selection: the confirm_top best ideas are re-run with confirm_seeds fresh
    # seeds before they enter the exploit pool (0: off).
    confirm_seeds: int = Field(default=0, ge=0)
    confirm_top: int = Field(default=2, ge=1)
    # Joint budget, next to max_dollars: device-hours of jobs (GPU-hours; a CPU-only job
    # counts one device) and the controller's wall-clock hours, summed over resumes.
    max_gpu_hours: float | None = Field(default=None, gt=0)
    max_hours: float | None = Field(default=None, gt=0)
    # Near-duplicate model-written ideas are dropped before implementation: by text
    # similarity, or by sentence embeddings (the optional `novelty` extra; "auto": if installed).
    novelty: Literal["text", "embedding", "auto"] = "text"
    # Early abort (execution/early_abort.py): an idea's job whose training curve trails the
    # baseline's mean by more than abort_k sd of the baseline seeds (after abort_warmup of the
    # baseline's compute, abort_patience logged points in a row) is stopped. Needs the
    # baseline's spread: baseline_seeds >= 2.
    early_abort: bool = False
    abort_k: float = Field(default=3.0, gt=0)
    abort_warmup: float = Field(default=0.3, ge=0, le=1)
    abort_patience: int = Field(default=2, ge=1)
    # Pre-flight of each idea's job at the manifest's `preflight` profile: None: as the
    # manifest says; False: off; True: on (the manifest must name a profile).
    preflight: bool | None = None

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
