"""`groundwork run`'s options and RunConfig stay one: every field has an option with the
field's default, help and choices; a --config file sits between the defaults and the flags."""

from __future__ import annotations

import inspect
import json
import types
import typing
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from conftest import groundwork_in_process
from groundwork import cli
from groundwork.cli_config import COMMA_SEPARATED, PORTFOLIO_LEADS
from groundwork.cli_errors import choices
from groundwork.config import RunConfig

LOCAL_A = "openai-compatible:a@http://localhost:1/v1"  # local servers: no key, nothing contacted
LOCAL_B = "openai-compatible:b@http://localhost:1/v1"


def _unreached(model: type[BaseModel], command) -> list[str]:
    """The model's fields that no parameter of `command` sets (a portfolio option also sets its lead)."""
    params = set(inspect.signature(command).parameters)
    covered = params | {PORTFOLIO_LEADS[p] for p in params & PORTFOLIO_LEADS.keys()}
    return [field for field in model.model_fields if field not in covered]


def test_every_run_config_field_has_a_run_option():
    assert _unreached(RunConfig, cli.run) == []


def test_the_check_fails_for_a_field_without_an_option():
    class Grown(RunConfig):  # a field added to the config but not to `run`
        new_knob: int = 3

    assert _unreached(Grown, cli.run) == ["new_knob"]


