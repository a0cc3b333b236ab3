"""Broken manifests give errors that name the key, the value and what is allowed."""

from __future__ import annotations

import re
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
        (r'^codebase = "baseline"', 'codebase = "src"', r"codebase = 'src': folder .* does not exist"),
        (r"^\[metric\]", "[metric", r"not valid TOML"),
    ],
)
def test_broken_manifest_errors_are_specific(toy_env, old, new, expected):
    _break(toy_env, old, new)
    message = _error(toy_env)
    assert "environment.toml" in message
    assert re.search(expected, message, re.DOTALL), message


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
