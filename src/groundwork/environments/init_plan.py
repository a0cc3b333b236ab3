"""From what a repository says (`inference.inspect`) and what the user said (flags) to a
scaffold, the files `env init` would draft, and every problem at once.

A flag-driven training script is run as it is: its own flags get the harness's values
(`{data_dir}`, `{seed}`, `{output_dir}`), so no wrapper is needed. A data file at the
repository root is split by a drafted `groundwork_prepare.py` into a training part and a
held-out part, and the root file itself is hidden (a job never has it in its folder).
Without an evaluation script a locked `groundwork_eval.py` is drafted: a template that
loads the checkpoint the way the training script saves it, or (with a model) a complete one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from groundwork.environments import inference, templates
from groundwork.environments.scaffold import Dependencies, Scaffold, infer_metric, metric_defaults, slug

EVAL_DRAFT = "groundwork_eval.py"
PREPARE_DRAFT = "groundwork_prepare.py"
ARCHIVES = (".whl", ".tar.gz", ".zip")  # a requirement line may name a distribution file
TEMPLATE_METRIC = "val_loss"  # what a drafted evaluation writes unless --metric-name says otherwise


@dataclass
class InitOptions:
    """What the user said; None: infer it."""

    train: str | None = None
    evaluate: str | None = None
    prepare: str | None = None  # "" for none
    metric: str | None = None
    direction: str | None = None
    metric_range: tuple[float, float] | None = None
    editable: list[str] | None = None
    locked: list[str] | None = None
    training_files: list[str] | None = None
    data_key: str | None = None
    requirements: list[str] | None = None  # requirement lines and requirements files
    find_links: list[str] | None = None  # wheel folders (absolute, or relative to the repository)
    no_index: bool = False
    inherit_packages: bool = True
    data_file: str | None = None  # the root file holding the examples ("" for none)
    max_steps: int | None = None
    budget_s: float = 300.0


def parse_range(text: str | None) -> tuple[float, float] | None:
    """--metric-range LOW,HIGH as numbers; None: infer it."""
    if text is None:
        return None
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--metric-range {text!r}: write LOW,HIGH, e.g. 0,10") from None
    return low, high


@dataclass
class Plan:
    scaffold: Scaffold
    facts: inference.RepoFacts
    drafts: dict[str, str] = field(default_factory=dict)  # files to write: path -> text
    problems: list[str] = field(default_factory=list)

    def evidence(self) -> list[str]:
        return [f"{f.what}: {f.value}  ({f.evidence})" for f in self.facts.findings]


def _train_command(facts: inference.RepoFacts, train: str, data_arg: str | None, max_steps: int | None) -> list[str]:
    command = ["{python}", train]
    flags = facts.flags
    if "data" in flags and data_arg:
        command += [flags["data"], data_arg]
    if "seed" in flags:
        command += [flags["seed"], "{seed}"]
    if "out_dir" in flags:
        command += [flags["out_dir"], "{output_dir}"]
    if "steps" in flags and max_steps:
        command += [flags["steps"], str(max_steps)]
    if "device" in flags:
        command += [flags["device"], "cpu"]
    return command


def _dependencies(
    repo: Path, options: InitOptions, facts: inference.RepoFacts, problems: list[str]
) -> Dependencies | None:
    """`[dependencies]` from --requirements (a file of the repository, else a requirement
    line) or the requirements.txt found, --find-links and --no-index; None: none named."""
    named = options.requirements if options.requirements is not None else [facts.requirements_file or ""]
    files = [item for item in named if item and not item.endswith(ARCHIVES) and (repo / item).is_file()]
    lines = [item for item in named if item and item not in files]
    for item in lines:
        if "://" not in item and "@" not in item and (item.endswith(".txt") or "/" in item):
            problems.append(f"--requirements {item!r}: no such file in {repo}; name a file of the repository")
    if len(files) > 1:
        problems.append(f"--requirements: one requirements file at most, got {', '.join(files)}")
    folders = []
    for folder in options.find_links or []:
        path = Path(folder).expanduser()
        if not path.is_absolute() and ((repo / folder).is_dir() or not path.is_dir()):
            path = repo / folder  # as the manifest means it; a folder found only from the current one is taken as is
        if not path.resolve().is_relative_to(repo) or not path.is_dir():
            problems.append(
                f"--find-links {folder!r}: not a folder inside {repo}; the manifest names it relative to "
                "itself, so put the wheels in the repository (e.g. wheels/)"
            )
        else:
            folders.append(path.resolve().relative_to(repo).as_posix())
    if not files and not lines:
        if folders or options.no_index:
            problems.append("--find-links / --no-index need requirements: name them with --requirements")
        return None
    return Dependencies(
        requirements=lines,
        requirements_file=files[0] if files else None,
        find_links=folders,
        no_index=options.no_index,
        inherit_packages=options.inherit_packages,
    )


def plan(repo: Path, options: InitOptions, python_can_import=None) -> Plan:
    """The scaffold for `repo` under `options`, the files to draft, and every problem."""
    repo = repo.resolve()
    facts = inference.inspect(repo, options.train, python_can_import)
    problems: list[str] = []
    train = facts.train_script
    if train is None:
        problems.append("no training script found: name it with --train FILE")
        train = "train.py"
    elif not (repo / train).is_file():
        problems.append(f"training script {train!r} does not exist in {repo}: name the right one with --train")
    for label, flag, given in (
        ("evaluation", "--evaluate", options.evaluate),
        ("preparation", "--prepare", options.prepare),
    ):
        if given and not (repo / given).is_file():
            problems.append(f"{label} script {given!r} does not exist in {repo}: name the right one with {flag}")
    drafts: dict[str, str] = {}

    # Data: the repository's own preparation, else a split of its root data file.
    prepare_script = options.prepare if options.prepare is not None else facts.prepare_script
    prepare_script = prepare_script or None
    data_file = facts.data_files[0] if facts.data_files else None
    if options.data_file is not None:
        data_file = options.data_file or None
        if data_file and not (repo / data_file).is_file():
            problems.append(f"data file {data_file!r} does not exist in {repo}: pass --data-file NAME")
    prepare_command, training_files, data_arg, hidden_extra = None, options.training_files, None, []
    if prepare_script is None and data_file:
        split = templates.split_names(data_file)
        drafts[PREPARE_DRAFT] = templates.prepare_split(data_file)
        prepare_script = PREPARE_DRAFT
        prepare_command = ["{python}", PREPARE_DRAFT, "--out", "{data_dir}"]
        training_files = training_files or [split[0]]
        data_arg = "{data_dir}/" + split[0]
        hidden_extra = [data_file]  # the held-out examples are in it: never in a job's folder
        if "data" not in facts.flags:
            problems.append(
                f"{train} takes no data flag (none of {', '.join(inference.FLAG_ROLES['data'])}): it would read "
                f"{data_file} itself, held-out part included; give it one, or pass --prepare '' --data-file ''"
            )

    # Evaluation: the repository's, else a drafted one; the metric is what it writes.
    eval_script = options.evaluate or facts.eval_script
    if eval_script is None:
        eval_script = EVAL_DRAFT
        metric = options.metric or TEMPLATE_METRIC
        held_out = templates.split_names(data_file)[1] if data_file else None
        drafts[EVAL_DRAFT] = templates.evaluation(train, facts.checkpoint, metric, held_out)
        facts.note("metric", metric, f"written by the drafted {EVAL_DRAFT}")
    else:
        text = (repo / eval_script).read_text(errors="replace") if (repo / eval_script).is_file() else ""
        found = infer_metric(text)
        metric = options.metric or (found[0] if found else None)
        if found and not options.metric:
            facts.note("metric", found[0], f"a key {eval_script} writes")
        if metric is None:
            problems.append(f"cannot tell which metric {eval_script} writes: pass --metric-name KEY")
            metric = "metric"
        elif options.metric and found and found[0] != options.metric and f"'{metric}'" not in text.replace('"', "'"):
            problems.append(
                f"--metric-name {metric!r}: {eval_script} never writes that key (it writes {found[0]!r}); "
                "the run would end in no_metric"
            )
    # An unknown metric is one problem, not three: its direction and range follow from its name.
    defaults = metric_defaults(metric) or (None if metric != "metric" else ("minimize", (0.0, 1.0)))
    direction = options.direction or (defaults[0] if defaults else None)
    if direction not in ("minimize", "maximize"):
        problems.append(
            f"direction must be minimize or maximize, got {direction!r}: pass --direction"
            if direction
            else f"no direction known for metric {metric!r}: pass --direction minimize|maximize"
        )
        direction = "minimize"
    plausible = options.metric_range or (defaults[1] if defaults else None)
    if plausible is None:
        problems.append(f"no plausible range known for metric {metric!r}: pass --metric-range LOW,HIGH")
        plausible = (0.0, 1.0)
    elif not plausible[0] < plausible[1]:
        problems.append(f"--metric-range {plausible[0]:g},{plausible[1]:g}: low must be below high")

    # The environment's own requirements, and those the training script imports that this
    # interpreter (whose packages the environment's inherits) lacks.
    dependencies = _dependencies(repo, options, facts, problems)
    if facts.missing_imports and dependencies is None:
        problems.append(
            f"{train} imports {', '.join(facts.missing_imports)}, which this interpreter cannot import: name the "
            "environment's requirements with --requirements FILE|PACKAGE (repeatable), or install them"
        )

    locked = options.locked or [p for p in (eval_script, prepare_script, *hidden_extra) if p]
    hidden = None if options.locked else [p for p in (eval_script, prepare_script, *hidden_extra) if p]
    scaffold = Scaffold(
        name=slug(repo.name),
        train_script=train,
        eval_script=eval_script,
        prepare_script=prepare_script,
        metric=metric,
        direction=direction,
        plausible_range=plausible,
        editable=options.editable or [train],
        locked=locked,
        time_budget_s=options.budget_s,
        train_command=_train_command(facts, train, data_arg, options.max_steps or None),
        prepare_command=prepare_command,
        hidden=hidden,
        training_files=training_files,
        data_key=options.data_key or "default",
        dependencies=dependencies,
        pass_env=["PYTHONPATH"] if facts.pythonpath_imports else [],
        notes=[f"{f.what}: {f.value}" for f in facts.findings],
    )
    return Plan(scaffold=scaffold, facts=facts, drafts=drafts, problems=problems)
