"""Run-time repair: a model's patch that applies but whose run crashes goes back to the
implementer with the log's end, up to --max-debug-rounds times; each round is a patch
attempt and a new attempt of the idea's job. Driven on the toy environment with a scripted
model (a test double) behind the recording LLM, so costs and replay are the real ones."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest

from conftest import GROUNDWORK, cli_env
from groundwork.analysis.summary import summarize
from groundwork.config import RunConfig
from groundwork.environments import load_environment
from groundwork.implementation.llm_implementer import LLMImplementer
from groundwork.implementation.repair import log_excerpt, non_finite_loss, repairable
from groundwork.llm.base import LLMError, LLMRequest
from groundwork.llm.pricing import PriceTable
from groundwork.llm.recording import RecordingLLM, ReplayLLM
from groundwork.loop import ResearchLoop
from groundwork.patch.patching import PatchPolicy, unified_diff
from groundwork.prompting import PromptLibrary
from groundwork.records import FailureCategory, JobOutcome, JobState, PromptKind, Result
from groundwork.runs import create_run, run_config
from groundwork.store import RunStore
from groundwork.wiring import build_components
from llm_stub import StubServer, last_user_text
from scripted_llm import ScriptedTestLLM

GOOD = ("lr = 0.1  # the toy optimum is 0.3", "lr = 0.3  # the toy optimum is 0.3")
CRASH = ("    time.sleep(sleep_s)\n", "    time.sleep(sleep_s / undefined_width)\n")  # after the ledger line
TAMPER = ('if __name__ == "__main__":\n', "if __name__ == \"__main__\":\n    open('evaluate.py', 'a').write('#')\n")


class SimulatedKill(BaseException):
    """Stands for kill -9 at that point: nothing after it runs."""


def _answer(toy_env: Path, *changes: tuple[str, str]) -> str:
    original = (toy_env / "baseline" / "train.py").read_text()
    new = original
    for old, replacement in changes:
        assert old in new
        new = new.replace(old, replacement, 1)
    return f"Here is the change.\n\n```diff\n{unified_diff({'train.py': original}, {'train.py': new})}```\n"


def _loop(store: RunStore, script) -> tuple[ResearchLoop, ScriptedTestLLM]:
    env = load_environment(store.run_dir / "environment")
    config = run_config(store)
    parts = build_components(env, env.profile(), config, store.run_dir)
    model = ScriptedTestLLM(script)
    policy = PatchPolicy(protected=frozenset(env.manifest.files.locked) | frozenset(env.manifest.files.hidden))
    implementer = LLMImplementer(
        RecordingLLM(model, store.run_dir, PriceTable.load(), None, 1),
        env,
        PromptLibrary(),
        policy,
        env.profile().time_budget_s,
        max_revisions=0,
    )
    return ResearchLoop(store, dataclasses.replace(parts, implementer=implementer, implementation_workers=1)), model


@pytest.fixture
def new_run(toy_env, tmp_path, monkeypatch):
    ledger = tmp_path / "ledger.txt"
    monkeypatch.setenv("TOY_LEDGER", str(ledger))  # each training run appends its job id
    monkeypatch.setenv("GROUNDWORK_SANDBOX_WRITABLE", str(ledger))

    def make(**config) -> RunStore:
        return create_run(
            RunConfig(**{"environment": str(toy_env), "epochs": 1, "ideas_per_epoch": 1, "slots": 1, **config}),
            tmp_path / "runs",
        )

    make.ledger = ledger
    return make


def _by_key(answers: dict[str, str]):
    """A script answering by call kind and round: 'implement', 'repair:round-1', ..."""

    def script(request: LLMRequest) -> str:
        kind = request.call_key.split(":")[0]
        if kind == "repair":
            kind += ":" + request.call_key.split(":")[2]
        answer = answers[kind]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return script


def _the_idea(store: RunStore):
    (idea,) = [i for i in store.ideas() if i.epoch == 1 and i.prompt_kind != PromptKind.CONFIRM]
    return idea


def test_a_crashing_patch_is_repaired_and_its_idea_counts_as_saved_by_repair(toy_env, new_run):
    store = new_run(confirm_seeds=1)
    loop, model = _loop(
        store, _by_key({"implement": _answer(toy_env, GOOD, CRASH), "repair:round-1": _answer(toy_env, GOOD)})
    )
    loop.run()
    idea = _the_idea(store)
    result = store.results()[idea.id]
    assert result.valid and result.repair_rounds == 1 and result.metric == pytest.approx(1.16)
    patches = store.patches(idea.id)
    assert [(p.attempt, p.repair_round, str(p.status)) for p in patches] == [(1, 0, "applied"), (2, 1, "applied")]
    for p in patches:
        assert (store.run_dir / "patches" / f"{idea.id}.attempt-{p.attempt}.diff").is_file()
    job = store.job(f"job-{idea.id}")
    assert job.attempt == 2 and job.patch_id == patches[1].id and job.state == JobState.DONE
    # The repair call saw the traceback's error line and went through the recording LLM.
    (repair,) = [r for r in model.requests if r.call_key.startswith("repair:")]
    prompt = repair.messages[-1]["content"]
    assert "training exited with code 1" in prompt and "undefined_width" in repair.messages[-2]["content"]
    assert prompt.count("NameError: name 'undefined_width' is not defined") == 1  # the log's end, shown once
    assert [c["call_key"] for c in store.llm_calls("implementer")][-1] == f"repair:{idea.id}:round-1:attempt-1"
    funnel = summarize(store).funnel
    assert (funnel.proposed, funnel.valid, funnel.repaired) == (1, 1, 1)
    # Its confirmation re-runs the patch that ran last: the repaired one.
    assert store.job(f"job-{idea.id}-seed1").patch_id == patches[1].id
    assert store.results()[f"{idea.id}-seed1"].valid


def test_a_repair_that_fails_twice_ends_the_idea_failed_with_three_attempts(toy_env, new_run):
    store = new_run()
    crashes = [_answer(toy_env, GOOD, (CRASH[0], CRASH[1].replace("undefined_width", name))) for name in "abc"]
    answers = {"implement": crashes[0], "repair:round-1": crashes[1], "repair:round-2": crashes[2]}
    loop, _ = _loop(store, _by_key(answers))
    loop.run()
    idea = _the_idea(store)
    result = store.results()[idea.id]
    assert result.failure == FailureCategory.CRASHED and result.repair_rounds == 2
    assert [p.repair_round for p in store.patches(idea.id)] == [0, 1, 2]
    assert store.job(f"job-{idea.id}").attempt == 3
    assert Counter(new_run.ledger.read_text().split())[f"job-{idea.id}"] == 3  # each round trained once
    assert summarize(store).funnel.repaired == 0


def test_a_repair_that_repeats_the_failed_diff_is_not_run_again(toy_env, new_run):
    store = new_run()
    crash = _answer(toy_env, GOOD, CRASH)
    loop, _ = _loop(store, _by_key({"implement": crash, "repair:round-1": crash}))
    loop.run()
    idea = _the_idea(store)
    assert store.results()[idea.id].failure == FailureCategory.CRASHED
    assert len(store.patches(idea.id)) == 2 and store.job(f"job-{idea.id}").attempt == 1
    assert any("the one that failed" in e["detail"] for e in store.events("job"))


def test_max_debug_rounds_zero_turns_repair_off(toy_env, new_run):
    store = new_run(max_debug_rounds=0)
    loop, model = _loop(store, _by_key({"implement": _answer(toy_env, GOOD, CRASH)}))
    loop.run()
    assert store.results()[_the_idea(store).id].failure == FailureCategory.CRASHED
    assert not [r for r in model.requests if r.call_key.startswith("repair:")]


def test_a_tampering_run_is_final_never_repaired(toy_env, new_run):
    store = new_run()
    loop, model = _loop(store, _by_key({"implement": _answer(toy_env, GOOD, TAMPER)}))
    loop.run()
    idea = _the_idea(store)
    assert store.results()[idea.id].failure == FailureCategory.EVAL_TAMPERED
    assert len(store.patches(idea.id)) == 1
    assert not [r for r in model.requests if r.call_key.startswith("repair:")]


def test_the_baseline_is_never_repaired(toy_env, new_run):
    (toy_env / "baseline" / "train.py").write_text("raise SystemExit('broken baseline')\n")
    store = new_run(epochs=0)
    loop, model = _loop(store, _by_key({}))
    with contextlib.suppress(Exception):  # a failed baseline may stop the run; it is recorded first
        loop.run()
    assert store.results()["baseline"].failure == FailureCategory.CRASHED
    assert not model.requests


def test_a_repair_call_without_an_answer_means_no_repair(toy_env, new_run):
    """As a replay whose recording has no repair call: the idea ends with its failure."""
    store = new_run()
    missing = LLMError("replay of 'x' has no implementer answer left for repair:e1-01:round-1:attempt-1")
    loop, _ = _loop(store, _by_key({"implement": _answer(toy_env, GOOD, CRASH), "repair:round-1": missing}))
    loop.run()
    idea = _the_idea(store)
    assert store.results()[idea.id].failure == FailureCategory.CRASHED and len(store.patches(idea.id)) == 1
    assert any("no repair: replay of" in e["detail"] for e in store.events("job"))
    assert store.run_info().status == "finished"


def test_replay_has_no_answer_for_a_repair_call_of_a_recording_without_one():
    calls = [
        {
            "role": "implementer",
            "model": "m",
            "fingerprint": "f",
            "call_key": "implement:e1-01:attempt-1",
            "epoch": 1,
            "text": "x",
            "thinking": "",
            "usage": "{}",
            "cost_usd": 0.0,
            "latency_s": 0.0,
        }
    ]
    replay = ReplayLLM(calls, "implementer", "rec")
    request = LLMRequest("implementer", "repair:e1-01:round-1:attempt-1", "s", "c", [], metadata={"epoch": 1})
    with pytest.raises(LLMError):
        replay.complete(request)


@pytest.mark.parametrize("stop_at", ["repair call", "recording the repair"])
def test_resume_mid_repair_loses_and_repeats_nothing(toy_env, new_run, monkeypatch, stop_at):
    store = new_run()
    crash, good = _answer(toy_env, GOOD, CRASH), _answer(toy_env, GOOD)
    first = {"implement": crash, "repair:round-1": SimulatedKill() if stop_at == "repair call" else good}
    loop, _ = _loop(store, _by_key(first))
    with monkeypatch.context() as patch, pytest.raises(SimulatedKill):
        if stop_at == "recording the repair":  # the answer is recorded; the round's records are not
            patch.setattr(RunStore, "record_repair", lambda *a, **k: (_ for _ in ()).throw(SimulatedKill()))
        loop.run()
    idea = _the_idea(store)
    (held,) = store.jobs_awaiting_repair()
    assert held.idea_id == idea.id and idea.id not in store.results()

    store = RunStore(store.run_dir)  # a fresh controller, as `groundwork resume` starts
    loop, model = _loop(store, _by_key({"implement": crash, "repair:round-1": good}))
    loop.run()
    result = store.results()[idea.id]
    assert result.valid and result.repair_rounds == 1
    assert [p.repair_round for p in store.patches(idea.id)] == [0, 1]
    assert Counter(new_run.ledger.read_text().split())[f"job-{idea.id}"] == 2  # the crash, then the repair
    repair_calls = [c for c in store.llm_calls("implementer") if c["call_key"].startswith("repair:")]
    paid = [c for c in repair_calls if not c["replayed"]]
    assert len(paid) == 1  # an answer recorded before the kill is reused, not asked again
    assert len([r for r in model.requests if r.call_key.startswith("repair:")]) == (
        1 if stop_at == "repair call" else 0
    )


def test_only_crashes_and_missing_metrics_without_a_failed_check_are_repairable():
    def outcome(failure, **flags):
        return JobOutcome(job_id="j", attempt=1, failure=failure, flags=flags, started_at=0.0, ended_at=1.0)

    assert repairable(outcome(FailureCategory.CRASHED)) and repairable(outcome(FailureCategory.NO_METRIC))
    for final in (FailureCategory.TIMED_OUT, FailureCategory.EVAL_TAMPERED, FailureCategory.METRIC_IMPLAUSIBLE):
        assert not repairable(outcome(final))
    assert not repairable(outcome(FailureCategory.CRASHED, causality_ok=False))
    assert repairable(outcome(FailureCategory.CRASHED, eval_hash_ok=True))


def test_log_excerpt_keeps_the_error_line_within_its_budget():
    traceback = [
        "Traceback (most recent call last):",
        '  File "train.py", line 9, in <module>',
        "ZeroDivisionError: division by zero",
    ]
    log = "\n".join(
        [f"step {i} | loss 2.0" for i in range(500)] + traceback + [f"cleanup {i}" * 20 for i in range(300)]
    )
    excerpt = log_excerpt(log, 2000)
    assert len(excerpt) <= 2000
    assert "ZeroDivisionError: division by zero" in excerpt and "Traceback (most recent call last):" in excerpt
    assert excerpt.rstrip().endswith("cleanup 299" * 20)  # the end is kept too
    assert log_excerpt("short\nlog", 2000) == "short\nlog"
    assert non_finite_loss("step 40 | loss nan | lr 1e-3") and not non_finite_loss("step 40 | loss 2.1")


@pytest.mark.slow
def test_kill_9_while_the_repair_call_waits_then_resume_finishes_the_repair(toy_env, tmp_path):
    """The CLI path against the local HTTP stub: the controller is killed (SIGKILL) while the
    repair call is in flight; `groundwork resume` asks again and runs the repaired patch once."""
    runs, ledger = tmp_path / "runs", tmp_path / "ledger.txt"
    asked, release = threading.Event(), threading.Event()
    crash, good = _answer(toy_env, GOOD, CRASH), _answer(toy_env, GOOD)

    def reply(body) -> str:
        prompt = last_user_text(body)
        if "research scientist" in body["messages"][0]["content"]:
            return (
                "<idea>\n<title>Raise the learning rate</title>\n<category>hyperparameter</category>\n"
                "<description>Set lr to 0.3 in train.py, the toy optimum.</description>\n"
                "<changes>train.py: lr = 0.3</changes>\n</idea>"
            )
        if "the run failed" in prompt:
            asked.set()
            release.wait(60)  # the first controller dies while waiting here
            return good
        return crash

    with StubServer(reply) as stub:
        args = ["--runs-dir", str(runs)]
        run = [
            *GROUNDWORK,
            "run",
            "--env",
            str(toy_env),
            *args,
            "--name",
            "r",
            "--llm",
            f"openai-compatible:m@{stub.url}/v1",
        ]
        env = cli_env({"TOY_LEDGER": str(ledger), "OPENAI_API_KEY": "stub"})
        proc = subprocess.Popen(
            [*run, "--epochs", "1", "--ideas", "1"],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert asked.wait(120), "the repair call never came"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            release.set()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        store = RunStore(runs / "r")
        assert [j.idea_id for j in store.jobs_awaiting_repair()] == ["e1-01"] and "e1-01" not in store.results()
        resumed = subprocess.run(
            [*GROUNDWORK, "resume", "r", *args], env=env, capture_output=True, text=True, timeout=240
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "1 of them repaired" in resumed.stdout
    store = RunStore(runs / "r")
    result = store.results()["e1-01"]
    assert result.valid and result.repair_rounds == 1
    assert [p.repair_round for p in store.patches("e1-01")] == [0, 1]
    assert Counter(ledger.read_text().split())["job-e1-01"] == 2  # the crash, then the repair: none twice
    keys = [c["call_key"] for c in store.llm_calls("implementer")]
    assert keys == ["implement:e1-01:attempt-1", "repair:e1-01:round-1:attempt-1"]


def test_the_store_holds_a_failed_result_until_the_repair_round_is_recorded(toy_env, tmp_path):
    from groundwork.records import Idea, Job, Patch, PatchStatus
    from groundwork.store.sqlite_store import StoreError

    store = create_run(RunConfig(environment=str(toy_env)), tmp_path / "runs")
    store.add_epoch(1, [Idea(id="i", epoch=1, index=1, title="t", text="x", prompt_kind="simple", origin="m")])

    def patch(n: int) -> Patch:
        return Patch(
            id=f"i.p{n}",
            idea_id="i",
            attempt=n,
            implementer="m",
            status=PatchStatus.APPLIED,
            diff_path=f"patches/i.attempt-{n}.diff",
            diff_sha256=str(n),
        )

    store.record_implementation("i", [patch(1)], Job(id="job-i", idea_id="i", patch_id="i.p1", backend="local"), None)
    with pytest.raises(StoreError, match="not awaiting a repair"):
        store.record_repair("job-i", [patch(2)], "i.p2")
    store.transition_job("job-i", JobState.LEASED)
    crashed = JobOutcome(job_id="job-i", attempt=1, failure=FailureCategory.CRASHED, started_at=0.0, ended_at=1.0)
    with pytest.raises(StoreError, match="outcome of attempt 2"):
        store.hold_for_repair(crashed.model_copy(update={"attempt": 2}), Result(idea_id="i"))
    store.hold_for_repair(crashed, Result(idea_id="i", job_id="job-i", failure=FailureCategory.CRASHED))
    assert [j.id for j in store.jobs_awaiting_repair()] == ["job-i"] and store.results() == {}
    store.record_repair("job-i", [patch(2)], "i.p2")
    job = store.job("job-i")
    assert (job.state, job.attempt, job.repairs, job.patch_id, job.awaiting_repair) == (
        JobState.QUEUED,
        2,
        1,
        "i.p2",
        None,
    )
    assert not store.jobs_awaiting_repair() and store.results() == {}


def test_a_lost_worker_of_a_repair_round_still_gets_its_retries(toy_env, tmp_path):
    """Lost-worker retries (max_attempts) count apart from repair rounds, which are attempts too."""
    import types

    from groundwork.execution.scheduler import Scheduler
    from groundwork.records import Idea, Job, Patch, PatchStatus

    store = create_run(RunConfig(environment=str(toy_env)), tmp_path / "runs")
    store.add_epoch(1, [Idea(id="i", epoch=1, index=1, title="t", text="x", prompt_kind="simple", origin="m")])
    patch = Patch(
        id="i.p3", idea_id="i", attempt=3, implementer="m", status=PatchStatus.APPLIED, diff_path="p", diff_sha256="s"
    )
    job = Job(id="job-i", idea_id="i", patch_id="i.p3", backend="local", attempt=3, repairs=2)
    store.record_implementation("i", [patch], job, None)
    store.transition_job("job-i", JobState.LEASED)
    scheduler = Scheduler(store, types.SimpleNamespace(slots=1, wakeup=None), lambda job: None, max_attempts=3)
    scheduler._lost(store.job("job-i"), "its worker died")
    assert store.job("job-i").state == JobState.QUEUED and store.job("job-i").attempt == 4 and not store.results()
