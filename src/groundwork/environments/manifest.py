"""The environment manifest (`environment.toml`): what the ideator is told, what may be
edited, what is locked, how to run and evaluate, and the scale profiles.

Validation errors name the key, the offending value and what is allowed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from groundwork.environments import placeholders
from groundwork.redaction import is_secret_name

MANIFEST_NAME = "environment.toml"


class ManifestError(ValueError):
    """A manifest that cannot be used, with every problem found in it."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid environment manifest {self.path}:\n{lines}")


def _wants_number(annotation: Any) -> bool:
    return annotation in (int, float) or any(_wants_number(arg) for arg in get_args(annotation))


def _bool_places(value: Any, where: str = "") -> list[str]:
    """Where in a value true/false stands (`tokens`, `[1]`; "" for the value itself)."""
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _bool_places(v, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _bool_places(v, f"{where}.{k}" if where else str(k))]
    return [where] if isinstance(value, bool) else []


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1: a number written as true/false is a mistake, not a 1 or 0
        places = _bool_places(value)
        if info.field_name and _wants_number(cls.model_fields[info.field_name].annotation) and places:
            named = ", ".join(p for p in places if p)
            raise ValueError("a number is expected, not true/false" + (f" (at {named})" if named else ""))
        return value


class Objective(_Strict):
    """A metric's name and the direction that is better: every comparison of metric values
    goes through these methods, never through the direction's string."""

    name: str = Field(min_length=1)
    direction: Literal["minimize", "maximize"]

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "minimize"

    @property
    def sense(self) -> str:
        return "lower is better" if self.lower_is_better else "higher is better"

    def better(self, a: float, b: float) -> bool:
        """True when metric value `a` is strictly better than `b`."""
        return a < b if self.lower_is_better else a > b

    def signed_gain(self, value: float, baseline: float) -> float:
        """How much better `value` is than `baseline` (positive is better, in metric units)."""
        return baseline - value if self.lower_is_better else value - baseline

    def rank_key(self, value: float) -> float:
        """A sort key that puts the best value first."""
        return value if self.lower_is_better else -value

    def best(self, values: Iterable[float]) -> float:
        return min(values) if self.lower_is_better else max(values)