def _base(annotation) -> set:
    """The option types a field's annotation allows: Literal and str are text."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    if typing.get_origin(annotation) is typing.Literal or any(typing.get_origin(a) is typing.Literal for a in args):
        return {str}
    return {typing.get_origin(a) or a for a in args}


def test_each_option_has_its_fields_default_help_type_and_choices():
    hints = typing.get_type_hints(cli.run)
    options = inspect.signature(cli.run).parameters
    for field, info in RunConfig.model_fields.items():
        if field not in options:
            continue  # set through its portfolio option (checked above)
        option = options[field].default
        assert info.description, f"RunConfig.{field} needs a description: it is the option's help"
        assert option.help == info.description
        default = info.get_default(call_default_factory=True)
        if field in COMMA_SEPARATED:
            assert option.default == ",".join(default)
            assert _base(hints[field]) == {str}
            continue
        assert option.default == (None if isinstance(default, list) else default), field
        wanted = _base(info.annotation)
        got = _base(hints[field])
        assert got == wanted or (wanted == {str} and got == {Path}), f"--{field}: {got} for a {wanted} field"
        allowed = choices(RunConfig, field)
        assert (option.metavar or None) == (f"[{'|'.join(allowed)}]" if allowed else None), field


# One value per field, none its default, all valid together; a new field needs its line here.
SAMPLES: dict[str, tuple[list[str], object]] = {
    "environment": (["--env", "circle_packing"], "circle_packing"),
    "profile": (["-p", "small"], "small"),
    "search": (["--search", "steady-state"], "steady-state"),
    "backend": (["--backend", "ray"], "ray"),
    "address": (["--address", "auto"], "auto"),
    "artifacts_url": (["--artifacts-url", "/shared/art"], "/shared/art"),
    "slurm_partition": (["--slurm-partition", "gpu"], "gpu"),
    "slurm_account": (["--slurm-account", "lab"], "lab"),
    "sandbox": (["--sandbox", "off"], "off"),
    "memory_limit_mb": (["--memory-limit-mb", "512"], 512.0),
    "log_limit_mb": (["--log-limit-mb", "5"], 5.0),
    "lease_s": (["--lease-s", "30"], 30.0),
    "ideator_llm": (["--ideator-llm", LOCAL_A, "--ideator-llm", LOCAL_B], LOCAL_A),
    "ideator_llms": ([], [LOCAL_A, LOCAL_B]),
    "implementer_llm": (["--implementer-llm", LOCAL_B, "--implementer-llm", LOCAL_A], LOCAL_B),
    "implementer_llms": ([], [LOCAL_B, LOCAL_A]),
    "portfolio_floor": (["--portfolio-floor", "0.2"], 0.2),
    "max_dollars": (["--max-dollars", "3"], 3.0),
    "max_revisions": (["--max-revisions", "1"], 1),
    "max_debug_rounds": (["--max-debug-rounds", "0"], 0),
    "edit_format": (["--edit-format", "search_replace"], "search_replace"),
    "thinking_budget": (["--thinking-budget", "2048"], 2048),
    "reasoning_effort": (["--reasoning-effort", "high"], "high"),
    "llm_concurrency": (["--llm-concurrency", "3"], 3),
    "prompts_dir": (["--prompts", "my_prompts"], None),  # resolved: checked below
    "epochs": (["--epochs", "5"], 5),
    "baseline_seeds": (["--baseline-seeds", "3"], 3),
    "ideas_per_epoch": (["--ideas", "6"], 6),
    "slots": (["--slots", "4"], 4),
    "seed": (["--seed", "9"], 9),
    "budget": (["--budget", "time"], "time"),
    "time_budget_s": (["--time-budget", "30"], 30.0),
    "max_attempts": (["--max-attempts", "5"], 5),
    "exploit_start": (["--exploit-start", "0.4"], 0.4),
    "exploit_step": (["--exploit-step", "0.2"], 0.2),
    "exploit_every": (["--exploit-every", "3"], 3),
    "exploit_max": (["--exploit-max", "0.9"], 0.9),
    "islands": (["--islands", "2"], 2),
    "migrate_every": (["--migrate-every", "3"], 3),
    "migrants": (["--migrants", "2"], 2),
    "archive": (["--archive", "map-elites"], "map-elites"),
    "descriptors": (["--descriptors", "category,kind"], ["category", "kind"]),
    "quorum": (["--quorum", "0.5"], 0.5),
    "straggler_s": (["--straggler-s", "10"], 10.0),
    "confirm_seeds": (["--confirm-seeds", "2"], 2),
    "confirm_top": (["--confirm-top", "3"], 3),
    "max_gpu_hours": (["--max-gpu-hours", "4"], 4.0),
    "max_hours": (["--max-hours", "6"], 6.0),
    "novelty": (["--novelty", "auto"], "auto"),
    "early_abort": (["--early-abort"], True),
    "abort_k": (["--abort-k", "2"], 2.0),
    "abort_warmup": (["--abort-warmup", "0.5"], 0.5),
    "abort_patience": (["--abort-patience", "3"], 3),
    "preflight": (["--no-preflight"], False),
}


@pytest.fixture
def started(monkeypatch):
    """What `run` would start: create_run replaced by a stub recording the config."""
    seen: list[RunConfig] = []

    def create_run_stub(config, runs_dir, name):
        seen.append(config)
        raise typer.Exit(0)

    monkeypatch.setattr(cli, "create_run", create_run_stub)
    return seen


def _run(*args: str):
    return CliRunner().invoke(cli.app, ["run", *args])


def test_every_field_reaches_the_config_from_its_flag(started, tmp_path, monkeypatch):
    assert set(SAMPLES) == set(RunConfig.model_fields)
    monkeypatch.chdir(tmp_path)
    args = [arg for flags, _ in SAMPLES.values() for arg in flags]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    config = started[0]
    for field, (_, value) in SAMPLES.items():
        if field != "prompts_dir":
            assert getattr(config, field) == value, field
        assert getattr(config, field) != RunConfig.model_fields[field].get_default(call_default_factory=True), field
    assert config.prompts_dir == str(tmp_path / "my_prompts")


def test_no_options_give_the_defaults(started):
    assert _run().exit_code == 0
    assert started[0] == RunConfig()


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_config_file_sits_between_defaults_and_flags(started, tmp_path, suffix):
    settings = {"epochs": 5, "search": "best-of-n", "seed": 7, "descriptors": ["kind"]}
    path = tmp_path / f"run{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(settings))
    else:
        path.write_text('epochs = 5\nsearch = "best-of-n"\nseed = 7\ndescriptors = ["kind"]\n')
    # --epochs 2 is the default, typed: it still wins over the file's 5.
    assert _run("--config", str(path), "--epochs", "2", "--seed", "8").exit_code == 0
    config = started[0]
    assert (config.epochs, config.seed) == (2, 8)  # flags
    assert (config.search, config.descriptors) == ("best-of-n", ["kind"])  # the file
    assert config.slots == RunConfig().slots  # the default


def test_a_portfolio_in_a_file_leads_with_its_first_and_llm_replaces_it(started, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(f'ideator_llms = ["{LOCAL_A}", "{LOCAL_B}"]\n')
    assert _run("--config", str(path)).exit_code == 0
    assert (started[0].ideator_llm, started[0].ideator_models) == (LOCAL_A, [LOCAL_A, LOCAL_B])
    assert _run("--config", str(path), "--llm", LOCAL_B).exit_code == 0
    assert (started[1].ideator_llm, started[1].ideator_llms) == (LOCAL_B, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('search = "evolutionary"\n', "Invalid value for search (in {path}): 'evolutionary'; choose from evolution, "
         "steady-state, best-of-n"),
        ("epochs = -1\n", "Invalid value for epochs (in {path}): -1; must be greater than or equal to 0"),
        ('env = "nanogpt"\n', "--config {path}: unknown setting 'env'; the setting of --env is 'environment'"),
        ("epoch = 3\n", "--config {path}: unknown setting 'epoch'; did you mean 'epochs'?"),
        ("epochs = \n", "--config {path} is not valid TOML: "),
    ],
)  # fmt: skip
def test_config_file_errors_are_plain_and_name_the_file(tmp_path, monkeypatch, capsys, text, expected):
    path = tmp_path / "run.toml"
    path.write_text(text)
    runs = tmp_path / "runs"
    code, out = groundwork_in_process(monkeypatch, capsys, "run", "--config", str(path), "--runs-dir", str(runs))
    assert code == 2
    assert out.startswith("error: " + expected.format(path=path)), out
    assert not runs.exists()


def test_a_bad_flag_over_a_file_is_named_as_the_flag(tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.toml"
    path.write_text("slots = 3\n")
    code, out = groundwork_in_process(monkeypatch, capsys, "run", "--config", str(path), "--slots", "0",
                            "--runs-dir", str(tmp_path / "runs"))  # fmt: skip
    assert code == 2
    assert out == "error: Invalid value for --slots: 0; must be greater than or equal to 1"
