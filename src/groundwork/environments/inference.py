"""What a repository says about itself: its training entry point, the flags that script
takes, its data files, the modules it imports that this interpreter lacks, and how it saves
checkpoints. Every guess carries its evidence, so `env init` can show why it chose it.

Reading only: nothing here runs the repository's code (the scripts are parsed with `ast`).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Flags a training script may take, by the role the harness fills in. Option strings are
# compared with '-' and '_' made the same.
FLAG_ROLES = {
    "steps": ("--max-steps", "--max-iters", "--steps", "--num-steps", "--iters", "--iterations", "--max-iter"),
    "seed": ("--seed", "--random-seed"),
    "device": ("--device",),
    "out_dir": ("--work-dir", "--out-dir", "--output-dir", "--save-dir", "--checkpoint-dir", "--ckpt-dir", "--out"),
    "data": ("--data", "--data-path", "--input", "--input-file", "--dataset", "--train-file", "--text", "--data-file"),
}
DATA_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".json", ".npy", ".npz", ".bin", ".pt", ".parquet")
NOT_DATA = re.compile(r"^(readme|license|licence|requirements.*|changelog|notice|authors|setup|pyproject)\b", re.I)
SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", "tests", "test", "docs", "out"}
TRAIN_NAMES = ("train.py", "main.py", "run.py", "train_gpt.py", "train_gpt2.py")
EVAL_NAMES = ("evaluate.py", "eval.py", "evaluation.py", "test_model.py")
PREPARE_NAMES = ("prepare.py", "prepare_data.py", "data.py", "download.py")
# Files `env init` itself writes: never taken for the repository's own scripts.
DRAFTED = ("groundwork_eval.py", "groundwork_prepare.py", "groundwork_train.py")


@dataclass(frozen=True)
class Finding:
    """One inferred value and why it was chosen."""

    what: str
    value: str
    evidence: str


@dataclass(frozen=True)
class Checkpoint:
    """How the training script saves its model: `state_dict` (torch.save of a state dict,
    possibly inside a dict under `key`), `object` (a whole pickled object), or unknown."""

    kind: str  # "state_dict", "object" or "unknown"
    filename: str | None = None  # the literal file name it saves to, when it names one
    key: str | None = None  # the dict key holding the state dict, when saved in a dict


@dataclass
class RepoFacts:
    repo: Path
    train_script: str | None = None
    eval_script: str | None = None
    prepare_script: str | None = None
    flags: dict[str, str] = field(default_factory=dict)  # role -> the option string as written
    flag_defaults: dict[str, str] = field(default_factory=dict)  # role -> its default, as source text
    data_files: list[str] = field(default_factory=list)  # candidate data files at the repository root
    missing_imports: list[str] = field(default_factory=list)  # the training script's, not importable here
    pythonpath_imports: list[str] = field(default_factory=list)  # importable here only through PYTHONPATH
    requirements_file: str | None = None
    checkpoint: Checkpoint = Checkpoint("unknown")
    findings: list[Finding] = field(default_factory=list)

    def note(self, what: str, value: str, evidence: str) -> None:
        self.findings.append(Finding(what, value, evidence))


def _norm(option: str) -> str:
    return option.replace("_", "-").lower()


def python_files(repo: Path) -> list[str]:
    files = []
    for path in sorted(repo.rglob("*.py")):
        rel = path.relative_to(repo)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if rel.name in DRAFTED or rel.name.startswith("test_") or rel.name in ("setup.py", "conftest.py"):
            continue
        files.append(rel.as_posix())
    return files


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return None


def has_main_guard(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)


def argparse_options(tree: ast.Module) -> dict[str, str]:
    """Option strings of every `add_argument` call, with their default as source text."""
    options: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            default = next((ast.unparse(k.value) for k in node.keywords if k.arg == "default"), "")
            for name in names:
                if name.startswith("--"):
                    options[name] = default
    return options


def flag_roles(options: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(role -> option string, role -> default) for the options the harness can fill in."""
    by_norm = {_norm(o): o for o in options}
    roles, defaults = {}, {}
    for role, candidates in FLAG_ROLES.items():
        for candidate in candidates:
            if candidate in by_norm:
                roles[role] = by_norm[candidate]
                defaults[role] = options[by_norm[candidate]]
                break
    return roles, defaults


