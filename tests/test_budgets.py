"""Budgets: a profile paces training by the clock or by compute (tokens, steps); the
manifest says which and how much, the run records the choice, and a compute-budgeted job
is killed only at its kill limit, with a message that says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from groundwork.config import RunConfig
from groundwork.environments import ManifestError, load_environment
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.runner import JobRunner
from groundwork.records import FailureCategory
from groundwork.runs import create_run, run_config

COMPUTE_PROFILE = """
[profiles.counted]
description = "a compute-budgeted profile"
budget = "compute"
compute_budget = {steps = 5}
kill_limit_s = 2.5
time_budget_s = 1

[profiles.counted.env]
TOY_SLEEP_S = "0.2"
"""


def _add(env_dir: Path, text: str) -> None:
    with open(env_dir / "environment.toml", "a") as fh:
        fh.write(text)


def _error(env_dir: Path) -> str:
    with pytest.raises(ManifestError) as info:
        load_environment(env_dir)
    return str(info.value)


@pytest.mark.parametrize(
    "profile, expected",
    [
        (
            'budget = "compute"\ntime_budget_s = 3',
            r'profiles\.p = .*budget = "compute" needs the amount.*compute_budget',
        ),
        ('budget = "wallclock"\ntime_budget_s = 3', r"profiles\.p\.budget = 'wallclock'.*'time' or 'compute'"),
        (
            "compute_budget = {tokens = 0}\ntime_budget_s = 3",
            r"profiles\.p\.compute_budget\.tokens = 0.*greater than 0",
        ),
        ("compute_budget = {tokens = 1.5}\ntime_budget_s = 3", r"compute_budget\.tokens = 1\.5.*valid integer"),
        ("compute_budget = {tokens = true}\ntime_budget_s = 3", r"compute_budget\.tokens = True.*valid integer"),
        ('compute_budget = {tokens = "9"}\ntime_budget_s = 3', r"compute_budget\.tokens = '9'.*valid integer"),
        ("compute_budget = {Tokens = 9}\ntime_budget_s = 3", r"compute_budget\.Tokens.*\[a-z\]"),
        (
            "kill_limit_s = 60\ntime_budget_s = 3",
            r"profiles\.p = .*kill_limit_s is the wall-clock limit.*compute_budget",
        ),
    ],
)
def test_bad_budgets_are_named(toy_env, profile, expected):
    _add(toy_env, f"\n[profiles.p]\n{profile}\n")
    assert re.search(expected, _error(toy_env), re.DOTALL), _error(toy_env)


def test_a_compute_profile_tells_the_code_its_budget_and_time_stays_an_option(toy_env):
    _add(toy_env, COMPUTE_PROFILE)
    env = load_environment(toy_env)
    counted = env.profile("counted")
    assert counted.budget == "compute" and counted.training_limit_s == 2.5
    assert counted.env["GROUNDWORK_BUDGET"] == "compute" and counted.env["GROUNDWORK_COMPUTE_STEPS"] == "5"
    assert counted.describe_budget() == "5 steps (killed after 2.5 s)"
    timed = env.profile("counted", budget="time")
    assert timed.env["GROUNDWORK_BUDGET"] == "time" and timed.training_limit_s == 1
    assert timed.env["GROUNDWORK_COMPUTE_STEPS"] == "5"  # under a time budget, a cap
    assert timed.describe_budget() == "1 s or 5 steps, whichever comes first"
    quick = env.profile("quick")  # no compute budget: time only
    assert quick.budget == "time" and "GROUNDWORK_COMPUTE_STEPS" not in quick.env
    with pytest.raises(ValueError, match=r"profile 'quick' has no compute budget.*--budget time.*compute_budget"):
        env.profile("quick", budget="compute")
    # A kill limit by default: several time budgets.
    _add(toy_env, '\n[profiles.bare]\nbudget = "compute"\ncompute_budget = {tokens = 7}\ntime_budget_s = 2\n')
    assert load_environment(toy_env).profile("bare").kill_limit_s == 8


def test_the_budget_is_recorded_in_the_run_config(toy_env, tmp_path):
    _add(toy_env, COMPUTE_PROFILE)
    store = create_run(RunConfig(environment=str(toy_env), profile="counted"), tmp_path / "runs", name="a")
    assert run_config(store).budget == "compute"
    store = create_run(RunConfig(environment=str(toy_env), profile="counted", budget="time"), tmp_path / "runs")
    assert run_config(store).budget == "time"
    store = create_run(RunConfig(environment=str(toy_env), profile="counted", time_budget_s=4), tmp_path / "runs")
    assert run_config(store).budget == "time" and run_config(store).time_budget_s == 4
    with pytest.raises(ValueError, match="has no compute budget"):
        create_run(RunConfig(environment=str(toy_env), budget="compute"), tmp_path / "runs")
    with pytest.raises(ValidationError, match="give one of the two"):
        RunConfig(budget="compute", time_budget_s=3)


def test_builtin_cpu_profiles_budget_by_compute_and_gpu_profiles_by_time():
    for name, unit in (("nanogpt", "TOKENS"), ("grpo", "STEPS")):
        env = load_environment(name)
        for profile in ("tiny", "smoke"):
            resolved = env.profile(profile)
            assert resolved.budget == "compute" and int(resolved.env[f"GROUNDWORK_COMPUTE_{unit}"]) > 0
            assert resolved.kill_limit_s >= 60  # room for interpreter and torch start-up on a busy machine
        for profile in ("small", "full"):
            assert env.profile(profile).budget == "time"
    micro, tiny = load_environment("nanogpt").profile("micro"), load_environment("nanogpt").profile("tiny")
    assert micro.budget == "compute" and 3 * micro.compute_budget["tokens"] <= tiny.compute_budget["tokens"]


def test_a_compute_job_past_its_kill_limit_is_timed_out_with_that_reason(toy_env, tmp_path):
    """The toy trains for 5 s, past the 2.5 s kill limit (which has no grace added)."""
    _add(toy_env, COMPUTE_PROFILE.replace('TOY_SLEEP_S = "0.2"', 'TOY_SLEEP_S = "5"'))
    env = load_environment(toy_env, profile="counted")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    spec = environment_job_spec(env, env.profile(), tmp_path / "data", job_dir, job_id="job-slow", seed=0)
    assert spec.budget == "compute" and spec.time_budget_s == 2.5 and spec.grace_s == 0
    assert spec.env["GROUNDWORK_BUDGET"] == "compute"
    outcome = JobRunner(spec).run()
    assert outcome.failure == FailureCategory.TIMED_OUT
    assert "kill limit of a compute-budgeted job (2.5s" in outcome.detail
    assert outcome.flags["train_seconds"] < 5
    timed = environment_job_spec(env, env.profile(), tmp_path / "data", job_dir, job_id="j", seed=0, time_budget_s=9)
    assert timed.budget == "time" and timed.time_budget_s == 9 and timed.env["GROUNDWORK_BUDGET"] == "time"
