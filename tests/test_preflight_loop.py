"""Pre-flight in a whole run: `groundwork run` on the toy environment with a pre-flight
profile, its implementer answers replayed from a recording. One idea's diff crashes at
import, is stopped at pre-flight, and its repair passes pre-flight and the full job; the
other's loss turns NaN, is stopped at pre-flight as diverged, and its repairs fail twice."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import GROUNDWORK, cli_env, requires
from groundwork.analysis.summary import summarize
from groundwork.records import FailureCategory
from groundwork.store import RunStore
from test_repair import _answer

# The toy's training writes "JOB_ID STAGE" to the ledger: a pre-flight's line says "pre".
LEDGER_LINE = (
    '        fh.write(os.environ["GROUNDWORK_JOB_ID"] + "\\n")\n',
    '        fh.write(os.environ["GROUNDWORK_JOB_ID"] + " " + os.environ.get("TOY_STAGE", "full") + "\\n")\n',
)
IMPORT_CRASH = ("import time\n", "import time\nimport toy_fast_kernels  # a module that does not exist\n")
GOOD = ("lr = 0.1  # the toy optimum is 0.3", "lr = 0.3  # the toy optimum is 0.3")
NAN = ('{"step": 1, "loss": 1.0}', '{"step": 1, "loss": float("nan")}')
NAN_AGAIN = ('{"step": 1, "loss": 1.0}', '{"step": 1, "loss": float("nan") * lr}')
INF = ('{"step": 1, "loss": 1.0}', '{"step": 1, "loss": float("inf")}')


def _toy_with_preflight(toy_env: Path) -> Path:
    train = toy_env / "baseline" / "train.py"
    text = train.read_text()
    assert LEDGER_LINE[0] in text
    train.write_text(text.replace(*LEDGER_LINE))
    manifest = toy_env / "environment.toml"
    text = manifest.read_text().replace("[run]\n", '[run]\npreflight = "pre"\n', 1)
    pre = '\n[profiles.pre]\ntime_budget_s = 3\n\n[profiles.pre.env]\nTOY_SLEEP_S = "0"\nTOY_STAGE = "pre"\n'
    manifest.write_text(text + pre)
    return toy_env


def _recording(path: Path, answers: dict[str, str]) -> str:
    """A recording `--implementer-llm replay:FILE` serves, one row per call key."""
    usage = {"input_tokens": 100, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 50}
    rows = [
        {
            "role": "implementer",
            "call_key": key,
            "fingerprint": f"recorded:{key}",
            "model": "recorded",
            "provider": "scripted",
            "epoch": 1,
            "idea_id": None,
            "text": text,
            "thinking": "",
            "usage": json.dumps({**usage, "thinking_tokens": 0}),
            "cost_usd": 0.001,
        }
        for key, text in answers.items()
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"replay:{path}"


@pytest.fixture
def replayed_run(toy_env, tmp_path):
    toy = _toy_with_preflight(toy_env)
    answers = {
        "implement:e1-01:attempt-1": _answer(toy, GOOD, IMPORT_CRASH),
        "repair:e1-01:round-1:attempt-1": _answer(toy, GOOD),
        "implement:e1-02:attempt-1": _answer(toy, NAN),
        "repair:e1-02:round-1:attempt-1": _answer(toy, NAN_AGAIN),
        "repair:e1-02:round-2:attempt-1": _answer(toy, INF),
    }
    ledger = tmp_path / "ledger.txt"
    runs = tmp_path / "runs"
    args = [*GROUNDWORK, "run", "--env", str(toy), "--runs-dir", str(runs), "--name", "r", "--epochs", "1"]
    args += ["--ideas", "2", "--slots", "1", "--max-revisions", "0", "--ideator-llm", "catalog"]
    args += ["--implementer-llm", _recording(tmp_path / "implementer.jsonl", answers)]
    done = subprocess.run(args, capture_output=True, text=True, env=cli_env({"TOY_LEDGER": str(ledger)}), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return RunStore(runs / "r"), Counter(ledger.read_text().splitlines()), done.stdout


def _attempt_log(store: RunStore, idea_id: str, attempt: int) -> str:
    return (store.run_dir / "jobs" / f"job-{idea_id}" / f"attempt-{attempt}" / "job.log").read_text()


def test_an_import_crash_is_stopped_at_preflight_and_its_repair_runs_in_full(replayed_run):
    store, ledger, _ = replayed_run
    result = store.results()["e1-01"]
    assert result.valid and result.repair_rounds == 1 and result.metric == pytest.approx(1.16)
    assert result.flags["preflight"]["passed"] is True and "stage" not in result.flags
    patches = store.patches("e1-01")
    assert [(p.attempt, p.repair_round, str(p.status)) for p in patches] == [(1, 0, "applied"), (2, 1, "applied")]
    # Attempt 1 never reached its full training: its log holds only the pre-flight's phases.
    first = _attempt_log(store, "e1-01", 1)
    assert "ModuleNotFoundError: No module named 'toy_fast_kernels'" in first
    assert "pre-flight failed: crashed" in first and first.count("===== groundwork: train (") == 1
    # The import crash wrote no ledger line; the repaired diff trained once at each stage.
    assert ledger["job-e1-01 pre"] == 1 and ledger["job-e1-01 full"] == 1
    # The repair was answered from the recording, not asked anew.
    (call,) = [c for c in store.llm_calls("implementer") if c["call_key"].startswith("repair:e1-01")]
    assert call["replayed"]


def test_a_nan_loss_is_stopped_at_preflight_as_diverged_and_two_failed_repairs_end_it(replayed_run):
    store, ledger, _ = replayed_run
    result = store.results()["e1-02"]
    assert result.failure == FailureCategory.DIVERGED and result.repair_rounds == 2
    assert result.flags["stage"] == "preflight" and result.flags["preflight"]["passed"] is False
    assert "pre-flight (profile pre) failed" in result.detail and "loss inf" in result.detail
    assert [p.repair_round for p in store.patches("e1-02")] == [0, 1, 2]
    assert store.job("job-e1-02").attempt == 3
    # Three pre-flights, and not one full training.
    assert ledger["job-e1-02 pre"] == 3 and ledger["job-e1-02 full"] == 0


def test_the_funnel_of_a_run_with_preflight_and_repair(replayed_run):
    store, _, stdout = replayed_run
    f = summarize(store).funnel
    assert (f.proposed, f.applied, f.preflight_passed, f.ran, f.valid, f.repaired) == (2, 2, 1, 1, 1, 1)
    assert f.preflight_caught == 2  # the repaired idea was caught once too
    assert [store.results()[i].preflight_stops for i in ("e1-01", "e1-02")] == [1, 3]
    flat = " ".join(stdout.split())
    assert "pre-flight passed 1 -> ran 1 -> valid metric 1, 1 of them repaired" in flat
    assert "2 caught at pre-flight" in flat


@requires("matplotlib", "report")
def test_the_report_shows_the_preflight_bar_and_what_it_caught(replayed_run):
    from groundwork.analysis import plots
    from groundwork.analysis.details import load_details
    from groundwork.analysis.report import render_report

    store, _, _ = replayed_run
    details = load_details(store)
    page = render_report([details])
    overview = page.split('<h2 id="progress">')[0]
    assert "1/2 = 50%; 2 caught at pre-flight; 1 saved by a repair round" in overview
    assert "passed its pre-flight (or had none)" in page
    assert plots.execution_funnel([details]).startswith(b"\x89PNG")
