"""`groundwork rl ...` (train the ideator with GRPO) and `groundwork dataset export`
(ideas, diffs and rewards of runs as a dataset); added to the main command in cli.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Group
from rich.live import Live

from groundwork.analysis.summary import summarize
from groundwork.cli_config import run_option
from groundwork.cli_errors import RUN_FLAGS, build, require_extras
from groundwork.config import RunConfig
from groundwork.console import CommandConsole, print_summary, progress_view, throttled
from groundwork.llm.recording import BudgetExceeded
from groundwork.records import RunStatus
from groundwork.rl.config import RLConfig, is_rl_run, load_rl_config
from groundwork.rl.dataset import export_runs
from groundwork.rl.view import steps_table
from groundwork.runs import DEFAULT_RUNS_DIR, find_run
from groundwork.store import RunStore
from groundwork.store.step_log import StepLog

rl_app = typer.Typer(help="Reinforcement learning of the ideator from execution reward (GRPO).", no_args_is_help=True)
dataset_app = typer.Typer(help="Runs' ideas, diffs and rewards as datasets.", no_args_is_help=True)
console = CommandConsole()
# Config fields whose `rl run` option differs from the name of the field.
RL_FLAGS = {**RUN_FLAGS, "implementer_llm": "--implementer", "ideas_per_epoch": "--group-size", "learning_rate": "--lr"}
RunsDir = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Folder holding run folders.")


def _drive(store: RunStore) -> None:
    from groundwork.rl.trainer import RLTrainer  # torch and transformers load here, not at CLI start

    rl = load_rl_config(store.run_dir)
    log = StepLog(store.run_dir)
    started = time.time()
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def view() -> Group:
            return Group(progress_view(summarize(store), started), steps_table(log.rows(), rl.steps, last=8))

        refresh = throttled(lambda: live.update(view()))

        console.print(f"loading the policy {rl.model} ...")
        trainer = RLTrainer(store, refresh)
        env, profile = trainer.loop.env, trainer.loop.profile
        data_dir = env.prepare(profile)
        try:
            trainer.run(data_dir)
        except KeyboardInterrupt:
            live.stop()
            console.print(f"[yellow]interrupted[/]: continue with\n  groundwork rl resume {store.run_dir}")
            raise typer.Exit(130) from None
        except BudgetExceeded as exc:
            live.stop()
            console.print(f"[yellow]stopped[/]: {exc}. Continue with: groundwork rl resume {store.run_dir}")
            raise typer.Exit(3) from None
    _report(store)


def _report(store: RunStore) -> None:
    rl = load_rl_config(store.run_dir)
    print_summary(console, summarize(store))
    console.print(steps_table(StepLog(store.run_dir).rows(), rl.steps))
    console.print(
        f"run folder: {store.run_dir}  (policy checkpoints in rl/checkpoints/; ideas, diffs and rewards as a "
        f"dataset: groundwork dataset export {store.run_dir} --out ideas.parquet)"
    )


@rl_app.command("run")
def rl_run(
    model: str = typer.Option(..., "--model", "-m", help="Hugging Face model: a local folder or a cached name."),
    env: str = run_option("environment"),  # the options shared with `groundwork run` are RunConfig's
    profile: Optional[str] = run_option("profile"),
    implementer: str = typer.Option(
        "knobs",
        "--implementer",
        help="Who turns ideas into diffs: knobs (name=value hyperparameter ideas, no LLM) or a model "
        "(anthropic:MODEL, openai:MODEL, openai-compatible:MODEL@URL).",
    ),
    steps: int = typer.Option(20, min=1, help="GRPO steps."),
    group_size: int = typer.Option(8, "--group-size", "-g", min=2, help="Ideas sampled per prompt."),
    prompts_per_step: int = typer.Option(1, "--prompts-per-step", min=1, help="Groups per step."),
    learning_rate: float = typer.Option(1e-5, "--lr", min=0.0, help="Policy learning rate (AdamW)."),
    lora_rank: int = typer.Option(0, "--lora-rank", min=0, help="Train LoRA adapters of this rank (0: all weights)."),
    kl_beta: float = typer.Option(0.0, "--kl-beta", min=0.0, help="KL penalty to the starting policy."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="Longest idea (with thinking)."),
    temperature: float = typer.Option(1.0, min=0.01, help="Sampling temperature."),
    prompt: str = typer.Option("context", help="context (goal, rules and code) or goal (the goal alone)."),
    past_ideas: int = typer.Option(0, "--past-ideas", min=0, help="Best earlier ideas shown in the prompt."),
    failure_reward: float = typer.Option(-1.0, "--failure-reward", help="Reward of an idea that fails to run."),
    baseline_seeds: int = run_option("baseline_seeds"),
    slots: int = run_option("slots"),
    seed: int = run_option("seed", help="Seed for sampling and training."),
    time_budget: Optional[float] = run_option("time_budget_s"),
    max_dollars: Optional[float] = run_option("max_dollars", help="Cap on implementer LLM spend."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16, float16."),
    embedding_model: str = typer.Option(
        "auto", "--embedding-model", help="Sentence-embedding model for diversity (auto: offline MiniLM; none: off)."
    ),
    name: Optional[str] = typer.Option(None, help="Run id (default: time-stamped)."),
    runs_dir: Path = RunsDir,
) -> None:
    """Train a local model to propose better ideas, rewarded by their measured results."""
    require_extras("groundwork rl run", ["torch", "transformers", "tokenizers"] + (["peft"] if lora_rank else []))
    from groundwork.rl.trainer import create_rl_run

    config = build(
        RunConfig,
        RL_FLAGS,
        environment=env,
        profile=profile,
        ideator_llm=f"rl:{model}",
        implementer_llm=implementer,
        baseline_seeds=baseline_seeds,
        ideas_per_epoch=group_size * prompts_per_step,
        slots=slots,
        seed=seed,
        time_budget_s=time_budget,
        max_dollars=max_dollars,
    )
    rl = build(
        RLConfig,
        RL_FLAGS,
        model=model,
        lora_rank=lora_rank,
        steps=steps,
        prompts_per_step=prompts_per_step,
        group_size=group_size,
        learning_rate=learning_rate,
        kl_beta=kl_beta,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        prompt=prompt,
        past_ideas=past_ideas,
        failure_reward=failure_reward,
        seed=seed,
        device=device,
        dtype=dtype,
        embedding_model=None if embedding_model == "none" else embedding_model,
    )
    store = create_rl_run(config, rl, runs_dir, name)
    console.print(
        f"RL run [bold]{store.run_info().id}[/] in {store.run_dir} "
        f"(stop any time; `groundwork rl resume {store.run_dir}` continues it)"
    )
    _drive(store)


@rl_app.command("resume")
def rl_resume(
    run_ref: str = typer.Argument(..., metavar="RUN", help="Run id or run folder."),
    runs_dir: Path = RunsDir,
) -> None:
    """Continue a stopped or killed RL run from its last checkpoint."""
    from groundwork.rl.checkpoint import latest_checkpoint

    store = RunStore(find_run(run_ref, runs_dir))
    rl = load_rl_config(store.run_dir)
    if store.run_info().status == RunStatus.FINISHED and latest_checkpoint(store.run_dir)[0] >= rl.steps:
        console.print("this RL run has already finished")
        _report(store)
        return
    _drive(store)


@rl_app.command("status")
def rl_status(
    run_ref: Optional[str] = typer.Argument(None, metavar="[RUN]", help="Run id or folder (default: latest)."),
    runs_dir: Path = RunsDir,
) -> None:
    """An RL run's results and per-step figures (rewards, execution rate, diversity)."""
    store = RunStore(find_run(run_ref, runs_dir))
    if not is_rl_run(store.run_dir):
        raise ValueError(f"{store.run_dir} is not an RL run: `groundwork status` shows it")
    _report(store)


