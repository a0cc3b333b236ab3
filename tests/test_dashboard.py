"""`groundwork serve` end to end: the real server, a real run working while the page is
open, and a real headless browser (Debian's chromium driven by playwright). The
screenshot stays as an artifact in test-artifacts/."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from browser import ARTIFACTS, browser_page, require_chromium
from conftest import GROUNDWORK, cli_env, gated_toy
from groundwork.config import RunConfig
from groundwork.records import FailureCategory, Idea, Job, Patch, PatchStatus, PromptKind
from groundwork.runs import create_run
from groundwork.store import RunStore

pytest.importorskip("starlette", reason="the dashboard needs the dashboard extra: pip install 'groundwork[dashboard]'")
from groundwork.dashboard.app import create_app  # noqa: E402

PLOT_LOADED = "(img => img.complete && img.naturalWidth > 300)(document.getElementById('best-plot'))"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout}s")


@pytest.mark.slow
@pytest.mark.e2e
def test_dashboard_follows_a_running_search_in_a_real_browser(toy_env, tmp_path):
    require_chromium()
    from playwright.sync_api import expect

    gate = tmp_path / "gate"
    run_env = gated_toy(toy_env, gate)  # the baseline job waits until the page has seen the run working
    runs = tmp_path / "runs"
    port = _free_port()
    run = subprocess.Popen(
        [
            *GROUNDWORK,
            "run",
            "--env",
            str(toy_env),
            "--runs-dir",
            str(runs),
            "--name",
            "live",
            "--epochs",
            "1",
            "--ideas",
            "2",
            "--slots",
            "1",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=run_env,
    )
    server = subprocess.Popen(
        [*GROUNDWORK, "serve", "--runs-dir", str(runs), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/")
        # Bound to this machine only, by default.
        proc = psutil.Process(server.pid)
        connections = proc.net_connections() if hasattr(proc, "net_connections") else proc.connections()
        listening = [c.laddr for c in connections if c.status == "LISTEN"]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
        with browser_page(tmp_path / "chromium-profile") as page:
            page.goto(base + "/")
            expect(page.locator("#runs")).to_contain_text("live", timeout=30_000)
            page.click("text=live")
            expect(page.locator("#run-status")).to_contain_text("running", timeout=30_000)
            first_plot = page.locator("#best-plot").get_attribute("src")
            (gate / "open").touch()  # seen running: the jobs may go on
            # The page follows the run without a reload: a result arrives, the plot is redrawn.
            expect(page.locator("#ideas")).to_contain_text("ok", timeout=60_000)
            expect(page.locator("#jobs")).to_contain_text("done", timeout=60_000)
            page.wait_for_function(PLOT_LOADED, timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-running.png"), full_page=True)  # mid-run
            page.wait_for_function(
                f"document.getElementById('best-plot').src.indexOf({first_plot!r}) < 0", timeout=60_000
            )
            page.wait_for_function(PLOT_LOADED, timeout=30_000)
            expect(page.locator("#run-status")).to_contain_text("finished", timeout=120_000)
            expect(page.locator("#ideas")).to_contain_text("e1-02", timeout=10_000)
            shot = ARTIFACTS / "dashboard-run.png"
            page.wait_for_timeout(2500)  # one more poll: the final plot
            page.screenshot(path=str(shot), full_page=True)
            print(f"dashboard screenshot: {shot}")
            # An idea: its diff and the tail of its job's log.
            page.click("#ideas >> text=e1-01")
            expect(page.locator("#diff")).to_contain_text("+++ b/train.py")
            expect(page.locator("#log")).to_contain_text("groundwork: evaluate (locked)")
            page.screenshot(path=str(ARTIFACTS / "dashboard-idea.png"), full_page=True)
            # Read-only: the write action is refused.
            answer = page.evaluate(
                "fetch('/api/runs/live/jobs/job-e1-01/cancel', {method: 'POST'}).then(r => r.status)"
            )
            assert answer == 403
        assert run.wait(timeout=60) == 0
    finally:
        for proc in (run, server):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        print("server output:\n" + (server.stdout.read() if server.stdout else "")[-4000:])  # shown on failure


def _stopped_run_with_a_queued_job(runs: Path, toy_env: Path):
    store = create_run(RunConfig(environment=str(toy_env), epochs=1), runs, "stopped")
    idea = Idea(
        id="e1-01",
        epoch=1,
        index=1,
        title="Width 6",
        text="Widen.",
        prompt_kind=PromptKind.EXPLORE,
        origin="catalog (no LLM)",
    )
    store.add_epoch(1, [idea])
    diff = store.run_dir / "patches" / "e1-01.attempt-1.diff"
    diff.parent.mkdir(parents=True, exist_ok=True)
    diff.write_text("")
    patch = Patch(
        id="e1-01-1",
        idea_id="e1-01",
        attempt=1,
        implementer="catalog",
        status=PatchStatus.APPLIED,
        diff_path="patches/e1-01.attempt-1.diff",
        diff_sha256="0",
    )
    store.record_implementation(
        "e1-01", [patch], Job(id="job-e1-01", idea_id="e1-01", patch_id=patch.id, backend="local"), None
    )
    return store


def test_writes_need_the_flag_and_the_token(toy_env, tmp_path):
    from starlette.testclient import TestClient

    runs = tmp_path / "runs"
    store = _stopped_run_with_a_queued_job(runs, toy_env)
    url = "/api/runs/stopped/jobs/job-e1-01/cancel"
    with TestClient(create_app(tmp_path / "empty")) as client:
        assert "no runs here yet" in client.get("/").text
    with TestClient(create_app(runs)) as client:
        assert client.post(url, headers={"Authorization": "Bearer x"}).status_code == 403
        assert client.get("/runs/stopped").status_code == 200
        assert client.get("/runs/../../etc").status_code == 404
    with TestClient(create_app(runs, allow_writes=True, token="s3cret")) as client:
        assert client.post(url).status_code == 401
        assert client.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        # While a controller drives the run, nothing is cancelled under its feet.
        from groundwork.run_lock import controller_lock

        with controller_lock(store.run_dir):
            busy = client.post(url, headers={"Authorization": "Bearer s3cret"})
        assert busy.status_code == 409 and "already being driven" in busy.json()["error"]
        done = client.post(url, headers={"Authorization": "Bearer s3cret"})
        assert done.status_code == 200, done.text
        assert str(store.job("job-e1-01").state) == "cancelled"
        again = client.post(url, headers={"Authorization": "Bearer s3cret"})
        assert again.status_code == 409 and "only queued jobs" in again.json()["error"]
    with pytest.raises(ValueError, match="token"):
        create_app(runs, allow_writes=True)


LEAKED_KEY = "sk-ant-api03-" + "L" * 40
LEAKED_BEARER = "Authorization: Bearer abcdef0123456789xyz"


def crashed_run_with_a_leaked_key(runs: Path, toy_env: Path) -> RunStore:
    """A run whose job printed a key into its log, and whose stored failure detail (the log's
    tail, as a runner without redaction wrote it) holds it too."""
    from groundwork.records import JobOutcome, JobState, Result

    store = _stopped_run_with_a_queued_job(runs, toy_env)
    job_dir = "jobs/job-e1-01/attempt-1"
    (store.run_dir / job_dir).mkdir(parents=True)
    (store.run_dir / job_dir / "job.log").write_text(f"loading\nkey={LEAKED_KEY}\n{LEAKED_BEARER}\nTraceback: boom\n")
    store.transition_job("job-e1-01", JobState.LEASED, slot=0)
    store.transition_job("job-e1-01", JobState.RUNNING, job_dir=job_dir, started_at=time.time())
    detail = f"training exited with code 1:\n{LEAKED_BEARER}\nValueError: refused key {LEAKED_KEY}"
    outcome = JobOutcome(
        job_id="job-e1-01", attempt=1, failure=FailureCategory.CRASHED, detail=detail, exit_code=1,
        started_at=time.time(), ended_at=time.time(),
    )  # fmt: skip
    store.finish_job(
        outcome, Result(idea_id="e1-01", job_id="job-e1-01", failure=FailureCategory.CRASHED, detail=detail)
    )
    return store


def test_the_dashboard_never_shows_a_key_a_job_printed(toy_env, tmp_path):
    from starlette.testclient import TestClient

    runs = tmp_path / "runs"
    crashed_run_with_a_leaked_key(runs, toy_env)
    with TestClient(create_app(runs)) as client:
        log = client.get("/api/runs/stopped/jobs/job-e1-01/log")
        idea = client.get("/runs/stopped/ideas/e1-01")
        live = client.get("/runs/stopped/ideas/e1-01/live")
        run = client.get("/runs/stopped")
    assert log.status_code == idea.status_code == live.status_code == run.status_code == 200
    assert "Traceback: boom" in log.text and "[redacted]" in log.text
    assert "ValueError: refused key [redacted]" in live.text
    for page in (log.text, idea.text, live.text, run.text):
        assert "L" * 40 not in page and "abcdef0123456789xyz" not in page


def _finished(store: RunStore, idea: Idea, diff: str, metric: float) -> None:
    """Store one idea of the run with its applied patch and a valid result."""
    from groundwork.records import JobOutcome, JobState, Result

    store.add_ideas([idea])
    rel = f"patches/{idea.id}.attempt-1.diff"
    (store.run_dir / "patches").mkdir(exist_ok=True)
    (store.run_dir / rel).write_text(diff)
    patch = Patch(
        id=f"{idea.id}-1", idea_id=idea.id, attempt=1, implementer="catalog", status=PatchStatus.APPLIED,
        diff_path=rel, diff_sha256="0",
    )  # fmt: skip
    job = Job(id=f"job-{idea.id}", idea_id=idea.id, patch_id=patch.id, backend="local")
    store.record_implementation(idea.id, [patch], job, None)
    store.transition_job(job.id, JobState.LEASED, slot=0)
    store.transition_job(job.id, JobState.RUNNING, started_at=time.time())
    outcome = JobOutcome(job_id=job.id, attempt=1, metric=metric, started_at=time.time(), ended_at=time.time())
    store.finish_job(outcome, Result(idea_id=idea.id, job_id=job.id, metric=metric))


def _diff(lines: int) -> str:
    return "--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n" + "".join(f"+x{i} = {i}\n" for i in range(lines))


def archive_and_portfolio_run(runs: Path, toy_env: Path) -> RunStore:
    """A map-elites run whose ideas came from a two-model portfolio: two ideas share the
    (hyperparameter, small diff) cell, so the grid must show the better one only."""
    models = ["replay:/models/a.jsonl", "replay:/models/b.jsonl"]
    config = RunConfig(
        environment=str(toy_env), search="evolution", archive="map-elites", epochs=1,
        ideator_llm=models[0], ideator_llms=models,
    )  # fmt: skip
    store = create_run(config, runs, "grid")
    base = Idea(id="baseline", epoch=0, index=0, title="Baseline", text="", prompt_kind=PromptKind.BASELINE, origin="-")
    _finished(store, base, "", 1.5)
    plan = [  # id, model, category, diff lines, metric
        ("e1-01", 0, "hyperparameter", 2, 1.20),
        ("e1-02", 1, "hyperparameter", 3, 1.35),
        ("e1-03", 1, "architecture", 40, 1.40),
    ]
    for index, (idea_id, arm, category, lines, metric) in enumerate(plan, start=1):
        key = f"ideate:e1:explore:{idea_id}"
        store.record_model_choice(
            {"ts": time.time(), "role": "ideator", "key": key, "arm": models[arm], "rule": "init", "epoch": 1,
             "arms": "[]"}
        )  # fmt: skip
        store.record_llm_call(
            {"ts": time.time(), "role": "ideator", "call_key": key, "fingerprint": key, "model": models[arm],
             "provider": "replay", "epoch": 1, "text": "", "usage": "{}", "cost_usd": 0.01 * (arm + 1), "replayed": 0}
        )  # fmt: skip
        idea = Idea(
            id=idea_id, epoch=1, index=index, title=f"{category} {lines} lines", text="Change.", category=category,
            prompt_kind=PromptKind.EXPLORE, origin=models[arm], payload={"portfolio_key": key},
        )  # fmt: skip
        _finished(store, idea, _diff(lines), metric)
    store.add_epoch(1, [])
    return store


def test_the_run_page_shows_the_archive_grid_and_the_model_portfolio(toy_env, tmp_path):
    from starlette.testclient import TestClient

    runs = tmp_path / "runs"
    archive_and_portfolio_run(runs, toy_env)
    _stopped_run_with_a_queued_job(runs, toy_env)  # a plain run: neither section
    with TestClient(create_app(runs)) as client:
        page = client.get("/runs/grid")
        live = client.get("/runs/grid/live")
        plain = client.get("/runs/stopped")
    assert page.status_code == live.status_code == plain.status_code == 200
    for html in (page.text, live.text):
        assert 'id="archive"' in html and "2 filled cells of category × diff_size" in html
        # The (hyperparameter, small) cell holds its best idea, e1-01, and not e1-02.
        assert '<a href="/runs/grid/ideas/e1-01">e1-01</a> <b>1.2000</b>' in html
        assert "/runs/grid/ideas/e1-02" not in html.split('id="portfolio"')[0].split('id="archive"')[1]
        assert '<a href="/runs/grid/ideas/e1-03">e1-03</a> <b>1.4000</b>' in html
        assert 'id="portfolio"' in html
        assert 'replay:/models/a.jsonl</td><td class="num">1/3 = 33%' in html
        assert 'replay:/models/b.jsonl</td><td class="num">2/3 = 67%' in html
        assert "$0.010" in html and "$0.040" in html
    assert 'id="archive"' not in plain.text and 'id="portfolio"' not in plain.text


@pytest.mark.slow
def test_the_archive_grid_and_the_portfolio_in_a_real_browser(toy_env, tmp_path):
    require_chromium()
    from playwright.sync_api import expect

    runs = tmp_path / "runs"
    archive_and_portfolio_run(runs, toy_env)
    port = _free_port()
    server = subprocess.Popen(
        [*GROUNDWORK, "serve", "--runs-dir", str(runs), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/")
        with browser_page(tmp_path / "chromium-profile") as page:
            page.goto(base + "/runs/grid")
            expect(page.locator("#archive td.cell")).to_have_count(2)
            expect(page.locator("#archive [data-cell='hyperparameter/<=4']")).to_contain_text("e1-01 1.2000")
            expect(page.locator("#portfolio tr")).to_have_count(3)  # a header and one row per model
            expect(page.locator("#portfolio")).to_contain_text("2/3 = 67%")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-archive.png"), full_page=True)
            page.click("#archive >> text=e1-01")  # a cell links to its idea
            expect(page.locator("#diff")).to_contain_text("+x1 = 1")
    finally:
        server.terminate()
        server.wait(timeout=10)