def _score_entry(repo: Path, rel: str) -> tuple[int, list[str]]:
    tree = _parse(repo / rel)
    if tree is None:
        return -1, ["does not parse"]
    name = Path(rel).stem.lower().replace("-", "_")
    repo_name = re.sub(r"[^a-z0-9]+", "_", repo.name.lower()).strip("_")
    score, why = 0, []
    if name and (name == repo_name or name.replace("_", "") == repo_name.replace("_", "")):
        score, why = score + 4, [*why, f"named like the repository ({repo.name})"]
    if "train" in name:
        score, why = score + 3, [*why, "'train' in its name"]
    elif Path(rel).name in TRAIN_NAMES:
        score, why = score + 2, [*why, "a usual entry-point name"]
    if has_main_guard(tree):
        score, why = score + 2, [*why, "an `if __name__ == '__main__'` guard"]
    roles, _ = flag_roles(argparse_options(tree))
    if roles:
        score, why = score + len(roles), [*why, "argparse flags " + ", ".join(roles.values())]
    text = (repo / rel).read_text(encoding="utf-8", errors="replace")
    if ".backward(" in text or "optimizer.step(" in text or "optim." in text:
        score, why = score + 2, [*why, "a training loop (backward/optimizer)"]
    if "eval" in name or "prepare" in name:
        score -= 3
    return score, why


def find_entry_point(repo: Path, files: list[str]) -> tuple[str | None, str]:
    """The most training-like script and the reasons; (None, why not) when none looks like one."""
    scored = sorted(((*_score_entry(repo, rel), rel) for rel in files), key=lambda t: (-t[0], t[2]))
    if not scored or scored[0][0] < 3:
        return None, "no script has a training loop, a __main__ guard or training flags"
    score, why, rel = scored[0]
    return rel, "; ".join(why)


def _first_named(files: list[str], names: tuple[str, ...], word: str) -> str | None:
    for name in names:
        hits = [f for f in files if Path(f).name == name]
        if hits:
            return min(hits, key=lambda f: f.count("/"))
    hits = [f for f in files if word in Path(f).stem.lower()]
    return hits[0] if hits else None


def local_modules(repo: Path) -> set[str]:
    return {p.stem for p in repo.glob("*.py")} | {p.name for p in repo.iterdir() if (p / "__init__.py").is_file()}


