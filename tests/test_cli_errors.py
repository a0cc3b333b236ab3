"""The newcomer's errors: every bad option value in one plain style, install hints shown
with their [extra], and nothing left behind by a run that fails its checks."""

from __future__ import annotations

import sys

import pytest

from conftest import groundwork_in_process
from groundwork import cli
from groundwork.cli_errors import require_extras


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--search", "evolutionary", "Invalid value for --search: 'evolutionary'; choose from evolution, "
         "steady-state, best-of-n"),
        ("--reasoning-effort", "extreme", "Invalid value for --reasoning-effort: 'extreme'; choose from low, "
         "medium, high"),
        ("--budget", "weird", "Invalid value for --budget: 'weird'; choose from time, compute"),
        ("--edit-format", "patch", "Invalid value for --edit-format: 'patch'; choose from diff, search_replace"),
        ("--backend", "k8s", "Invalid value for --backend: 'k8s'; choose from local, ray, slurm"),
        ("--novelty", "vibes", "Invalid value for --novelty: 'vibes'; choose from text, embedding, auto"),
        ("--thinking-budget", "5", "Invalid value for --thinking-budget: 5; must be greater than or equal to 1024"),
    ],
)  # fmt: skip
def test_every_bad_choice_prints_one_plain_line(tmp_path, monkeypatch, capsys, option, value, expected):
    runs = tmp_path / "runs"
    code, out = groundwork_in_process(monkeypatch, capsys, "run", option, value, "--runs-dir", str(runs))
    assert code == 2
    assert out == f"error: {expected}"
    assert "pydantic" not in out and "validation error" not in out
    assert not runs.exists()


def test_a_check_across_options_keeps_its_own_words(tmp_path, monkeypatch, capsys):
    code, out = groundwork_in_process(monkeypatch, capsys, "run", "--early-abort", "--runs-dir", str(tmp_path / "runs"))
    assert code == 2
    assert out.startswith("error: --early-abort compares each job") and "Value error" not in out


def test_install_hints_keep_their_extra_in_brackets(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # simulation: matplotlib not installed
    with pytest.raises(cli.typer.Exit):
        cli._require("matplotlib", "report")
    assert "pip install 'groundwork[report]'" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # simulation: tokenizers not installed
    code, out = groundwork_in_process(monkeypatch, capsys, "rl", "tiny-model", "unused")
    assert code == 2
    assert out == (
        "error: `groundwork rl tiny-model` needs tokenizers, not installed here: pip install 'groundwork[rl]'"
    )


def test_no_key_run_stops_before_its_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    runs = tmp_path / "runs"
    local = "openai-compatible:m@http://localhost:1/v1"  # needs no key
    code, out = groundwork_in_process(monkeypatch, capsys, "run", "--ideator-llm", "anthropic:claude-x",
                            "--implementer-llm", local, "--runs-dir", str(runs))  # fmt: skip
    assert code == 2
    assert out.startswith("error: --ideator-llm anthropic:claude-x needs an API key: set ANTHROPIC_API_KEY")
    assert not runs.exists()


def test_bad_model_spec_stops_before_its_run_folder(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    code, out = groundwork_in_process(monkeypatch, capsys, "run", "--llm", "openai-compatible:http://x:1/v1:m",
                            "--runs-dir", str(runs))  # fmt: skip
    assert code == 2
    assert "error: --llm: model spec 'openai-compatible:http://x:1/v1:m': write openai-compatible:MODEL@" in out
    assert not runs.exists()
    code, out = groundwork_in_process(monkeypatch, capsys, "run", "--llm", "gemini:pro", "--runs-dir", str(runs))
    assert code == 2 and "unknown model provider 'gemini'" in out and not runs.exists()


def test_rl_run_without_transformers_names_the_install_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # simulation: transformers not installed
    runs = tmp_path / "runs"
    code, out = groundwork_in_process(monkeypatch, capsys, "rl", "run", "--model", "m", "--runs-dir", str(runs))
    assert code == 2
    assert out == "error: `groundwork rl run` needs transformers, not installed here: pip install 'groundwork[rl]'"
    assert not runs.exists()


def test_missing_torch_and_rl_extras_name_both_installs(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # simulation: neither installed
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ValueError, match=r"needs torch and peft, not installed here: "
                       r"pip install 'groundwork\[torch\]' 'groundwork\[rl\]'$"):  # fmt: skip
        require_extras("groundwork rl run", ["torch", "peft"])


def test_rl_run_bad_values_name_their_rl_options(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")  # rl run checks its extras before its options
    runs = tmp_path / "runs"
    code, out = groundwork_in_process(monkeypatch, capsys, "rl", "run", "--model", "m", "--dtype", "float8",
                            "--runs-dir", str(runs))  # fmt: skip
    assert code == 2 and not runs.exists()
    assert out == "error: Invalid value for --dtype: 'float8'; choose from auto, float32, bfloat16, float16"


def test_resume_names_a_bad_cap_and_a_bad_stored_setting_plainly(toy_env, tmp_path, monkeypatch, capsys):
    from groundwork.config import RunConfig
    from groundwork.runs import create_run

    runs = tmp_path / "runs"
    store = create_run(RunConfig(environment=str(toy_env)), runs, "r")
    code, out = groundwork_in_process(
        monkeypatch, capsys, "resume", "r", "--max-gpu-hours", "-1", "--runs-dir", str(runs)
    )
    assert code == 2
    assert out == "error: Invalid value for --max-gpu-hours: -1.0; must be greater than 0"
    assert store.run_info().config["max_gpu_hours"] is None  # the bad cap was not stored
    store.update_config(search="vibes")  # simulation: a run whose stored settings were edited by hand
    code, out = groundwork_in_process(monkeypatch, capsys, "resume", "r", "--runs-dir", str(runs))
    assert code == 2 and "pydantic" not in out and "validation error" not in out
    assert out == (
        f"error: Invalid value for search (stored in {store.run_dir}): 'vibes'; "
        "choose from evolution, steady-state, best-of-n"
    )