@rl_app.command("tiny-model")
def rl_tiny_model(
    folder: Optional[Path] = typer.Argument(
        None, help="Folder to write the model to (default: tiny-models/ENV-seedN in the cache, GROUNDWORK_CACHE)."
    ),
    env: str = typer.Option("nanogpt", "--env", "-e", help="Environment whose knobs make the vocabulary."),
    seed: int = typer.Option(0, help="Seed of the random weights."),
) -> None:
    """Build a tiny randomly initialised model whose words are the environment's knob
    settings (offline; for trying `groundwork rl run --implementer knobs` without a real model)."""
    require_extras("groundwork rl tiny-model", ["torch", "transformers", "tokenizers"])
    from groundwork.environments import load_environment
    from groundwork.rl.tiny import build_tiny_model, knob_words, tiny_model_dir

    environment = load_environment(env)
    words = knob_words(environment.codebase_dir, environment.manifest.files.editable)
    if not words:
        raise ValueError(f"environment {environment.name!r} has no numeric top-level knobs in its editable files")
    target = (folder or tiny_model_dir(environment.name, seed)).expanduser().resolve()
    build_tiny_model(target, words, seed=seed)
    # Jobs of seconds (quadratic) afford a larger group, whose advantages are steadier.
    job_limit_s = environment.manifest.profiles[environment.manifest.default_profile].compute_kill_limit_s
    group_size = 16 if job_limit_s <= 30 else 8
    console.print(
        f"wrote a tiny random model with {len(words)} knob settings to {target}; train it with:\n"
        f"  groundwork rl run --model {target} --env {env} --implementer knobs --prompt goal "
        f"--max-new-tokens 6 --lr 1e-2 --group-size {group_size} --steps 10",
        soft_wrap=True,  # the command stays one line, copyable
    )


@dataset_app.command("export")
def dataset_export(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="Run ids or folders (search or RL runs)."),
    out: list[Path] = typer.Option(..., "--out", "-o", help="A .jsonl or .parquet file to write (repeatable)."),
    failure_reward: Optional[float] = typer.Option(
        None, "--failure-reward", help="Reward of failed ideas (default: the RL run's, else -1)."
    ),
    runs_dir: Path = RunsDir,
) -> None:
    """Export every idea with its diff, result and reward, loadable with Hugging Face datasets."""
    for path in out:
        if path.suffix not in (".jsonl", ".parquet"):
            raise ValueError(f"--out {path}: write a .jsonl or a .parquet file")
    count = export_runs([find_run(r, runs_dir) for r in runs], out, failure_reward)
    for path in out:
        kind = "json" if path.suffix == ".jsonl" else "parquet"
        console.print(f"wrote {count} ideas to {path}  (datasets.load_dataset({kind!r}, data_files={str(path)!r}))")
