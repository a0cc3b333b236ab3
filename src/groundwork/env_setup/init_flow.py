"""`groundwork env init`, start to end: infer, report every problem at once, draft the
missing files (templates, or a model's versions shown as a diff), write and validate the
manifest, and, when a model drafted code, run the baseline once to prove it works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from groundwork.environments.init_plan import EVAL_DRAFT, InitOptions, Plan, plan
from groundwork.environments.manifest import ManifestError
from groundwork.environments.scaffold import Dependencies, render, write

VALIDATION_BUDGET_S = 20.0


@dataclass
class InitResult:
    plan: Plan
    manifest_path: Path | None = None
    written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _dependencies_line(d: Dependencies) -> str:
    from groundwork.environments.registry import interpreter_cache

    source = ", ".join(
        [*(f"the wheels in {folder}" for folder in d.find_links), *([] if d.no_index else ["the package index"])]
    )
    base = (
        "layered on the packages of the interpreter running Groundwork (what they satisfy is not installed again)"
        if d.inherit_packages
        else "from the interpreter running Groundwork, without its packages"
    )
    return (
        f"requirements: {', '.join(d.named())} go to [dependencies]: the environment's own interpreter, built once "
        f"(by env check --run or the first run) under {interpreter_cache()}, {base}, installing from "
        f"{source or 'nowhere (no_index without find_links)'}"
    )


def _repo_files(repo: Path, plan_: Plan) -> dict[str, str]:
    names = [plan_.scaffold.train_script, "README.md", "README", "requirements.txt"]
    return {n: (repo / n).read_text(errors="replace")[:20000] for n in names if (repo / n).is_file()}


def init_environment(
    repo: Path,
    options: InitOptions,
    *,
    llm_spec: str | None = None,
    llm=None,  # an LLM object (tests); otherwise made from llm_spec
    force: bool = False,
    confirm: Callable[[str], bool] = lambda question: True,
    say: Callable[[str], None] = print,
    python_can_import=None,
) -> InitResult:
    repo = repo.expanduser().resolve()
    if not repo.is_dir():
        raise ValueError(f"{repo} is not a folder: pass the repository to turn into an environment")
    p = plan(repo, options, python_can_import)
    result = InitResult(plan=p)
    say("inferred:")
    for line in p.evidence():
        say(f"  {line}")
    if p.problems:
        say(f"{len(p.problems)} problem(s); nothing was written:")
        for problem in p.problems:
            say(f"  - {problem}")
        result.problems = p.problems
        return result
    if (repo / "environment.toml").exists() and not force:
        raise FileExistsError(f"{repo / 'environment.toml'} already exists: pass --force to replace it")
    drafts = dict(p.drafts)
    if drafts and (llm is not None or llm_spec):
        from groundwork.env_setup import drafting

        if llm is None:
            from groundwork.llm.factory import make_llm

            llm = make_llm(llm_spec, "implementer")
        facts = [f"{f.what}: {f.value} ({f.evidence})" for f in p.facts.findings]
        drafted = drafting.ask(llm, _repo_files(repo, p), facts, render(p.scaffold), drafts)
        say("the model's drafts, against the templates:\n" + drafting.diff(drafts, drafted))
        if confirm("keep the model's drafts?"):
            drafts = drafted
    for name in drafts:
        if (repo / name).exists() and not force:
            raise FileExistsError(f"{repo / name} already exists: pass --force to replace it, or move it away")
    before = {name: (repo / name).read_text() if (repo / name).exists() else None for name in drafts}
    for name, text in drafts.items():
        (repo / name).write_text(text, encoding="utf-8")
    try:  # the manifest names the drafts, so it validates only once they exist
        result.manifest_path, manifest = write(repo, p.scaffold, force=True)
    except ManifestError:  # an invalid manifest leaves the repository as it was
        for name, text in before.items():
            (repo / name).unlink() if text is None else (repo / name).write_text(text, encoding="utf-8")
        raise
    result.written = list(drafts)
    say(
        f"wrote {result.manifest_path}: {manifest.metric.name} ({manifest.metric.direction}, plausible "
        f"{list(manifest.metric.plausible_range)}), editable {', '.join(manifest.files.editable)}, "
        f"locked {', '.join(manifest.files.locked) or '-'}"
        + (f"; drafted {', '.join(result.written)}" if result.written else "")
    )
    if p.scaffold.dependencies:
        say(_dependencies_line(p.scaffold.dependencies))
    if "score()" in drafts.get(EVAL_DRAFT, "") and "NotImplementedError" in drafts.get(EVAL_DRAFT, ""):
        say(f"next: write score() in {EVAL_DRAFT} (it loads the checkpoint already), or draft it with --llm SPEC")
    if llm is not None and result.written:
        result.problems = _validate(repo, p, drafts, llm, say)
    return result


def _validate(repo: Path, p: Plan, drafts: dict[str, str], llm, say) -> list[str]:
    """Run the baseline once with the drafts; on a failure the model gets the error once."""
    from groundwork.env_setup import drafting
    from groundwork.env_setup.check_run import check_run
    from groundwork.environments.registry import load_environment

    for attempt in (1, 2):
        env = load_environment(repo)
        report = check_run(env, env.profile(), VALIDATION_BUDGET_S)
        for stage in report.stages:
            say(f"  {'ok' if stage.ok else 'failed'} {stage.name} ({stage.seconds:.1f} s): {stage.detail}")
        if report.ok:
            say(f"validated: the baseline ran and scored {env.manifest.metric.name} = {report.metric:.6g}")
            return []
        if attempt == 2:
            break
        say("the drafts failed; asking the model to fix them:\n  " + "\n  ".join(report.problems))
        facts = [f"{f.what}: {f.value} ({f.evidence})" for f in p.facts.findings]
        drafts = drafting.ask(llm, _repo_files(repo, p), facts, render(p.scaffold), drafts, "\n".join(report.problems))
        for name, text in drafts.items():
            (repo / name).write_text(text, encoding="utf-8")
    say("the drafted files do not work yet; fix them by hand, then: groundwork env check PATH --run")
    return report.problems
