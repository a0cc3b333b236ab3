"""Finding environments (built-in ones by name, or any folder with a manifest) and the
operations on them that do not depend on a run: profiles, visible files, data preparation.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from groundwork.environments import interpreters, placeholders
from groundwork.environments.manifest import (
    MANIFEST_NAME,
    Budget,
    Manifest,
    ManifestError,
    Profile,
    Resources,
    parse_manifest,
)
from groundwork.files import exclusive_lock

BUILTIN_ROOT = Path(__file__).parent / "builtin"
PROFILE_ENV = "GROUNDWORK_PROFILE"
DATA_ENV = "GROUNDWORK_DATA_DIR"  # the whole prepared folder (evaluation)
TRAIN_DATA_ENV = "GROUNDWORK_TRAIN_DATA_DIR"  # the training view; the runner hands it to training as DATA_ENV
BUDGET_ENV = "GROUNDWORK_BUDGET"  # "time" or "compute": what paces training
COMPUTE_ENV_PREFIX = "GROUNDWORK_COMPUTE_"  # + the unit in capitals: each compute amount


def cache_root() -> Path:
    """Where prepared data lives; shared by all runs of a user."""
    override = os.environ.get("GROUNDWORK_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "groundwork"


def interpreter_cache() -> Path:
    """Where environments' own interpreters are built, beside the prepared data."""
    return cache_root() / "interpreters"


def builtin_names() -> list[str]:
    return sorted(p.parent.name for p in BUILTIN_ROOT.glob(f"*/{MANIFEST_NAME}"))


@dataclass(frozen=True)
class ResolvedProfile:
    """A profile with the environment-wide defaults filled in and its budget chosen.

    Under `budget == "time"` training runs for `time_budget_s` seconds (a compute amount,
    when the profile has one, still caps it); under "compute" it runs for the amounts in
    `compute_budget` and the clock is only a kill limit (`kill_limit_s`). `env` holds the
    profile's settings and the budget's variables (GROUNDWORK_BUDGET, GROUNDWORK_COMPUTE_*)."""

    name: str
    description: str
    time_budget_s: float
    grace_s: float
    eval_timeout_s: float
    settings: dict[str, str]  # the profile's own variables (GROUNDWORK_PROFILE included)
    resources: Resources
    data_key: str
    budget: Budget = "time"
    compute_budget: dict[str, int] = field(default_factory=dict)
    kill_limit_s: float = 0.0  # compute budgets: seconds of training before the job is killed

    @property
    def env(self) -> dict[str, str]:
        amounts = {f"{COMPUTE_ENV_PREFIX}{unit.upper()}": str(n) for unit, n in self.compute_budget.items()}
        return {**self.settings, BUDGET_ENV: self.budget, **amounts}

    @property
    def training_limit_s(self) -> float:
        """Seconds training may run: the time budget, or a compute budget's kill limit."""
        return self.time_budget_s if self.budget == "time" else self.kill_limit_s

    def describe_budget(self) -> str:
        """The budget in words: "196,608 tokens (killed after 120 s)" or "30 s"."""
        if self.budget == "time":
            cap = f" or {self.compute_text()}, whichever comes first" if self.compute_budget else ""
            return f"{self.time_budget_s:g} s{cap}"
        return f"{self.compute_text()} (killed after {self.kill_limit_s:g} s)"

    def prompt_budget(self) -> str:
        """What one run gets, as the ideator and implementer are told."""
        if self.budget == "time":
            cap = f" or {self.compute_text()}, whichever comes first" if self.compute_budget else ""
            return f"{self.time_budget_s:g} seconds of wall-clock time{cap}"
        return (
            f"{self.compute_text()} of training (a compute budget: training stops there on any machine, "
            f"whatever its speed; a run still killed after {self.kill_limit_s:g} s of wall-clock time scores nothing)"
        )

    def compute_text(self) -> str:
        return ", ".join(f"{n:,} {unit}" for unit, n in self.compute_budget.items())

    def with_budget(self, budget: Budget | None, time_budget_s: float | None = None) -> ResolvedProfile:
        """This profile under `budget` (None: its own); `time_budget_s` overrides the time
        budget and, unless `budget` says compute, makes the budget a time budget."""
        if time_budget_s is not None:
            if budget == "compute":
                raise ValueError(
                    f"a time budget ({time_budget_s:g} s) was given with budget 'compute': a compute-budgeted "
                    "job has no time budget, only the profile's kill_limit_s; drop one of the two"
                )
            return replace(self, budget="time", time_budget_s=time_budget_s)
        if budget is None or budget == self.budget:
            return self
        if budget == "compute" and not self.compute_budget:
            raise ValueError(
                f"profile {self.name!r} has no compute budget, so it can only budget by time: use --budget time, "
                "or give the profile compute_budget = {UNIT = N} in its environment.toml"
            )
        return replace(self, budget=budget)


