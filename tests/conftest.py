from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# A terminal's size, as xdist's workers export it, would wrap the piped output tests read
# (rich takes COLUMNS when a console is made, at import): a test that wants a width sets its own.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

FIXTURES = Path(__file__).parent / "fixtures"
# The words of the RL tests' tiny policies: settings of the quadratic environment's knobs, and
# one knob it does not have (an idea that fails to apply).
KNOB_WORDS = [f"lr={v}" for v in ("1e-3", "3e-3", "1e-2", "3e-2", "1e-1", "3e-1", "1", "3")]
KNOB_WORDS += [f"warmup={v}" for v in (0, 10, 50)] + ["momentum=0.9"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Prepared data goes to a per-session cache, never the user's (session-scoped, so it
    is in place before any module-scoped fixture prepares data). Parallel workers
    (pytest-xdist) share one: a preparation waits on another's lock instead of repeating it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache = os.environ.get("GROUNDWORK_TEST_CACHE") or str(shared / "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GROUNDWORK_CACHE", cache)
        yield


@pytest.fixture
def toy_env(tmp_path: Path) -> Path:
    """A private copy of the seconds-fast toy environment."""
    dst = tmp_path / "toyenv"
    shutil.copytree(FIXTURES / "toyenv", dst)
    return dst


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1", **(extra or {})})
    if "TOY_LEDGER" in env:  # the toy environment's ledger lies outside the sandboxed work folder
        env["GROUNDWORK_SANDBOX_WRITABLE"] = env["TOY_LEDGER"]
    return env


GROUNDWORK = [sys.executable, "-m", "groundwork.cli"]

GATE_WAIT = """    while not os.path.exists(os.path.join(os.environ["TOY_GATE"], "open")):
        time.sleep(0.05)
"""


def set_toy_sleep(toy_env: Path, seconds: float) -> None:
    """Sets how long the toy's jobs train (its manifest's TOY_SLEEP_S), whatever it is now:
    a test that reads scores runs short jobs, one that must catch a job running, longer ones."""
    path = toy_env / "environment.toml"
    text, found = re.subn(r'^TOY_SLEEP_S = "[0-9.]+"$', f'TOY_SLEEP_S = "{seconds}"', path.read_text(), flags=re.M)
    assert found == 1, f"{path} has {found} TOY_SLEEP_S settings, not one"
    path.write_text(text)


def gated_toy(toy_env: Path, gate: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Makes the toy's jobs wait until `gate` (a folder, visible read-only in the sandbox)
    holds `open`, so a run keeps working until the test has seen what it waits for; returns
    the run's environment (`cli_env` with the gate and `extra`). Opening: (gate / "open").touch()."""
    gate.mkdir()
    train = toy_env / "baseline" / "train.py"
    train.write_text(train.read_text().replace("    time.sleep(sleep_s)\n", GATE_WAIT + "    time.sleep(sleep_s)\n"))
    path = toy_env / "environment.toml"
    path.write_text(
        path.read_text()
        .replace('pass_env = ["TOY_LEDGER"]', 'pass_env = ["TOY_LEDGER", "TOY_GATE"]')
        .replace("time_budget_s = 3", "time_budget_s = 300")  # the wait at the gate counts
    )
    return cli_env({"TOY_GATE": str(gate), **(extra or {})})


def patched_job(env, data_dir: Path, tmp_path: Path, new_files: dict[str, str] | None = None, **spec_args):
    """A JobSpec of `env` (as its profile runs it) in tmp_path/job, whose patch turns the
    codebase's files into `new_files` (a name the codebase lacks is a new file);
    `spec_args` go to `environment_job_spec`."""
    from groundwork.execution.job_spec import environment_job_spec
    from groundwork.patch.patching import unified_diff

    job_dir = tmp_path / "job"
    job_dir.mkdir(parents=True)
    diff_path = ""
    if new_files:
        codebase = env.codebase_dir
        old = {name: (codebase / name).read_text() for name in new_files if (codebase / name).is_file()}
        diff_path = str(tmp_path / "patch.diff")
        Path(diff_path).write_text(unified_diff(old, new_files))
    return environment_job_spec(env, env.profile(), data_dir, job_dir, diff_path=diff_path, **spec_args)


def groundwork_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the real entry point (`groundwork ARGS`) in this process: its exit status and its
    output, with line breaks and runs of spaces folded to one space."""
    from groundwork import cli

    monkeypatch.setattr(sys, "argv", ["groundwork", *args])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    captured = capsys.readouterr()
    return stop.value.code, " ".join((captured.out + captured.err).split())


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def requires(module: str, extra: str) -> pytest.MarkDecorator:
    """Skip a test, naming the extra to install, when an optional extra's `module` is missing."""
    return pytest.mark.skipif(
        not importable(module), reason=f"needs {module}, of the {extra} extra: pip install 'groundwork[{extra}]'"
    )


@pytest.fixture(scope="session")
def nanogpt_smoke_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One real nanogpt smoke run (baseline and two catalog ideas) through the CLI, shared by
    the tests that only read it: the CLI's answer and the runs folder holding it as `smoke`."""
    runs = tmp_path_factory.mktemp("nanogpt-smoke") / "runs"
    args = ["run", "--profile", "smoke", "--epochs", "1", "--ideas", "2", "--runs-dir", str(runs), "--name", "smoke"]
    proc = subprocess.run([*GROUNDWORK, *args], capture_output=True, text=True, env=cli_env(), timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, runs
