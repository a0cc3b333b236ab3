"""Scaffold an `environment.toml` for an existing repository (`groundwork env init PATH`).

`infer` reads the repository's files and guesses the training and evaluation scripts, data
preparation, the metric (its name, direction and plausible range) and which files are
editable or locked. The CLI asks the user to confirm or change each guess, then `write`
renders the manifest and validates it with the manifest model before it is kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from groundwork.environments.manifest import MANIFEST_NAME, Manifest, ManifestError, Objective, parse_manifest

TRAIN_CANDIDATES = (
    "train.py",
    "train_gpt.py",
    "train_gpt2.py",
    "main.py",
    "run.py",
    "scripts/train.py",
    "src/train.py",
)
EVAL_CANDIDATES = ("evaluate.py", "eval.py", "evaluation.py", "scripts/evaluate.py", "scripts/eval.py", "test_model.py")
PREPARE_CANDIDATES = ("prepare.py", "prepare_data.py", "data.py", "download.py", "scripts/prepare.py")
# Metric names as they appear in an evaluation script, most specific first, with the
# direction that is better and a plausible range.
KNOWN_METRICS = (
    ("val_bpb", "minimize", (0.0, 10.0)),
    ("val_loss", "minimize", (0.0, 100.0)),
    ("perplexity", "minimize", (1.0, 1e6)),
    ("accuracy", "maximize", (0.0, 1.0)),
    ("exact_match", "maximize", (0.0, 1.0)),
    ("f1", "maximize", (0.0, 1.0)),
    ("bleu", "maximize", (0.0, 100.0)),
    ("reward", "maximize", (-1e6, 1e6)),
    ("error", "minimize", (0.0, 1.0)),
    ("loss", "minimize", (0.0, 100.0)),
    ("score", "maximize", (-1e6, 1e6)),
)


@dataclass
class Dependencies:
    """The manifest's `[dependencies]`: the environment's own interpreter."""

    requirements: list[str] = field(default_factory=list)  # requirement lines
    requirements_file: str | None = None  # in the repository
    find_links: list[str] = field(default_factory=list)  # wheel folders, relative to the repository
    no_index: bool = False
    inherit_packages: bool = True  # torch and the rest come from Groundwork's interpreter

    def named(self) -> list[str]:
        return [*([self.requirements_file] if self.requirements_file else []), *self.requirements]


@dataclass
class Scaffold:
    """Everything `env init` decides, before it becomes a manifest."""

    name: str
    train_script: str
    eval_script: str
    prepare_script: str | None
    metric: str
    direction: str
    plausible_range: tuple[float, float]
    editable: list[str]
    locked: list[str]
    time_budget_s: float = 300.0
    goal: str = ""
    notes: list[str] = field(default_factory=list)  # what was guessed, and how
    train_command: list[str] | None = None  # None: ["{python}", train_script]
    prepare_command: list[str] | None = None  # None: prepare_script --out {data_dir}, when there is one
    hidden: list[str] | None = None  # None: the locked files
    training_files: list[str] | None = None
    data_key: str = "default"
    dependencies: Dependencies | None = None  # None: commands run with Groundwork's interpreter
    pass_env: list[str] = field(default_factory=list)

    def with_goal(self) -> Scaffold:
        if self.goal:
            return self
        better = "lowest" if Objective(name=self.metric, direction=self.direction).lower_is_better else "highest"
        goal = (
            f"Improve {', '.join(self.editable)} so that the {better} possible {self.metric} is reached "
            f"within a fixed training budget (GROUNDWORK_TIME_BUDGET_S seconds).\n\n"
            f"Rules the evaluation enforces:\n"
            f"- Only {', '.join(self.editable)} may be changed; {', '.join(self.locked)} are locked, restored and "
            f"hash-checked around every run.\n"
            f"- Training must stop by itself within the budget; runs that overrun are killed and score nothing.\n"
            f"- The locked {self.eval_script} measures {self.metric} after training; keep what it reads working."
        )
        return replace(self, goal=goal)


def slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return name if name and name[0].isalnum() else f"env-{name}".strip("-") or "env"


def _first(repo: Path, candidates: tuple[str, ...], pattern: str) -> str | None:
    for rel in candidates:
        if (repo / rel).is_file():
            return rel
    found = sorted(p.relative_to(repo).as_posix() for p in repo.glob(pattern) if p.is_file())
    return found[0] if found else None


# Metric names by their ending: *_loss, *_acc, ... (direction, plausible range).
METRIC_SUFFIXES = (
    ("loss", "minimize", (0.0, 100.0)),
    ("bpb", "minimize", (0.0, 10.0)),
    ("perplexity", "minimize", (1.0, 1e6)),
    ("ppl", "minimize", (1.0, 1e6)),
    ("error", "minimize", (0.0, 1.0)),
    ("mse", "minimize", (0.0, 1e6)),
    ("accuracy", "maximize", (0.0, 1.0)),
    ("acc", "maximize", (0.0, 1.0)),
    ("f1", "maximize", (0.0, 1.0)),
)
WRITTEN_KEY = re.compile(r"""["'](\w+)["']\s*:""")


def infer_metric(eval_text: str) -> tuple[str, str, tuple[float, float]] | None:
    """The metric the evaluation writes: a known name as a quoted key, else a key that
    ends like a metric (`test_loss`, `heldout_acc`) in a dict literal."""
    for name, direction, plausible in KNOWN_METRICS:
        if re.search(rf"""["']{re.escape(name)}["']""", eval_text):
            return name, direction, plausible
    for key in WRITTEN_KEY.findall(eval_text):
        defaults = metric_defaults(key)
        if defaults:
            return key, *defaults
    return None


def metric_defaults(name: str) -> tuple[str, tuple[float, float]] | None:
    """(direction, plausible range) of a metric name, known or by its ending; None: unknown."""
    for known, direction, plausible in KNOWN_METRICS:
        if known == name:
            return direction, plausible
    for suffix, direction, plausible in METRIC_SUFFIXES:
        if name.lower().endswith(suffix):
            return direction, plausible
    return None


def infer(repo: Path) -> Scaffold:
    """Guess a scaffold from the repository's files; `notes` says what was found where."""
    from groundwork.environments.init_plan import InitOptions, plan

    return plan(repo, InitOptions()).scaffold


def _toml_string(text: str) -> str:
    if "\n" in text and "'''" not in text:
        return "'''\n" + text.strip("\n") + "\n'''"
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _command(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _dependencies(d: Dependencies | None) -> str:
    if d is None:
        return ""
    lines = ["", "[dependencies]  # the environment's own interpreter, built once and cached"]
    if d.requirements_file:
        lines.append(f"requirements_file = {json.dumps(d.requirements_file)}")
    if d.requirements:
        lines.append(f"requirements = {_toml_list(d.requirements)}")
    if d.find_links:
        lines.append(f"find_links = {_toml_list(d.find_links)}  # folders of local wheels")
    if d.no_index:
        lines.append("no_index = true  # install only from find_links")
    seen = "true  # Groundwork's own packages (torch, ...) are seen, not installed again"
    lines.append(f"inherit_packages = {seen if d.inherit_packages else 'false'}")
    return "\n".join(lines) + "\n"


def render(s: Scaffold) -> str:
    """The manifest text: every key the manifest reference documents, with comments."""
    s = s.with_goal()
    prepare_cmd = s.prepare_command or (
        ["{python}", s.prepare_script, "--out", "{data_dir}"] if s.prepare_script else None
    )
    prepare = (
        f"prepare = {_command(prepare_cmd)}"
        if prepare_cmd
        else '# prepare = ["{python}", "prepare.py", "--out", "{data_dir}"]  # data preparation, run once per data_key'
    )
    train = s.train_command or ["{python}", s.train_script]
    hidden = s.locked if s.hidden is None else s.hidden
    data = (
        f"\n[data]\ntraining_files = {_toml_list(s.training_files)}  # training sees only these; the evaluation all\n"
        if s.training_files
        else ""
    )
    pass_env = f"pass_env = {_toml_list(s.pass_env)}  # the controller's variables jobs get\n" if s.pass_env else ""
    low, high = s.plausible_range
    return f"""# {s.name}: scaffolded by `groundwork env init`; see docs/environments.md for every key.
name = {json.dumps(s.name)}
description = {json.dumps(f"{s.metric} of {s.train_script} within a fixed budget")}
codebase = "."  # the repository itself is the baseline codebase
default_profile = "default"
goal = {_toml_string(s.goal)}

[metric]
name = {json.dumps(s.metric)}  # the key the evaluation writes into result_file
direction = {json.dumps(s.direction)}
plausible_range = [{low!r}, {high!r}]  # values outside are discarded as suspicious
result_file = "result.json"  # the evaluation writes it at $GROUNDWORK_RESULT_PATH

[files]
editable = {_toml_list(s.editable)}
hidden = {_toml_list(hidden)}  # never shown to the ideator, never in a job's folder during training
locked = {_toml_list(s.locked)}  # restored and hash-checked around every run
allow_new = []  # glob patterns of new files a patch may create, e.g. ["*.py"]; [] = none
allow_delete = false  # whether a patch may delete (or rename) an editable file

[run]
train = {_command(train)}
evaluate = ["{{python}}", {json.dumps(s.eval_script)}]
{prepare}
{pass_env}grace_s = 20
eval_timeout_s = 300
{data}{_dependencies(s.dependencies)}
[profiles.default]
description = "one run of the training script under a {s.time_budget_s:g} s budget"
time_budget_s = {s.time_budget_s!r}
data_key = {json.dumps(s.data_key)}
"""


def write(repo: Path, scaffold: Scaffold, force: bool = False) -> tuple[Path, Manifest]:
    """Write PATH/environment.toml and validate it; an invalid manifest is not kept."""
    path = repo / MANIFEST_NAME
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists: pass --force to replace it")
    tmp = repo / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(render(scaffold), encoding="utf-8")
    try:
        manifest = parse_manifest(tmp)
    except ManifestError as exc:
        tmp.unlink()
        raise ManifestError(path, exc.problems) from None
    tmp.replace(path)
    return path, manifest