@dataclass(frozen=True)
class Environment:
    manifest: Manifest
    root: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def codebase_dir(self) -> Path:
        return self.root / self.manifest.codebase

    @property
    def catalog_path(self) -> Path:
        return self.root / self.manifest.catalog

    def for_profile(self, name: str | None) -> Environment:
        """The environment as profile `name` runs it (its own codebase, goal, files, data
        where it names them), with `name` as the default profile. None: the default one."""
        name = self._known_profile(name)
        return Environment(manifest=self.manifest.for_profile(name), root=self.root)

    def _known_profile(self, name: str | None) -> str:
        name = name or self.manifest.default_profile
        if name not in self.manifest.profiles:
            raise ValueError(
                f"environment {self.name!r} has no profile {name!r}; "
                f"choose one of: {', '.join(sorted(self.manifest.profiles))}"
            )
        return name

    def profile(self, name: str | None = None, budget: Budget | None = None) -> ResolvedProfile:
        """Profile `name` (None: the default one) under `budget` (None: the profile's own)."""
        name = self._known_profile(name)
        p: Profile = self.manifest.profiles[name]
        run = self.manifest.run
        # The profile's name reaches both phases, so locked evaluation code can keep its own
        # per-profile settings (sample counts, seeds) where a patch cannot change them.
        env = {PROFILE_ENV: name, **p.env}
        return ResolvedProfile(
            name=name,
            description=p.description,
            time_budget_s=p.time_budget_s,
            grace_s=run.grace_s if p.grace_s is None else p.grace_s,
            eval_timeout_s=run.eval_timeout_s if p.eval_timeout_s is None else p.eval_timeout_s,
            settings=env,
            resources=p.resources or self.manifest.resources,
            data_key=p.data_key,
            budget=p.budget,
            compute_budget=dict(p.compute_budget or {}),
            kill_limit_s=p.compute_kill_limit_s,
        ).with_budget(budget)

    def data_dir(self, profile: ResolvedProfile) -> Path:
        return cache_root() / "data" / self.name / profile.data_key

    def training_data_dir(self, data_dir: Path) -> Path:
        """The folder training reads (see `training_view`)."""
        return training_view(data_dir, self.manifest.data.training_files, self.name)

    def data_env(self, data_dir: Path) -> dict[str, str]:
        """The data folders a job's phases get (the runner swaps in the training view for training)."""
        data_dir = data_dir.resolve()
        return {DATA_ENV: str(data_dir), TRAIN_DATA_ENV: str(self.training_data_dir(data_dir))}

    def visible_files(self) -> list[str]:
        """Codebase files an ideator or implementer may read (hidden ones left out)."""
        hidden = set(self.manifest.files.hidden)
        files = []
        for path in sorted(self.codebase_dir.rglob("*")):
            rel = path.relative_to(self.codebase_dir).as_posix()
            if path.is_file() and rel not in hidden and "__pycache__" not in path.parts:
                files.append(rel)
        return files

    def interpreter_request(self) -> interpreters.InterpreterRequest | None:
        """What the environment's own interpreter holds; None: it runs with Groundwork's."""
        deps = self.manifest.dependencies
        if deps is None:
            return None
        lines = list(deps.requirements)
        if deps.requirements_file:
            lines += interpreters.read_requirements_file(self.codebase_dir / deps.requirements_file)
        return interpreters.InterpreterRequest(
            environment=self.name,
            requirements=lines,
            find_links=[str((self.root / f).resolve()) for f in deps.find_links],
            no_index=deps.no_index,
            system_site_packages=deps.system_site_packages,
            inherit_packages=deps.inherit_packages,
        )

    def interpreter(self) -> interpreters.Interpreter | None:
        """The environment's own interpreter, built on first use and cached; None without requirements."""
        request = self.interpreter_request()
        return None if request is None else interpreters.ensure(request, interpreter_cache())

    def python(self) -> str:
        """`{python}` of the environment's commands."""
        built = self.interpreter()
        return built.python if built else sys.executable

    def prepare_command(self, profile: ResolvedProfile, python: str | None = None) -> list[str]:
        python = python or self.python()
        return fill_command(self.manifest.run.prepare, python, self.data_dir(profile), self.codebase_dir.resolve())

    def prepare(self, profile: ResolvedProfile, python: str | None = None, quiet: bool = False) -> Path:
        """Run the environment's locked data preparation (idempotent); return the data folder."""
        data_dir = self.data_dir(profile)
        command = self.prepare_command(profile, python)
        if not command:
            data_dir.mkdir(parents=True, exist_ok=True)
            return data_dir
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with preparation_lock(data_dir):
            proc = subprocess.run(
                command,
                cwd=self.codebase_dir,
                env={**os.environ, **profile.env},  # the profile's settings choose what to prepare
                text=True,
                stdout=subprocess.PIPE if quiet else None,
                stderr=subprocess.STDOUT if quiet else None,
            )
        if proc.returncode != 0:
            output = (proc.stdout or "").strip()
            raise RuntimeError(
                f"data preparation for {self.name!r} failed (exit {proc.returncode}): {' '.join(command)}"
                + (f"\n{output}" if output else "")
            )
        self.training_data_dir(data_dir)
        return data_dir


