"""The `groundwork` command: one verb per user task."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from groundwork.analysis.summary import save_noise_floor, summarize
from groundwork.cli_config import config_from_options, run_option
from groundwork.cli_errors import build, flag_for
from groundwork.config import RunConfig
from groundwork.console import CommandConsole, print_summary, progress_view, throttled
from groundwork.environments import ManifestError, builtin_names, load_environment
from groundwork.ideation.catalog import load_catalog
from groundwork.llm.base import LLMError
from groundwork.llm.factory import check_spec
from groundwork.llm.recording import BudgetExceeded, export_recording
from groundwork.loop import ResearchLoop
from groundwork.reconnect import reconnect
from groundwork.records import RunStatus
from groundwork.rl.commands import dataset_app, rl_app
from groundwork.rl.config import is_rl_run
from groundwork.runs import DEFAULT_RUNS_DIR, create_run, find_run, run_config
from groundwork.store import RunStore, StoreError


def _flags_without_type() -> None:
    """typer's rich help gives every option a type, flags too (`--help <bool>`, as if it
    took a value): a flag shows none, as in click's plain help."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "flags_bare", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag and not self.count else shown(self, ctx)

    display_type_rich.flags_bare = True
    option.display_type_rich = display_type_rich


_flags_without_type()
app = typer.Typer(help="Execution-grounded automated AI research.", no_args_is_help=True, add_completion=False)
env_app = typer.Typer(help="Research environments: list, inspect, check, prepare.", no_args_is_help=True)
app.add_typer(env_app, name="env")
llm_app = typer.Typer(help="Model calls recorded in runs.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")
app.add_typer(rl_app, name="rl")
app.add_typer(dataset_app, name="dataset")
console = CommandConsole()

RunsDir = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Folder holding run folders.")


def _drive(store: RunStore) -> None:
    """Run or resume the loop with a live view; print the results table at the end."""
    loop = ResearchLoop(store)
    console.print(f"data for {loop.env.name} ({loop.profile.name}): {loop.env.data_dir(loop.profile)}")
    loop.data_dir = loop.env.prepare(loop.profile)  # shows its own progress the first time
    started = time.time()
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        loop.on_change = throttled(lambda: live.update(progress_view(summarize(store), started)))
        try:
            loop.run()
        except KeyboardInterrupt:
            live.stop()
            console.print(
                f"[yellow]interrupted[/]: running jobs were stopped and re-queued; continue with\n"
                f"  groundwork resume {store.run_dir}"
            )
            raise typer.Exit(130) from None
        except BudgetExceeded as exc:
            live.stop()
            print_summary(console, summarize(store))
            flag = getattr(exc, "flag", "--max-dollars")
            done = "Running jobs were re-queued" if flag != "--max-dollars" else "Jobs already queued were finished"
            console.print(
                f"[yellow]stopped[/]: {exc}. {done}. Continue with a higher cap:\n"
                f"  groundwork resume {store.run_dir} {flag} AMOUNT"
            )
            raise typer.Exit(3) from None
    print_summary(console, summarize(store))
    console.print(f"run folder: {store.run_dir}")


def _check_sandbox(config: RunConfig) -> None:
    """Say before starting whether model-written code will be sandboxed on this machine
    (cluster workers check for themselves and flag each result)."""
    from groundwork.execution import sandbox

    if config.sandbox == "off" or config.backend != "local":
        return
    status = sandbox.probe()
    if status.available:
        return
    if config.sandbox == "required":
        console.print(f"[red]--sandbox required, but the sandbox cannot run here:[/] {status.detail}")
        raise typer.Exit(2)
    console.print(
        f"[yellow]warning:[/] model-written code will run WITHOUT a sandbox (network and files open): "
        f"{status.detail}. Time, memory and output limits still apply."
    )


