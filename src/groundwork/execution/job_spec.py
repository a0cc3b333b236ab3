"""The JobSpec of one run of an environment's codebase: the one place that turns an
environment, a profile and a prepared data folder into what a job runner needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from groundwork.environments import Environment
from groundwork.environments.registry import ResolvedProfile
from groundwork.patch.codebase import file_sha256
from groundwork.protocols import JobSpec


def environment_job_spec(
    env: Environment,
    profile: ResolvedProfile,
    data_dir: Path,
    job_dir: Path,
    *,
    job_id: str,
    seed: int,
    attempt: int = 1,
    diff_path: str = "",
    codebase_hash: str = "",
    locked_hashes: dict[str, str] | None = None,
    time_budget_s: float | None = None,
    slot: int = 0,
    threads: int = 1,
    gpu_ids: Sequence[int] = (),
    sandbox: str = "auto",
    memory_limit_mb: float | None = 0,
    log_limit_mb: float = 50,
    abort_rule: dict | None = None,
    preflight: ResolvedProfile | None = None,
) -> JobSpec:
    """A job of `env` as `profile` runs it. Without `diff_path` it runs the unmodified
    baseline; without `locked_hashes` the locked files are hashed as they are now (a run
    passes the hashes it recorded when it started, so a changed file is caught). A
    `time_budget_s` makes it a time-budgeted job of that many seconds; otherwise the
    profile's budget holds (under a compute budget the kill limit, with no grace, ends
    training that overruns). A `preflight` profile (of the same codebase, its data
    prepared) makes the job run the patched code at that profile first."""
    manifest = env.manifest
    codebase = env.codebase_dir.resolve()
    profile = profile.with_budget(None, time_budget_s)
    if profile.budget == "compute" and not profile.resources.gpus:
        # A fixed thread count (the profile's cpus, not this machine's share) fixes the order
        # of floating-point reductions: one seed gives one number on any machine, any slots.
        threads = profile.resources.cpus
    # The environment's own interpreter (cached: built when its data was prepared), and the
    # request a worker that lacks it builds it from.
    request = env.interpreter_request()
    built = env.interpreter() if request else None
    if locked_hashes is None:
        locked_hashes = {rel: file_sha256(codebase / rel) for rel in manifest.files.locked}
    return JobSpec(
        job_id=job_id,
        attempt=attempt,
        job_dir=str(job_dir),
        baseline_dir=str(codebase),
        diff_path=diff_path,
        codebase_hash=codebase_hash,
        locked_hashes=locked_hashes,
        train_command=manifest.run.train,
        eval_command=manifest.run.evaluate,
        time_budget_s=profile.training_limit_s,
        grace_s=profile.grace_s if profile.budget == "time" else 0.0,
        eval_timeout_s=profile.eval_timeout_s,
        env={
            **profile.env,
            **env.data_env(data_dir),  # the whole folder, and training's view of it
            "GROUNDWORK_SEED": str(seed),
        },
        metric_name=manifest.metric.name,
        result_file=manifest.metric.result_file,
        plausible_range=manifest.metric.plausible_range,
        slot=slot,
        threads=threads,
        gpu_ids=list(gpu_ids),
        gpus=profile.resources.gpus,
        sandbox=sandbox,
        memory_limit_mb=memory_limit_mb,
        log_limit_mb=log_limit_mb,
        budget=profile.budget,
        environment=env.name,
        prepare_command=list(manifest.run.prepare),
        training_files=manifest.data.training_files,
        pass_env=list(manifest.run.pass_env),
        abort_rule=abort_rule,
        hidden_files=list(manifest.files.hidden),
        python=built.python if built else "",
        interpreter=request.to_dict() if request else None,
        preflight=_preflight(env, preflight, seed, threads) if preflight else None,
    )


def _preflight(env: Environment, profile: ResolvedProfile, seed: int, threads: int) -> dict:
    """What the runner needs to run the pre-flight profile: its commands, settings, data
    folders and budgets (always its own, whatever budget the run's jobs use)."""
    view = env.for_profile(profile.name)
    return {
        "profile": profile.name,
        "train_command": view.manifest.run.train,
        "eval_command": view.manifest.run.evaluate,
        "env": {**profile.env, **view.data_env(view.data_dir(profile)), "GROUNDWORK_SEED": str(seed)},
        "time_budget_s": profile.training_limit_s,
        "grace_s": profile.grace_s if profile.budget == "time" else 0.0,
        "eval_timeout_s": profile.eval_timeout_s,
        "budget": profile.budget,
        "threads": profile.resources.cpus if profile.budget == "compute" and not profile.resources.gpus else threads,
        "training_files": view.manifest.data.training_files,
        "prepare_command": list(view.manifest.run.prepare),  # a worker without its data prepares it
        "gpus": profile.resources.gpus,  # 0: it runs with no GPU visible, whatever the job holds
    }
