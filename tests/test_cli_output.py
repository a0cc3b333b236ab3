"""What the commands print: `status` piped keeps each idea on one line, and help pages show
no value type for a flag."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from groundwork import cli
from groundwork.config import RunConfig
from groundwork.console import CommandConsole
from groundwork.records import Idea, Job, JobOutcome, JobState, Patch, PatchStatus, PromptKind, Result
from groundwork.runs import create_run

TITLE = "Cosine learning-rate schedule with a longer warmup and a lower floor"  # over 60: shown cut at 57


def _run_with_one_result(runs: Path, toy_env: Path, metric: float) -> None:
    """A toy run holding one idea with its applied patch and a valid result."""
    store = create_run(RunConfig(environment=str(toy_env), epochs=1, ideas_per_epoch=1), runs, "r")
    idea = Idea(id="e1-01", epoch=1, index=1, title=TITLE, text="t", prompt_kind=PromptKind.SIMPLE, origin="catalog")
    store.add_ideas([idea])
    (store.run_dir / "patches").mkdir(exist_ok=True)
    (store.run_dir / "patches/e1-01.diff").write_text("")
    patch = Patch(
        id="e1-01-1", idea_id=idea.id, attempt=1, implementer="catalog", status=PatchStatus.APPLIED,
        diff_path="patches/e1-01.diff", diff_sha256="0",
    )  # fmt: skip
    job = Job(id="job-e1-01", idea_id=idea.id, patch_id=patch.id, backend="local")
    store.record_implementation(idea.id, [patch], job, None)
    store.transition_job(job.id, JobState.LEASED, slot=0)
    store.transition_job(job.id, JobState.RUNNING, started_at=time.time())
    outcome = JobOutcome(job_id=job.id, attempt=1, metric=metric, started_at=time.time(), ended_at=time.time())
    store.finish_job(outcome, Result(idea_id=idea.id, job_id=job.id, metric=metric))


def _narrow_terminal(monkeypatch, columns: int) -> None:
    """Simulation: the other standard streams are a terminal `columns` wide, COLUMNS unset."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=0: os.terminal_size((columns, 24)))


def test_status_piped_keeps_an_ideas_title_and_metric_on_one_line(toy_env, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    _run_with_one_result(runs, toy_env, 1.234567)
    _narrow_terminal(monkeypatch, 60)
    monkeypatch.setattr(sys, "argv", ["groundwork", "status", "r", "--runs-dir", str(runs)])
    with pytest.raises(SystemExit) as stop:
        cli.main()  # stdout is pytest's capture: not a terminal, as when piped
    assert stop.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    row = [line for line in lines if line.startswith("│ e1-01")]
    assert len(row) == 1, "\n".join(lines)
    assert TITLE[:57] + "..." in row[0] and "1.2346" in row[0]
    assert any("execution rate: 1/1 = 100%  (proposed 1" in line for line in lines)  # headline unwrapped too


class _Terminal:
    """Test double of a terminal's stdout: says it is a tty, keeps what is written."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_on_a_terminal_the_console_takes_its_width_and_columns_wins_when_set(monkeypatch):
    _narrow_terminal(monkeypatch, 60)
    assert CommandConsole(file=_Terminal()).width == 60
    assert CommandConsole(file=open(os.devnull, "w")).width > 10_000  # a file: never wrapped
    monkeypatch.setenv("COLUMNS", "90")
    assert CommandConsole(file=open(os.devnull, "w")).width == 90


def _commands(group, path: tuple[str, ...] = ()):
    yield path
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


def test_no_help_page_shows_a_value_type_for_a_flag():
    pages = list(_commands(typer.main.get_command(cli.app)))
    assert ("run",) in pages and ("env", "check") in pages and ("rl", "run") in pages
    for path in pages:
        result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        help_line = [line for line in result.output.splitlines() if "--help" in line]
        assert help_line and "<" not in help_line[0], (path, help_line)
        assert "<bool>" not in result.output, path  # --early-abort, --allow-writes ...: flags take no value
    run_help = CliRunner().invoke(cli.app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert "<int>" in run_help  # options that take a value keep their type


@pytest.mark.parametrize("argv", [["--help"], ["status", "--help"]])
def test_the_entry_point_help_shows_plain_help(argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["groundwork", *argv])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "--help" in out and "<bool>" not in out