@app.command()
def run(
    ctx: typer.Context,
    config_file: Optional[Path] = typer.Option(
        None,
        "--config",
        help="TOML (or .json) file of run settings, named as RunConfig's fields (e.g. epochs = 4); "
        "options given here win over it.",
    ),
    # Each option below is a RunConfig field: its default, help and choices come from the field.
    environment: str = run_option("environment"),
    profile: Optional[str] = run_option("profile"),
    epochs: int = run_option("epochs"),
    search: str = run_option("search"),
    exploit_start: float = run_option("exploit_start"),
    exploit_step: float = run_option("exploit_step"),
    exploit_every: int = run_option("exploit_every"),
    exploit_max: float = run_option("exploit_max"),
    islands: int = run_option("islands"),
    migrate_every: int = run_option("migrate_every"),
    migrants: int = run_option("migrants"),
    archive: str = run_option("archive"),
    descriptors: str = run_option("descriptors"),
    quorum: float = run_option("quorum"),
    straggler_s: float = run_option("straggler_s"),
    confirm_seeds: int = run_option("confirm_seeds"),
    confirm_top: int = run_option("confirm_top"),
    max_gpu_hours: Optional[float] = run_option("max_gpu_hours"),
    max_hours: Optional[float] = run_option("max_hours"),
    novelty: str = run_option("novelty"),
    baseline_seeds: int = run_option("baseline_seeds"),
    ideas_per_epoch: int = run_option("ideas_per_epoch"),
    slots: int = run_option("slots"),
    seed: int = run_option("seed"),
    time_budget_s: Optional[float] = run_option("time_budget_s"),
    budget: Optional[str] = run_option("budget"),
    max_attempts: int = run_option("max_attempts"),
    ideator_llm: str = run_option("ideator_llm"),
    ideator_llms: Optional[list[str]] = run_option("ideator_llms"),
    implementer_llms: Optional[list[str]] = run_option("implementer_llms"),  # also sets implementer_llm
    portfolio_floor: float = run_option("portfolio_floor"),
    max_dollars: Optional[float] = run_option("max_dollars"),
    edit_format: str = run_option("edit_format"),
    max_revisions: int = run_option("max_revisions"),
    max_debug_rounds: int = run_option("max_debug_rounds"),
    thinking_budget: Optional[int] = run_option("thinking_budget"),
    reasoning_effort: Optional[str] = run_option("reasoning_effort"),
    prompts_dir: Optional[Path] = run_option("prompts_dir"),
    llm_concurrency: int = run_option("llm_concurrency"),
    backend: str = run_option("backend"),
    address: Optional[str] = run_option("address"),
    artifacts_url: Optional[str] = run_option("artifacts_url"),
    slurm_partition: Optional[str] = run_option("slurm_partition"),
    slurm_account: Optional[str] = run_option("slurm_account"),
    lease_s: float = run_option("lease_s"),
    sandbox: str = run_option("sandbox"),
    memory_limit_mb: Optional[float] = run_option("memory_limit_mb"),
    log_limit_mb: float = run_option("log_limit_mb"),
    early_abort: bool = run_option("early_abort"),
    abort_k: float = run_option("abort_k"),
    abort_warmup: float = run_option("abort_warmup"),
    abort_patience: int = run_option("abort_patience"),
    preflight: Optional[bool] = run_option("preflight"),
    name: Optional[str] = typer.Option(None, help="Run id (default: time-stamped)."),
    runs_dir: Path = RunsDir,
) -> None:
    """Start a research run (no arguments: the offline nanogpt demo)."""
    given = [key for key in ctx.params if getattr(ctx.get_parameter_source(key), "name", None) != "DEFAULT"]
    config, where = config_from_options(ctx.params, given, config_file)
    implementer_flag = where["implementer_llm" if config.implementer_llm else "ideator_llm"]
    for option, spec in ((where["ideator_llm"], config.ideator_llm), (implementer_flag, config.implementer)):
        if spec != "catalog":
            check_spec(spec, option)  # a bad spec or a missing key stops before any run folder exists
    _check_sandbox(config)
    store = create_run(config, runs_dir, name)
    console.print(
        f"run [bold]{store.run_info().id}[/] in {store.run_dir} "
        f"(stop any time; `groundwork resume {store.run_dir}` continues it)"
    )
    _drive(store)