class Metric(Objective):
    """An environment's metric: its objective, the file it is read from, the values that are plausible."""

    plausible_range: tuple[float, float]
    result_file: str = "result.json"
    unit: str = ""

    @field_validator("plausible_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"low must be below high, got [{v[0]}, {v[1]}]")
        return v

    def plausible(self, value: float) -> bool:
        return self.plausible_range[0] <= value <= self.plausible_range[1]


def _inside_codebase(name: str) -> str:
    if not name or name.startswith("/") or ".." in Path(name).parts:
        raise ValueError(f"file paths are relative to the codebase (no leading '/', no '..'), got {name!r}")
    return name


# Each entry is checked on its own, so every bad one of a list is reported.
CodebasePath = Annotated[str, AfterValidator(_inside_codebase)]


class Files(_Strict):
    editable: list[CodebasePath] = Field(min_length=1)
    hidden: list[CodebasePath] = Field(default_factory=list)
    locked: list[CodebasePath] = Field(default_factory=list)
    # Glob patterns (fnmatch: '*' crosses folders) of the new files a patch may create;
    # start-up hooks and names that shadow imports are refused whatever they say.
    allow_new: list[CodebasePath] = Field(default_factory=list)
    allow_delete: StrictBool = False  # whether a patch may delete (or rename away) an editable file

    @model_validator(mode="after")
    def _disjoint(self) -> Files:
        both = sorted(set(self.editable) & (set(self.locked) | set(self.hidden)))
        if both:
            raise ValueError(f"files cannot be editable and hidden/locked at once: {both}")
        return self


class RunCommands(_Strict):
    train: list[str] = Field(min_length=1)
    evaluate: list[str] = Field(min_length=1)
    prepare: list[str] = Field(default_factory=list)
    grace_s: float = Field(default=20.0, ge=0)
    eval_timeout_s: float = Field(default=300.0, gt=0)
    # Names of the controller's environment variables jobs get besides the built-in allow-list
    # (never a secret: *_API_KEY, *_TOKEN, *SECRET*, *PASSWORD* are refused).
    pass_env: list[str] = Field(default_factory=list)
    # The profile an idea's patched codebase runs at first, seconds long, before its full job
    # (execution/runner.py); False or absent: no pre-flight. A profile may override it.
    preflight: str | Literal[False] | None = None

    @field_validator("*")
    @classmethod
    def _known_placeholders(cls, v: Any, info: ValidationInfo) -> Any:
        # Every command (any list of arguments but pass_env) is checked, new ones included.
        if (
            info.field_name not in ("pass_env", "preflight")
            and isinstance(v, list)
            and all(isinstance(a, str) for a in v)
        ):
            problems = placeholders.unknown(info.field_name or "", v)
            if problems:
                raise ValueError("; ".join(problems))
        return v

    @field_validator("pass_env")
    @classmethod
    def _no_secrets(cls, v: list[str]) -> list[str]:
        bad = [name for name in v if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
        if bad:
            raise ValueError(f"pass_env holds variable names, got {bad}")
        secret = [name for name in v if is_secret_name(name)]
        if secret:
            raise ValueError(
                f"pass_env names secret-looking variables {secret}: jobs never get API keys, tokens or "
                "passwords (model-written code could print them into the log); remove them"
            )
        return v


def _plain_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"training files are names (or glob patterns) in the data folder, got {name!r}")
    return name


DataName = Annotated[str, AfterValidator(_plain_name)]


class Data(_Strict):
    """Which files of the prepared data folder the training phase may see. Training gets a
    folder holding only the files these names or glob patterns match (hard links); the
    evaluation gets the whole prepared folder."""

    training_files: list[DataName] | None = Field(default=None, min_length=1)  # None: the whole folder


class Dependencies(_Strict):
    """The environment's own requirements: its commands run with an isolated interpreter
    that has them (built once and cached; see `environments.interpreters`)."""

    requirements: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    requirements_file: CodebasePath | None = None  # in the codebase, e.g. "requirements.txt"
    find_links: list[CodebasePath] = Field(default_factory=list)  # folders of local wheels, beside the manifest
    no_index: StrictBool = False  # install only from find_links (offline machines)
    system_site_packages: StrictBool = False
    # Layer the requirements on the packages of the interpreter running Groundwork (a virtual
    # environment's too): what they already satisfy (torch) is not installed again.
    inherit_packages: StrictBool = False

    @model_validator(mode="after")
    def _something(self) -> Dependencies:
        if not self.requirements and self.requirements_file is None:
            raise ValueError(
                'name the requirements: requirements = ["pkg>=1"] or requirements_file = "requirements.txt"'
            )
        return self


class Resources(_Strict):
    gpus: int = Field(default=0, ge=0)
    cpus: int = Field(default=1, ge=1)
    memory_mb: int | None = Field(default=None, ge=1)  # a job's resident memory cap (None: a share of the machine)


Budget = Literal["time", "compute"]
COMPUTE_UNIT = r"^[a-z][a-z0-9_]*$"  # reaches the code as GROUNDWORK_COMPUTE_<UNIT>
ComputeAmounts = dict[Annotated[str, Field(pattern=COMPUTE_UNIT)], Annotated[int, Field(gt=0, strict=True)]]
KILL_LIMIT_FACTOR = 4  # a compute-budgeted job without kill_limit_s is killed after this many time budgets


class Profile(_Strict):
    """A scale of the environment. Besides budget, settings and resources, a profile may
    bring its own codebase, goal, file rules, training files and catalog (a GPU-scale task
    can need a different program than the CPU one); those it leaves out are the environment's.

    The budget paces training either by the clock (`time`: `time_budget_s` seconds, the
    paper's rule) or by compute (`compute`: the amounts in `compute_budget`, e.g. tokens
    or steps, whatever the machine's speed; the clock only kills a job past `kill_limit_s`).
    A profile with a `compute_budget` offers both; `budget` says which it uses by default."""

    description: str = ""
    budget: Budget = "time"
    time_budget_s: float = Field(gt=0)
    compute_budget: ComputeAmounts | None = None  # {tokens = 196608}: units of work and how many
    kill_limit_s: float | None = Field(default=None, gt=0)  # compute budgets: training's wall-clock limit
    codebase: str | None = None
    goal: str | None = Field(default=None, min_length=1)
    files: Files | None = None
    data: Data | None = None
    catalog: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources | None = None
    grace_s: float | None = Field(default=None, ge=0)
    eval_timeout_s: float | None = Field(default=None, gt=0)
    data_key: str = "default"  # profiles that share data share a prepared data folder
    preflight: str | Literal[False] | None = None  # None: [run] preflight

    @model_validator(mode="after")
    def _budget_complete(self) -> Profile:
        if self.budget == "compute" and not self.compute_budget:
            raise ValueError(
                'budget = "compute" needs the amount: add compute_budget = {UNIT = N, ...} '
                "(e.g. {tokens = 196608}; the code reads GROUNDWORK_COMPUTE_TOKENS)"
            )
        if self.kill_limit_s is not None and not self.compute_budget:
            raise ValueError(
                "kill_limit_s is the wall-clock limit of a compute-budgeted job; without compute_budget "
                "the job budgets by time_budget_s: remove kill_limit_s or add compute_budget"
            )
        return self

    @property
    def compute_kill_limit_s(self) -> float:
        """How long a compute-budgeted job's training may run before it is killed."""
        return self.kill_limit_s if self.kill_limit_s is not None else KILL_LIMIT_FACTOR * self.time_budget_s


class Manifest(_Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    goal: str = Field(min_length=1)
    codebase: str = "baseline"
    catalog: str = "catalog.toml"  # the offline catalog ideator's ideas, beside the manifest
    default_profile: str
    metric: Metric
    files: Files
    run: RunCommands
    resources: Resources = Resources()
    data: Data = Data()
    dependencies: Dependencies | None = None  # None: commands run with Groundwork's interpreter
    profiles: dict[str, Profile] = Field(min_length=1)

    def for_profile(self, name: str) -> Manifest:
        """This manifest as the profile `name` sees it: its overrides of codebase, goal, files,
        data and catalog applied, and `name` as the default profile."""
        p = self.profiles[name]
        overrides = {"codebase": p.codebase, "goal": p.goal, "files": p.files, "data": p.data, "catalog": p.catalog}
        return self.model_copy(
            update={"default_profile": name, **{k: v for k, v in overrides.items() if v is not None}}
        )

    def preflight_profile(self, name: str) -> str | None:
        """The profile that pre-flights profile `name`'s jobs, or None (off, or itself)."""
        own = self.profiles[name].preflight
        chosen = self.run.preflight if own is None else own
        return chosen if chosen and chosen != name else None

    @model_validator(mode="after")
    def _preflight_profiles_fit(self) -> Manifest:
        problems = []
        for name, profile in self.profiles.items():
            key = f"profiles.{name}.preflight" if profile.preflight is not None else "run.preflight"
            chosen = self.preflight_profile(name)
            if chosen is None:
                continue
            if chosen not in self.profiles:
                problems.append(
                    f"{key} = {chosen!r} (for profile {name!r}) is not a profile; defined profiles: "
                    f"{sorted(self.profiles)}; name one or set preflight = false"
                )
                continue
            mine, theirs = (
                self.profiles[name].codebase or self.codebase,
                self.profiles[chosen].codebase or self.codebase,
            )
            if mine != theirs:
                problems.append(
                    f"{key} = {chosen!r}: profile {name!r} runs codebase {mine!r} but {chosen!r} runs {theirs!r}; "
                    f"a pre-flight runs the same patched code: name a profile of codebase {mine!r} or set "
                    f"profiles.{name}.preflight = false"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _default_profile_exists(self) -> Manifest:
        if self.default_profile not in self.profiles:
            raise ValueError(
                f"default_profile = {self.default_profile!r} is not a profile; "
                f"defined profiles: {sorted(self.profiles)}"
            )
        return self


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "extra_forbidden":
        return f"{where}: unknown key (check its spelling against the manifest reference)"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{where} = {shown}: {error['msg'].removeprefix('Value error, ')}"


def parse_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file; raise ManifestError listing every problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(path, [f"file not found: {path}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(path, [f"not valid TOML: {exc}"]) from None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(path, [_describe(e) for e in exc.errors()]) from None
    problems = _check_files(manifest, path.parent)
    if problems:
        raise ManifestError(path, problems)
    return manifest


def _check_files(manifest: Manifest, root: Path) -> list[str]:
    """Every profile's codebase exists and holds the files its rules name."""
    problems: list[str] = []
    for name, profile in manifest.profiles.items():
        view = manifest.for_profile(name)
        # Name the key a user must fix: the profile's own, or the environment-wide one.
        prefix = f"profiles.{name}." if profile.codebase or profile.files else ""
        codebase = root / view.codebase
        if not codebase.is_dir():
            problems.append(f"{prefix}codebase = {view.codebase!r}: folder {codebase} does not exist")
            continue
        deps = view.dependencies
        if deps and deps.requirements_file and not (codebase / deps.requirements_file).is_file():
            problems.append(f"dependencies.requirements_file: {deps.requirements_file!r} does not exist in {codebase}")
        for folder in deps.find_links if deps else []:
            if not (root / folder).is_dir():
                problems.append(f"dependencies.find_links: folder {root / folder} does not exist")
        for group in ("editable", "hidden", "locked"):
            for file in getattr(view.files, group):
                if not (codebase / file).is_file():
                    problems.append(f"{prefix}files.{group}: {file!r} does not exist in {codebase}")
        for file in data_sources_in_reach(view, codebase):
            problems.append(
                f"{prefix}files.hidden: {file!r} is read by the data preparation and sits in the codebase, so "
                f"training could read the held-out examples it holds; add it to files.hidden and files.locked"
            )
    return list(dict.fromkeys(problems))  # profiles sharing the defaults share their problems


SKIPPED_DIRS = frozenset({".git", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache"})


def data_sources_in_reach(view: Manifest, codebase: Path) -> list[str]:
    """Codebase files (not code) that the data preparation reads, and that training would
    find in its work folder: the preparation's own arguments, and names its scripts quote.
    In a repository used as is (`codebase = "."`) this is typically the raw data file that
    the held-out split is cut from."""
    prepare = view.run.prepare or []
    # An argument names a codebase file as it is, or through the codebase folder (`{work_dir}/`,
    # `./`): the preparation runs in the codebase.
    named_args = {arg.removeprefix("{work_dir}/").removeprefix("./") for arg in prepare}
    scripts = [codebase / arg for arg in prepare if arg.endswith(".py") and (codebase / arg).is_file()]
    quoted = "\n".join(script.read_text(encoding="utf-8", errors="replace") for script in scripts)
    hidden = set(view.files.hidden)
    found = []
    for path in _codebase_files(codebase):
        rel = path.relative_to(codebase).as_posix()
        if rel in hidden or path.suffix == ".py":
            continue
        named = rel in named_args or any(f"{q}{name}{q}" in quoted for name in {rel, path.name} for q in "'\"")
        if named:
            found.append(rel)
    return found


def _codebase_files(codebase: Path, depth: int = 3):
    """The files of a codebase, a few folders deep (a repository may be large)."""
    stack = [(codebase, 0)]
    while stack:
        folder, level = stack.pop()
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                if level + 1 < depth and entry.name not in SKIPPED_DIRS:
                    stack.append((entry, level + 1))
            elif entry.is_file():
                yield entry