def third_party_imports(repo: Path, tree: ast.Module) -> list[str]:
    """Top-level modules the script imports that are neither standard nor the repository's."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module.split(".")[0])
    local = local_modules(repo)
    return [n for n in dict.fromkeys(names) if n not in sys.stdlib_module_names and n not in local
            and n != "__future__"]  # fmt: skip


def missing_imports(repo: Path, tree: ast.Module, python_can_import=None) -> list[str]:
    """The script's third-party modules this interpreter cannot import (`python_can_import`
    replaces the check in tests)."""
    can_import = python_can_import or (lambda name: importlib.util.find_spec(name) is not None)
    missing = []
    for name in third_party_imports(repo, tree):
        try:
            found = can_import(name)
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def found_on_pythonpath(names: list[str], environ=None) -> list[str]:
    """Those of `names` this interpreter finds only through PYTHONPATH: a job gets no
    PYTHONPATH unless the manifest passes it (`pass_env`), so they would be missing there."""
    entries = [Path(p).resolve() for p in (environ or os.environ).get("PYTHONPATH", "").split(os.pathsep) if p]
    found = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        origin = Path(spec.origin).resolve() if spec and spec.origin and spec.has_location else None
        if origin and any(origin.is_relative_to(entry) for entry in entries):
            found.append(name)
    return found


def checkpoint_format(text: str) -> Checkpoint:
    """How `torch.save` is called in the training script, as far as the source tells."""
    calls = re.findall(r"torch\.save\((.*)\)", text)
    if not calls:
        return Checkpoint("unknown")
    names = re.findall(r"""["']([\w.-]+\.(?:pt|pth|ckpt|bin))["']""", text)
    filename = names[0] if names else None
    first = calls[0]
    if "state_dict()" in first:
        key = re.search(r"""["'](\w+)["']\s*:\s*\w+(?:\.module)?\.state_dict\(\)""", first)
        return Checkpoint("state_dict", filename, key.group(1) if key else None)
    # torch.save(obj, ...) where obj was built from a state_dict a few lines above
    obj = first.split(",")[0].strip()
    built = re.search(rf"{re.escape(obj)}\s*=\s*\{{[^}}]*?[\"'](\w+)[\"']\s*:\s*\w+\.state_dict\(\)", text, re.S)
    if built:
        return Checkpoint("state_dict", filename, built.group(1))
    if re.search(rf"{re.escape(obj)}\s*=\s*\w+\.state_dict\(\)", text):
        return Checkpoint("state_dict", filename)
    return Checkpoint("object", filename)


def data_files(repo: Path, default_hint: str = "") -> list[str]:
    """Files at the repository root that look like data (the data flag's default first)."""
    files = [
        p.name
        for p in sorted(repo.iterdir())
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not NOT_DATA.match(p.name)
    ]
    hinted = [f for f in files if f and f in default_hint]
    return hinted + [f for f in files if f not in hinted]


def inspect(repo: Path, train: str | None = None, python_can_import=None) -> RepoFacts:
    """Everything `env init` infers from the files, each with its evidence. `train` is the
    training script the user named: it is used as given (and inspected), never re-guessed."""
    repo = repo.resolve()
    facts = RepoFacts(repo=repo)
    files = python_files(repo)
    if train:
        facts.train_script = train
        facts.note("training script", train, "given with --train")
    else:
        facts.train_script, why = find_entry_point(repo, files)
        facts.note("training script", facts.train_script or "not found", why)
    others = [f for f in files if f != facts.train_script]
    facts.eval_script = _first_named(others, EVAL_NAMES, "eval")
    facts.note("evaluation script", facts.eval_script or "none", "by name" if facts.eval_script else "no *eval*.py")
    facts.prepare_script = _first_named(others, PREPARE_NAMES, "prepare")
    facts.note("data preparation", facts.prepare_script or "none", "by name" if facts.prepare_script else "none found")
    if (repo / "requirements.txt").is_file():
        facts.requirements_file = "requirements.txt"
        facts.note("requirements", "requirements.txt", "the file is in the repository root")
    script = repo / facts.train_script if facts.train_script else None
    tree = _parse(script) if script and script.is_file() else None
    if tree is not None and script is not None:
        facts.flags, facts.flag_defaults = flag_roles(argparse_options(tree))
        for role, option in facts.flags.items():
            default = facts.flag_defaults.get(role)
            facts.note(
                f"flag for {role}", option, f"add_argument({option!r}" + (f", default={default})" if default else ")")
            )
        facts.missing_imports = missing_imports(repo, tree, python_can_import)
        if facts.missing_imports:
            facts.note("imports not installed", ", ".join(facts.missing_imports), f"imported by {facts.train_script}")
        if python_can_import is None:
            present = [n for n in third_party_imports(repo, tree) if n not in facts.missing_imports]
            facts.pythonpath_imports = found_on_pythonpath(present)
            if facts.pythonpath_imports:
                facts.note("imports found through PYTHONPATH", ", ".join(facts.pythonpath_imports),
                           "jobs get PYTHONPATH passed (pass_env)")  # fmt: skip
        facts.checkpoint = checkpoint_format(script.read_text(encoding="utf-8", errors="replace"))
        if facts.checkpoint.kind != "unknown":
            c = facts.checkpoint
            facts.note(
                "checkpoint",
                f"torch.save of {'a state dict' if c.kind == 'state_dict' else 'an object'}"
                + (f" under {c.key!r}" if c.key else "")
                + (f" to {c.filename}" if c.filename else ""),
                f"torch.save(...) in {facts.train_script}",
            )
    facts.data_files = data_files(repo, facts.flag_defaults.get("data", ""))
    if facts.data_files:
        hint = facts.flag_defaults.get("data", "")
        why = (
            f"the default of {facts.flags['data']}"
            if hint and facts.data_files[0] in hint
            else "a data file at the root"
        )
        facts.note("data file", facts.data_files[0], why)
    return facts
