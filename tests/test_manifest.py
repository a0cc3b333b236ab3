"""Broken manifests give errors that name the key, the value and what is allowed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from groundwork.environments import ManifestError, builtin_names, load_environment


def _break(env_dir: Path, old: str, new: str) -> None:
    path = env_dir / "environment.toml"
    text = path.read_text()
    assert re.search(old, text, re.MULTILINE), old
    path.write_text(re.sub(old, new, text, count=1, flags=re.MULTILINE))


def _error(env_dir: Path) -> str:
    with pytest.raises(ManifestError) as info:
        load_environment(env_dir)
    return str(info.value)


def test_fixture_and_builtin_manifests_load(toy_env):
    env = load_environment(toy_env)
    assert env.name == "toy" and env.profile().name == "quick"
    assert env.visible_files() == ["train.py"]
    assert "nanogpt" in builtin_names()
    nanogpt = load_environment("nanogpt")
    assert nanogpt.manifest.metric.direction == "minimize"
    assert {"tiny", "smoke"} <= set(nanogpt.manifest.profiles)
    assert "evaluate.py" not in nanogpt.visible_files()


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (r'^direction = "minimize"', 'direction = "down"', r"metric\.direction = 'down'.*'minimize' or 'maximize'"),
        (r"^plausible_range = .*$", "plausible_range = [5.0, 1.0]", r"metric\.plausible_range.*low must be below high"),
        (r"^time_budget_s = 3", 'time_budget_s = "soon"', r"profiles\.quick\.time_budget_s = 'soon'.*valid number"),
        (r"^time_budget_s = 3", "time_budget_s = -1", r"profiles\.quick\.time_budget_s = -1.*greater than 0"),
        (r"^time_budget_s = 3", "time_budget = 3", r"profiles\.quick\.time_budget_s: required key is missing"),
        (r"^grace_s = 2", "grace_seconds = 2", r"run\.grace_seconds: unknown key"),
        (
            r'^default_profile = "quick"',
            'default_profile = "huge"',
            r"default_profile = 'huge' is not a profile.*\['quick'\]",
        ),
        (
            r'^editable = \["train.py"\]',
            'editable = ["train.py", "evaluate.py"]',
            r"editable and hidden/locked.*evaluate\.py",
        ),
        (r'^editable = \["train.py"\]', 'editable = ["model.py"]', r"files\.editable: 'model\.py' does not exist"),
        (r'^locked = \["evaluate.py"\]', 'locked = ["../outside.py"]', r"relative to the codebase.*\.\./outside\.py"),
        (r"^time_budget_s = 3", "time_budget_s = true", r"profiles\.quick\.time_budget_s = True: .*not true/false"),
        (r"^grace_s = 2", "grace_s = false", r"run\.grace_s = False: .*not true/false"),
        (r"^plausible_range = .*$", "plausible_range = [false, true]", r"metric\.plausible_range.*not true/false"),
        (r"^\[files\]", "[files]\nallow_delete = 1", r"files\.allow_delete = 1: .*valid boolean"),
        (r"^\[files\]", '[files]\nallow_new = ["/tmp/*.py"]', r"files\.allow_new\.0 = '/tmp/\*\.py'.*relative"),
        (r'^codebase = "baseline"', 'codebase = "src"', r"codebase = 'src': folder .* does not exist"),
        (r"^\[metric\]", "[metric", r"not valid TOML"),
    ],
)
def test_broken_manifest_errors_are_specific(toy_env, old, new, expected):
    _break(toy_env, old, new)
    message = _error(toy_env)
    assert "environment.toml" in message
    assert re.search(expected, message, re.DOTALL), message


def test_every_bad_path_of_a_list_is_reported(toy_env):
    _break(toy_env, r'^hidden = \["evaluate.py"\]', 'hidden = ["/etc/passwd", "evaluate.py", "../up.py", ""]')
    _break(toy_env, r"^\[profiles.quick\]", '[data]\ntraining_files = ["a/b", "ok.bin", ".."]\n\n[profiles.quick]')
    problems = _error(toy_env).splitlines()
    for where, value in [
        ("files.hidden.0", "'/etc/passwd'"),
        ("files.hidden.2", "'../up.py'"),
        ("files.hidden.3", "''"),
        ("data.training_files.0", "'a/b'"),
        ("data.training_files.2", "'..'"),
    ]:
        assert any(f"{where} = {value}:" in line for line in problems), (where, problems)
    assert not any("files.hidden.1" in line or "training_files.1" in line for line in problems)


def test_missing_sections_are_all_listed(toy_env):
    path = toy_env / "environment.toml"
    path.write_text('name = "toy"\ngoal = "g"\ndefault_profile = "quick"\n')
    message = _error(toy_env)
    for key in ("metric", "files", "run", "profiles"):
        assert f"{key}: required key is missing" in message


def test_unknown_environment_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown environment 'nanogtp'.*nanogpt"):
        load_environment("nanogtp")
    with pytest.raises(ManifestError, match="has no environment.toml"):
        load_environment(tmp_path)


def test_unknown_profile_names_the_choices(toy_env):
    with pytest.raises(ValueError, match="no profile 'large'; choose one of: quick"):
        load_environment(toy_env).profile("large")


def _add_wide_profile(env_dir: Path) -> None:
    """A profile with its own codebase (the toy's with width 8) and its own goal."""
    shutil.copytree(env_dir / "baseline", env_dir / "wide")
    train = env_dir / "wide" / "train.py"
    train.write_text(train.read_text().replace("width = 4 ", "width = 8 "))
    with (env_dir / "environment.toml").open("a") as fh:
        fh.write('\n[profiles.wide]\ntime_budget_s = 3\ncodebase = "wide"\ngoal = "The wide goal."\n')


def test_a_profile_brings_its_own_codebase_and_goal(toy_env):
    _add_wide_profile(toy_env)
    env = load_environment(toy_env)
    assert env.manifest.goal.startswith("Minimise") and env.codebase_dir.name == "baseline"
    wide = load_environment(toy_env, profile="wide")
    assert wide.manifest.goal == "The wide goal." and wide.codebase_dir == toy_env / "wide"
    assert wide.profile().name == "wide" and wide.manifest.files == env.manifest.files  # files: the defaults
    assert "width = 8" in (wide.codebase_dir / "train.py").read_text()
    # A profile's missing codebase is named by the profile's key.
    _break(toy_env, r'^codebase = "wide"', 'codebase = "wider"')
    assert re.search(r"profiles\.wide\.codebase = 'wider': folder .* does not exist", _error(toy_env))


def test_a_run_of_a_profile_runs_that_profiles_codebase(toy_env, tmp_path):
    from conftest import GROUNDWORK, cli_env
    from groundwork.runs import run_environment
    from groundwork.store import RunStore

    _add_wide_profile(toy_env)
    runs = tmp_path / "runs"
    args = [*GROUNDWORK, "env", "baseline", str(toy_env), "--profile", "wide", "--seeds", "2", "--runs-dir", str(runs)]
    proc = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run_dir] = list(runs.iterdir())
    snapshot = run_environment(RunStore(run_dir))
    assert snapshot.manifest.goal == "The wide goal." and snapshot.codebase_dir.name == "wide"
    [job] = RunStore(run_dir).jobs()[:1]
    spec = json.loads((run_dir / job.job_dir / "spec.json").read_text())
    assert spec["baseline_dir"].endswith("environment/wide")
    assert "noise floor of toy (wide): loss = 1.4000 +- 0.0000 over 2 seeds" in proc.stdout  # width 8, not 4


def test_env_show_tells_each_profiles_codebase_and_the_shown_profiles_goal():
    from typer.testing import CliRunner

    from groundwork.cli import app

    shown = CliRunner().invoke(app, ["env", "show", "grpo", "--profile", "small"], env={"COLUMNS": "220"})
    assert shown.exit_code == 0, shown.output
    assert "goal shown to the ideator (profile small)" in shown.output and "The task is MATH" in shown.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[4].strip() for line in shown.output.splitlines() if "GPU," in line
    }
    assert rows["tiny"] == "baseline" and rows["small*"] == "math" and rows["full"] == "math"