@app.command()
def resume(
    run_ref: str = typer.Argument(..., metavar="RUN", help="Run id or run folder."),
    max_dollars: Optional[float] = typer.Option(
        None, "--max-dollars", min=0, help="Raise (or set) the LLM spending cap."
    ),
    max_gpu_hours: Optional[float] = typer.Option(None, "--max-gpu-hours", help="Raise (or set) the GPU-hours cap."),
    max_hours: Optional[float] = typer.Option(None, "--max-hours", help="Raise (or set) the wall-time cap (hours)."),
    address: Optional[str] = typer.Option(
        None, "--address", help="Continue on another Ray cluster (auto, ray://HOST:10001, local)."
    ),
    artifacts_url: Optional[str] = typer.Option(
        None,
        "--artifacts-url",
        help="Continue with another artifact store; it must already hold the run's artifacts (copy them first).",
    ),
    runs_dir: Path = RunsDir,
) -> None:
    """Continue a stopped or killed run: nothing lost, nothing run twice."""
    store = RunStore(find_run(run_ref, runs_dir))
    if is_rl_run(store.run_dir):
        raise ValueError(f"{store.run_dir} is an RL run: continue it with `groundwork rl resume {store.run_dir}`")
    caps = {"max_dollars": max_dollars, "max_gpu_hours": max_gpu_hours, "max_hours": max_hours}
    caps = {k: v for k, v in caps.items() if v is not None}
    # Checked before the caps are stored: a bad value is named as its option, or as the
    # run's stored setting (an edited or older run), never as a validation dump.
    where = {name: f"{name} (stored in {store.run_dir})" for name in RunConfig.model_fields}
    build(RunConfig, {**where, **{name: flag_for(name) for name in caps}}, **{**store.run_info().config, **caps})
    if caps:
        store.update_config(**caps)
    for name, change in reconnect(store, address=address, artifacts_url=artifacts_url).items():
        console.print(f"{name}: {change} (recorded in the run's events)")
    if store.run_info().status == RunStatus.FINISHED:
        console.print("this run has already finished")
        print_summary(console, summarize(store))
        return
    _drive(store)


@app.command()
def status(
    run_ref: Optional[str] = typer.Argument(None, metavar="[RUN]", help="Run id or folder (default: latest)."),
    runs_dir: Path = RunsDir,
) -> None:
    """Show a run's progress and results."""
    store = RunStore(find_run(run_ref, runs_dir))
    print_summary(console, summarize(store))
    console.print(f"run folder: {store.run_dir}")


def _require(module: str, extra: str) -> None:
    """Stop with the install command when an optional extra's package is missing."""
    try:
        __import__(module)
    except ImportError:
        hint = escape(f"pip install 'groundwork[{extra}]'")  # unescaped, rich reads [extra] as markup
        console.print(f"[bold red]error:[/] this command needs {module}: {hint}")
        raise typer.Exit(2) from None


@app.command()
def report(
    run_refs: Optional[list[str]] = typer.Argument(
        None, metavar="[RUN]...", help="Run ids or folders; several make a comparison (default: the latest run)."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="HTML file to write (default: report.html, or report-vs-OTHERS.html, in the first run's folder).",
    ),
    categories_by: str = typer.Option(
        "auto",
        "--categories-by",
        help="Who labels idea categories: auto (the run's model when it has one, else keywords), keywords, "
        "or a model spec such as anthropic:MODEL.",
    ),
    runs_dir: Path = RunsDir,
) -> None:
    """Write a self-contained HTML report (plots embedded) of one run or a comparison of several."""
    _require("matplotlib", "report")
    from groundwork.analysis.categories import run_labeller
    from groundwork.analysis.details import load_details
    from groundwork.analysis.report import write_report

    folders = [find_run(ref, runs_dir) for ref in (run_refs or [None])]
    details = []
    for folder in folders:
        store = RunStore(folder)
        labeller, note = run_labeller(folder, store.run_info().config.get("ideator_llm", "catalog"), categories_by)
        if note:
            console.print(f"[yellow]{note}[/]")
        details.append(load_details(store, labeller))
    # A comparison goes beside the first run's own report, never over it.
    others = "-".join(f.name for f in folders[1:])
    target = out or folders[0] / ("report.html" if not others else f"report-vs-{others}.html")
    with console.status("drawing plots") as spinner:
        write_report(details, target, progress=lambda name: spinner.update(f"drawing plots: {name}"))
    console.print(f"report written to {target.resolve()}  (open it in a browser: file://{target.resolve()})")


