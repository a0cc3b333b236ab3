"""The `groundwork` command: one verb per user task."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from groundwork.analysis.summary import save_noise_floor, summarize
from groundwork.config import RunConfig
from groundwork.console import print_summary, progress_view
from groundwork.environments import ManifestError, builtin_names, load_environment
from groundwork.ideation.catalog import load_catalog
from groundwork.llm.base import LLMError
from groundwork.llm.recording import BudgetExceeded, export_recording
from groundwork.loop import ResearchLoop
from groundwork.runs import DEFAULT_RUNS_DIR, create_run, find_run
from groundwork.store import RunStore, StoreError

app = typer.Typer(help="Execution-grounded automated AI research.", no_args_is_help=True, add_completion=False)
env_app = typer.Typer(help="Research environments: list, inspect, check, prepare.", no_args_is_help=True)
app.add_typer(env_app, name="env")
llm_app = typer.Typer(help="Model calls recorded in runs.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")
console = Console()

RunsDir = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Folder holding run folders.")


def _drive(store: RunStore) -> None:
    """Run or resume the loop with a live view; print the results table at the end."""
    loop = ResearchLoop(store)
    console.print(f"data for {loop.env.name} ({loop.profile.name}): {loop.env.data_dir(loop.profile)}")
    loop.data_dir = loop.env.prepare(loop.profile)  # shows its own progress the first time
    started = time.time()
    last = 0.0
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def refresh() -> None:
            nonlocal last
            if time.time() - last >= 0.5:
                last = time.time()
                live.update(progress_view(summarize(store), started))

        loop.on_change = refresh
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
            console.print(
                f"[yellow]stopped[/]: {exc}. Jobs already queued were finished. Continue with a higher cap:\n"
                f"  groundwork resume {store.run_dir} --max-dollars AMOUNT"
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
    env: str = typer.Option(
        "nanogpt", "--env", "-e", help="Built-in environment name or folder with environment.toml."
    ),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Scale profile (default: the environment's)."),
    epochs: int = typer.Option(2, min=0, help="Epochs of ideas after the baseline."),
    search: str = typer.Option(
        "evolution", "--search", help="evolution (exploit + explore) or best-of-n (the control)."
    ),
    baseline_seeds: int = typer.Option(
        1, "--baseline-seeds", min=1, help="Baseline runs with different seeds (noise)."
    ),
    ideas: int = typer.Option(4, "--ideas", min=1, help="Ideas per epoch."),
    slots: int = typer.Option(2, min=1, help="Jobs run in parallel."),
    seed: int = typer.Option(0, help="Seed for the search and for training."),
    time_budget: Optional[float] = typer.Option(
        None, "--time-budget", min=0.1, help="Override the profile's training budget (seconds)."
    ),
    name: Optional[str] = typer.Option(None, help="Run id (default: time-stamped)."),
    llm: str = typer.Option(
        "catalog",
        "--llm",
        help="Ideas and diffs by: catalog (offline, no LLM), anthropic:MODEL, "
        "openai:MODEL, openai-compatible:MODEL@BASE_URL, replay:RUN|FILE|NAME.",
    ),
    ideator_llm: Optional[str] = typer.Option(None, "--ideator-llm", help="Model for ideas only (default: --llm)."),
    implementer_llm: Optional[str] = typer.Option(
        None, "--implementer-llm", help="Model for diffs only (default: the ideator's)."
    ),
    max_dollars: Optional[float] = typer.Option(
        None, "--max-dollars", min=0, help="Stop cleanly when LLM spend reaches this."
    ),
    edit_format: str = typer.Option("diff", "--edit-format", help="Implementer output: diff or search_replace."),
    max_revisions: int = typer.Option(2, "--max-revisions", min=0, help="Self-revisions after a patch fails."),
    thinking_budget: Optional[int] = typer.Option(
        None, "--thinking-budget", help="Anthropic extended thinking tokens."
    ),
    reasoning_effort: Optional[str] = typer.Option(
        None, "--reasoning-effort", help="OpenAI reasoning effort: low, medium, high."
    ),
    prompts: Optional[Path] = typer.Option(
        None, "--prompts", help="Folder of prompt templates overriding the built-in ones."
    ),
    llm_concurrency: int = typer.Option(8, "--llm-concurrency", min=1, help="Model calls in flight at once."),
    backend: str = typer.Option("local", "--backend", help="Where jobs run: local, ray or slurm."),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster: auto, ray://HOST:10001 (default: start a local one)."
    ),
    artifacts_url: Optional[str] = typer.Option(
        None, "--artifacts-url", help="fsspec URL workers can reach (s3://..., /shared/...); default: the run folder."
    ),
    slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", help="Slurm partition for jobs."),
    sandbox: str = typer.Option("auto", "--sandbox", help="auto (bubblewrap where it runs), required, or off."),
    memory_limit_mb: float = typer.Option(0, "--memory-limit-mb", min=0, help="Per job; 0: no limit."),
    runs_dir: Path = RunsDir,
) -> None:
    """Start a research run (no arguments: the offline nanogpt demo)."""
    config = RunConfig(
        search=search,
        baseline_seeds=baseline_seeds,
        environment=env,
        profile=profile,
        epochs=epochs,
        ideas_per_epoch=ideas,
        slots=slots,
        seed=seed,
        time_budget_s=time_budget,
        ideator_llm=ideator_llm or llm,
        implementer_llm=implementer_llm,
        max_dollars=max_dollars,
        edit_format=edit_format,
        max_revisions=max_revisions,
        thinking_budget=thinking_budget,
        reasoning_effort=reasoning_effort,
        prompts_dir=str(prompts.resolve()) if prompts else None,
        llm_concurrency=llm_concurrency,
        backend=backend,
        address=address,
        artifacts_url=artifacts_url,
        slurm_partition=slurm_partition,
        sandbox=sandbox,
        memory_limit_mb=memory_limit_mb,
    )
    _check_sandbox(config)
    store = create_run(config, runs_dir, name)
    console.print(
        f"run [bold]{store.run_info()['id']}[/] in {store.run_dir} "
        f"(stop any time; `groundwork resume {store.run_dir}` continues it)"
    )
    _drive(store)


@app.command()
def resume(
    run_ref: str = typer.Argument(..., metavar="RUN", help="Run id or run folder."),
    max_dollars: Optional[float] = typer.Option(
        None, "--max-dollars", min=0, help="Raise (or set) the LLM spending cap."
    ),
    runs_dir: Path = RunsDir,
) -> None:
    """Continue a stopped or killed run: nothing lost, nothing run twice."""
    store = RunStore(find_run(run_ref, runs_dir))
    if max_dollars is not None:
        store.update_config(max_dollars=max_dollars)
    if store.run_info()["status"] == "finished":
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
def env_show(name: str = typer.Argument(..., help="Environment name or folder.")) -> None:
    """Show an environment's goal, files, commands and profiles."""
    env = load_environment(name)
    m = env.manifest
    console.print(f"[bold]{m.name}[/]: {m.description}\n")
    console.print("[bold]goal shown to the ideator[/]\n" + m.goal.strip() + "\n")
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
    for column in ("profile", "budget", "resources", "settings", "description"):
        table.add_column(column, overflow="fold")
    for pname in m.profiles:
        p = env.profile(pname)
        table.add_row(
            pname + ("*" if pname == m.default_profile else ""),
            f"{p.time_budget_s:g}s + {p.grace_s:g}s grace",
            f"{p.resources.gpus} GPU, {p.resources.cpus} CPU",
            " ".join(f"{k}={v}" for k, v in p.env.items()),
            p.description,
        )
    console.print(table)
    console.print(f"codebase: {env.codebase_dir}")