def preparation_lock(data_dir: Path):
    """The lock every preparation of `data_dir` holds (a controller's, a remote worker's, a test
    worker's): a second one waits for the first, then its own (idempotent) preparation finds the
    data made."""
    return exclusive_lock(data_dir.parent / f".{data_dir.name}.prepare.lock")


def fill_command(template: list[str], python: str, data_dir: Path, work_dir: Path | None = None) -> list[str]:
    """The prepare command with its placeholders filled in: `{python}`, `{data_dir}` and
    `{work_dir}` (the codebase it runs in)."""
    values = {"python": python, "data_dir": str(data_dir)}
    if work_dir is not None:
        values["work_dir"] = str(work_dir)
    return placeholders.fill(template, values)


def training_view(data_dir: Path, patterns: list[str] | None, env_name: str) -> Path:
    """The folder training reads: the prepared folder itself, or (when the manifest names
    `data.training_files`) a sibling folder holding hard links to just the files those
    names and patterns match, so a training script never finds the evaluation's split."""
    if patterns is None:
        return data_dir
    present = sorted(p.name for p in data_dir.iterdir() if p.is_file()) if data_dir.is_dir() else []
    files = [name for name in present if any(fnmatch.fnmatchcase(name, pat) for pat in patterns)]
    if not files:
        raise RuntimeError(
            f"data.training_files of {env_name!r} ({', '.join(patterns)}) matches no file in {data_dir}: "
            f"prepare the data again (groundwork env prepare {env_name})"
        )
    view = training_view_path(data_dir)
    if _view_current(data_dir, view, files):
        return view
    tmp = view.with_name(f".{view.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in files:
        try:
            os.link(data_dir / name, tmp / name)
        except OSError:  # another file system, or no hard links: a copy is as good
            shutil.copy2(data_dir / name, tmp / name)
    shutil.rmtree(view, ignore_errors=True)
    try:
        os.replace(tmp, view)
    except OSError:  # another process put a view there in the meantime
        shutil.rmtree(tmp, ignore_errors=True)
        if not _view_current(data_dir, view, files):
            raise
    return view


def training_view_path(data_dir: Path) -> Path:
    return data_dir.with_name(f"{data_dir.name}.training")


def _view_current(data_dir: Path, view: Path, files: list[str]) -> bool:
    """Does the training view hold exactly `files`, each the prepared folder's current one?"""
    if not view.is_dir() or sorted(os.listdir(view)) != files:
        return False
    return all(_same_file(data_dir / n, view / n) for n in files)


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    same_inode = (sa.st_ino, sa.st_dev) == (sb.st_ino, sb.st_dev)
    return same_inode or (sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns)


def load_environment(name_or_path: str | Path, profile: str | None = None) -> Environment:
    """A built-in environment by name, or a folder (or manifest file) by path; with
    `profile`, as that profile runs it (see `Environment.for_profile`)."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file() and candidate.name == MANIFEST_NAME:
        candidate = candidate.parent
    if candidate.is_dir() and (candidate / MANIFEST_NAME).is_file():
        root = candidate.resolve()
    elif (BUILTIN_ROOT / str(name_or_path) / MANIFEST_NAME).is_file():
        root = BUILTIN_ROOT / str(name_or_path)
    elif candidate.is_dir():
        raise ManifestError(candidate / MANIFEST_NAME, [f"folder {candidate} has no {MANIFEST_NAME}"])
    else:
        raise ValueError(
            f"unknown environment {str(name_or_path)!r}: not a built-in "
            f"({', '.join(builtin_names()) or 'none'}) and not a folder containing {MANIFEST_NAME}"
        )
    env = Environment(manifest=parse_manifest(root / MANIFEST_NAME), root=root)
    return env if profile is None else env.for_profile(profile)