@app.command()
def serve(
    runs_dir: Path = RunsDir,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    allow_writes: bool = typer.Option(
        False, "--allow-writes", help="Allow write actions (cancelling queued jobs), each needing the token."
    ),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="GROUNDWORK_DASHBOARD_TOKEN", help="Token for write actions (default: a random one)."
    ),
) -> None:
    """A live dashboard of runs, ideas and jobs in the browser (read-only unless --allow-writes)."""
    _require("uvicorn", "dashboard")
    _require("starlette", "dashboard")
    _require("matplotlib", "dashboard")
    import secrets

    import uvicorn

    from groundwork.dashboard.app import create_app

    if allow_writes:
        token = token or secrets.token_urlsafe(24)
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning[/]: binding {host} shows every run in {runs_dir} to anyone who can reach it")
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise typer.BadParameter(f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port") from None
    url = f"http://{host}:{port}/"
    console.print(f"dashboard of {runs_dir.resolve()} at {url}  (Ctrl+C stops it)")
    if allow_writes:
        console.print(f"writes allowed with token {token}; open {url}?token={token} to use them from the page")
    uvicorn.run(create_app(runs_dir, allow_writes=allow_writes, token=token), host=host, port=port, log_level="warning")


@app.command()
def export(
    run_ref: Optional[str] = typer.Argument(None, metavar="[RUN]", help="Run id or folder (default: the latest run)."),
    to: list[str] = typer.Option(..., "--to", help="Tracker: wandb or mlflow (repeat for both)."),
    project: str = typer.Option("groundwork", "--project", help="W&B project / MLflow experiment name."),
    entity: Optional[str] = typer.Option(None, "--wandb-entity", help="W&B team or user (default: yours)."),
    mlflow_uri: Optional[str] = typer.Option(
        None, "--mlflow-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)."
    ),
    runs_dir: Path = RunsDir,
) -> None:
    """Export a run to Weights & Biases and/or MLflow: one tracker run per job, idea and diff as artifacts."""
    from groundwork.analysis.details import load_details
    from groundwork.export.jobs import job_records
    from groundwork.export.trackers import MlflowTracker, TrackerNotReady, WandbTracker, export_records

    folder = find_run(run_ref, runs_dir)
    trackers = []
    for name in to:  # every tracker ready before anything is sent
        try:
            if name == "wandb":
                trackers.append(WandbTracker(project, entity, folder / "exports"))
            elif name == "mlflow":
                trackers.append(MlflowTracker(project, mlflow_uri))
            else:
                raise typer.BadParameter(f"unknown tracker {name!r}: use --to wandb or --to mlflow")
        except TrackerNotReady as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
    records = job_records(load_details(RunStore(folder)))
    for tracker in trackers:
        name = tracker.name
        with console.status(f"exporting to {name}") as spinner:
            try:
                sent, before = export_records(
                    folder,
                    records,
                    tracker,
                    on_sent=lambda r, s=spinner, n=name: s.update(f"exporting to {n}: {r.name}"),
                )
            except Exception as exc:  # the tracker's own errors (network, auth) come in many types
                console.print(
                    f"[bold red]error:[/] {name} export stopped: {type(exc).__name__}: {exc}\n"
                    "jobs sent before the error are remembered; run the same command again to continue",
                    highlight=False,
                )
                raise typer.Exit(1) from None
        waiting = len(records) - sent - before
        console.print(
            f"{name}: {sent} jobs exported"
            + (f", {before} sent before" if before else "")
            + (f", {waiting} still running (export again when they end)" if waiting else "")
        )


@env_app.command("list")
def env_list() -> None:
    """List the built-in environments."""
    table = Table(header_style="bold")
    for column in ("name", "metric", "profiles", "description"):
        table.add_column(column, overflow="fold")
    for name in builtin_names():
        m = load_environment(name).manifest
        table.add_row(
            name,
            f"{m.metric.name} ({m.metric.direction})",
            ", ".join(f"{p}{'*' if p == m.default_profile else ''}" for p in m.profiles),
            m.description,
        )
    console.print(table)
    console.print("* default profile")


@env_app.command("show")
def env_show(
    name: str = typer.Argument(..., help="Environment name or folder."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Show the goal and files this profile runs."),
) -> None:
    """Show an environment's goal, files, commands and profiles."""
    whole = load_environment(name)
    env = whole.for_profile(profile)
    m = env.manifest
    console.print(f"[bold]{m.name}[/]: {m.description}\n")
    console.print(f"[bold]goal shown to the ideator[/] (profile {m.default_profile})\n" + m.goal.strip() + "\n")
    console.print(
        f"metric: {m.metric.name} ({m.metric.direction}, {m.metric.unit}); "
        f"plausible range {list(m.metric.plausible_range)}"
    )
    console.print(
        f"editable: {', '.join(m.files.editable)}; hidden: {', '.join(m.files.hidden) or '-'}; "
        f"locked: {', '.join(m.files.locked) or '-'}"
    )
    console.print(f"train: {' '.join(m.run.train)}   evaluate: {' '.join(m.run.evaluate)}")
    table = Table(header_style="bold", title="profiles", title_justify="left")
    for column in ("profile", "budget", "resources", "codebase", "settings", "description"):
        table.add_column(column, overflow="fold")
    for pname in m.profiles:
        p = env.profile(pname)
        table.add_row(
            pname + ("*" if pname == m.default_profile else ""),
            p.describe_budget() + (f" + {p.grace_s:g}s grace" if p.budget == "time" else ""),
            f"{p.resources.gpus} GPU, {p.resources.cpus} CPU",
            whole.manifest.for_profile(pname).codebase,
            " ".join(f"{k}={v}" for k, v in p.env.items()),
            p.description,
        )
    console.print(table)
    console.print(f"* the profile shown (--profile); codebase: {env.codebase_dir}")


@env_app.command("check")
def env_check(
    name: str = typer.Argument(..., help="Environment name or folder."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p"),
    run: bool = typer.Option(False, "--run", help="Also train and evaluate the baseline once at a short budget."),
    run_budget: float = typer.Option(20.0, "--run-budget", min=1, help="Training budget of that run, seconds."),
) -> None:
    """Check that an environment can run here: manifest, catalog, tools, data; --run: one short baseline."""
    problems = []
    env = load_environment(name, profile=profile)
    console.print(f"[green]ok[/] manifest {env.root / 'environment.toml'}")
    resolved = env.profile()
    if env.catalog_path.is_file():
        console.print(f"[green]ok[/] catalog: {len(load_catalog(env.catalog_path, resolved.name))} ideas")
    else:
        # Not a problem: a run with a model (--llm) needs no catalog.
        console.print(f"[yellow]note[/] no {env.catalog_path.name}: runs need --llm (the offline catalog has no ideas)")
    if shutil.which("git") is None:
        problems.append("git is not installed; it applies patches (install it with your package manager)")
    else:
        console.print("[green]ok[/] git")
    try:
        import torch  # noqa: F401

        console.print(f"[green]ok[/] torch {torch.__version__}")
    except ImportError:
        problems.append(f"torch is not importable by {sys.executable}: run `python bootstrap.py` or pip install torch")
    if run:
        from groundwork.env_setup.check_run import check_run

        console.print(f"running the baseline once ({run_budget:g} s budget): prepare, train, evaluate")
        report = check_run(env, resolved, run_budget)
        _print_stages(report.stages)
        problems += report.problems
    else:
        from groundwork.env_setup.check_run import prepare_stage

        _, stage = prepare_stage(env, resolved)
        _print_stages([stage])
        if not stage.ok:
            problems.append(stage.detail)
    for problem in problems:
        console.print(f"[red]problem[/] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"environment {env.name!r} (profile {resolved.name}) is ready")


@env_app.command("baseline")
def env_baseline(
    name: str = typer.Argument(..., help="Environment name or folder."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p"),
    seeds: int = typer.Option(3, "--seeds", min=2, help="Baseline runs, each with its own seed."),
    slots: int = typer.Option(2, min=1, help="Runs in parallel."),
    budget: Optional[str] = run_option("budget"),
    runs_dir: Path = RunsDir,
) -> None:
    """Run the unmodified baseline with K seeds and store its noise floor (mean, std)."""
    config = build(
        RunConfig, environment=name, profile=profile, epochs=0, baseline_seeds=seeds, slots=slots, budget=budget
    )
    store = create_run(config, runs_dir)
    _drive(store)
    summary = summarize(store)
    path = save_noise_floor(summary, run_config(store).budget)
    mean, std = summary.noise or (0.0, 0.0)
    console.print(
        f"noise floor of {summary.environment} ({summary.profile}): {summary.metric} = "
        f"{mean:.4f} +- {std:.4f} over {len(summary.baseline_metrics)} seeds; saved to {path}"
    )


@env_app.command("prepare")
def env_prepare(
    name: str = typer.Argument(..., help="Environment name or folder."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p"),
) -> None:
    """Prepare an environment's data (idempotent)."""
    env = load_environment(name, profile=profile)
    data = env.prepare(env.profile())
    console.print(f"data ready in {data}")


def _print_stages(stages) -> None:
    for stage in stages:
        mark = "[green]ok[/]" if stage.ok else "[red]failed[/]"
        console.print(f"{mark} {stage.name} ({stage.seconds:.1f} s): {stage.detail}", highlight=False)


@env_app.command("init")
def env_init(
    path: Path = typer.Argument(..., help="The repository to scaffold an environment.toml for."),
    train: Optional[str] = typer.Option(None, "--train", help="Training script, relative to PATH."),
    evaluate: Optional[str] = typer.Option(None, "--evaluate", help="Evaluation script that writes the metric."),
    prepare: Optional[str] = typer.Option(None, "--prepare", help="Data preparation script ('' for none)."),
    metric: Optional[str] = typer.Option(None, "--metric-name", "--metric", help="Metric key the evaluation writes."),
    direction: Optional[str] = typer.Option(None, "--direction", help="minimize or maximize."),
    metric_range: Optional[str] = typer.Option(None, "--metric-range", help="Plausible range LOW,HIGH."),
    editable: Optional[list[str]] = typer.Option(None, "--editable", help="File ideas may edit (repeatable)."),
    locked: Optional[list[str]] = typer.Option(None, "--locked", help="Locked, hidden file (repeatable)."),
    training_files: Optional[list[str]] = typer.Option(
        None, "--training-files", help="Data files training may see (repeatable)."
    ),
    data_key: Optional[str] = typer.Option(None, "--data-key", help="Name of the prepared data folder."),
    data_file: Optional[str] = typer.Option(None, "--data-file", help="Root file holding the examples ('' for none)."),
    requirements: Optional[list[str]] = typer.Option(
        None, "--requirements", help="Requirements file or package of the environment (repeatable)."
    ),
    find_links: Optional[list[str]] = typer.Option(
        None, "--find-links", help="Folder of local wheels in the repository to install from (repeatable)."
    ),
    no_index: bool = typer.Option(False, "--no-index", help="Install the requirements only from --find-links."),
    inherit_packages: bool = typer.Option(
        True, "--inherit-packages/--no-inherit-packages", help="Layer them on Groundwork's own packages (torch, ...)."
    ),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Value of the script's steps flag."),
    budget: float = typer.Option(300.0, "--budget", min=1, help="Training budget of the default profile, seconds."),
    llm: Optional[str] = typer.Option(None, "--llm", help="Model that drafts the evaluation and data split."),
    yes: bool = typer.Option(False, "--yes", help="Accept the model's drafts without asking."),
    ask: Optional[bool] = typer.Option(None, "--ask/--no-ask", help="Ask for each value (default: on a terminal)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing environment.toml."),
) -> None:
    """Scaffold an environment.toml for an existing repository: infer, confirm, draft, validate."""
    from groundwork.env_setup.init_flow import init_environment
    from groundwork.environments.init_plan import InitOptions, parse_range

    options = InitOptions(
        train=train, evaluate=evaluate, prepare=prepare, metric=metric, direction=direction,
        metric_range=parse_range(metric_range), editable=editable, locked=locked, training_files=training_files,
        data_key=data_key, requirements=requirements, data_file=data_file, max_steps=max_steps, budget_s=budget,
        find_links=find_links, no_index=no_index,
        inherit_packages=inherit_packages,
    )  # fmt: skip
    interactive = sys.stdin.isatty() if ask is None else ask
    result = init_environment(
        path, options, llm_spec=llm, force=force,
        confirm=(lambda question: True) if yes or not interactive else (lambda q: typer.confirm(q, default=True)),
        say=lambda text: console.print(text, highlight=False, markup=False),
    )  # fmt: skip
    if result.problems:
        raise typer.Exit(1)
    console.print(f"review the goal and the plausible range, then: groundwork env check {path} --run")


@llm_app.command("export")
def llm_export(
    run_ref: str = typer.Argument(..., metavar="RUN", help="Run id or run folder."),
    out: Path = typer.Argument(..., help="The .jsonl file to write."),
    runs_dir: Path = RunsDir,
) -> None:
    """Export a run's recorded model calls, replayable anywhere with --llm replay:FILE."""
    count = export_recording(find_run(run_ref, runs_dir), out)
    console.print(f"wrote {count} calls to {out}; replay them with: groundwork run --llm replay:{out}")


def main() -> None:
    try:
        app()
    except (ManifestError, StoreError, FileExistsError, ValueError, RuntimeError, LLMError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