@env_app.command("check")
def env_check(
    name: str = typer.Argument(..., help="Environment name or folder."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p"),
) -> None:
    """Check that an environment can run here: manifest, catalog, tools, data."""
    problems = []
    env = load_environment(name)
    console.print(f"[green]ok[/] manifest {env.root / 'environment.toml'}")
    resolved = env.profile(profile)
    if env.catalog_path.is_file():
        console.print(f"[green]ok[/] catalog: {len(load_catalog(env.catalog_path))} ideas")
    else:
        problems.append("no catalog.toml: the offline catalog ideator cannot run here")
    if shutil.which("git") is None:
        problems.append("git is not installed; it applies patches (install it with your package manager)")
    else:
        console.print("[green]ok[/] git")
    try:
        import torch  # noqa: F401

        console.print(f"[green]ok[/] torch {torch.__version__}")
    except ImportError:
        problems.append(f"torch is not importable by {sys.executable}: run `python bootstrap.py` or pip install torch")
    try:
        data = env.prepare(resolved, quiet=True)
        console.print(f"[green]ok[/] data prepared in {data}")
    except RuntimeError as exc:
        problems.append(str(exc))
    for problem in problems:
        console.print(f"[red]problem[/] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print(f"environment {env.name!r} (profile {resolved.name}) is ready")


@env_app.command("baseline")
def env_baseline(
    name: str = typer.Argument(..., help="Environment name or folder."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p"),
    seeds: int = typer.Option(3, "--seeds", min=2, help="Baseline runs, each with its own seed."),
    slots: int = typer.Option(2, min=1, help="Runs in parallel."),
    runs_dir: Path = RunsDir,
) -> None:
    """Run the unmodified baseline with K seeds and store its noise floor (mean, std)."""
    config = RunConfig(environment=name, profile=profile, epochs=0, baseline_seeds=seeds, slots=slots)
    store = create_run(config, runs_dir)
    _drive(store)
    summary = summarize(store)
    path = save_noise_floor(summary)
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
    env = load_environment(name)
    data = env.prepare(env.profile(profile))
    console.print(f"data ready in {data}")


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
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
