"""`groundwork report` on real runs: a toy run with planted failures, a comparison of
two runs, and a nanogpt smoke run; plus the categories and integrity flags it shows."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest

from browser import ARTIFACTS, browser_page, require_chromium
from conftest import GROUNDWORK, cli_env, requires, set_toy_sleep
from groundwork.analysis.categories import IdeaText, label_ideas
from groundwork.analysis.details import load_details
from groundwork.analysis.integrity import integrity_flags
from groundwork.analysis.summary import RowStatus
from groundwork.idea_categories import keyword_category
from groundwork.llm.base import LLMError, LLMResponse
from groundwork.records import FailureCategory, Result
from groundwork.store import RunStore

SECTIONS = (
    "best so far per epoch",
    "best so far per executed idea",
    "metric distribution per epoch",
    "execution funnel per model",
    "training curves of the top ideas",
    "idea categories",
    "failure taxonomy",
    "idea and thinking length against execution success",
    "cost in dollars and GPU-hours",
    "reward-hacking flags",
)

# Planted into the toy catalog: one idea whose metric is implausible, one that crashes.
PLANTED = """
[[idea]]
id = "huge-loss"
title = "Report an enormous loss"
category = "loss"
description = "Make the checkpoint force a loss far outside the plausible range."
[[idea.edit]]
file = "train.py"
find = 'json.dump({"lr": lr, "width": width}, fh)'
replace = 'json.dump({"lr": lr, "width": width, "force_loss": 500.0}, fh)'

[[idea]]
id = "crash"
title = "Divide the data by zero"
category = "data"
description = "A data pipeline change with a bug that crashes at run time."
[[idea.edit]]
file = "train.py"
find = "time.sleep(sleep_s)"
replace = "time.sleep(sleep_s)\\n    1 / 0"
"""


def _images(page: str) -> dict[str, bytes]:
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return {alt: base64.b64decode(data) for alt, data in found}


def _toy_run(toy_env: Path, runs: Path, name: str, *extra: str) -> Path:
    proc = subprocess.run(
        [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), "--name", name, *extra],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return runs / name


def _report(runs: Path, out: Path, *refs: str) -> str:
    proc = subprocess.run(
        [*GROUNDWORK, "report", *refs, "--runs-dir", str(runs), "--out", str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "report written to" in proc.stdout
    return out.read_text()


@requires("matplotlib", "report")
@pytest.mark.slow
def test_report_of_a_toy_run_and_a_comparison_show_every_plot_and_the_planted_failures(toy_env, tmp_path):
    (toy_env / "catalog.toml").write_text((toy_env / "catalog.toml").read_text() + PLANTED)
    set_toy_sleep(toy_env, 0.05)  # short jobs: the report reads results, not timings
    runs = tmp_path / "runs"
    _toy_run(toy_env, runs, "r", "--epochs", "2", "--ideas", "3", "--baseline-seeds", "2", "--search", "best-of-n")
    page = _report(runs, tmp_path / "report.html", "r")

    images = _images(page)
    assert set(SECTIONS) <= set(images), set(SECTIONS) - set(images)
    for alt, png in images.items():
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, alt  # a real, drawn picture
    assert "http://" not in page.replace("http://www.w3.org", "") and "<script" not in page  # self-contained

    details = load_details(RunStore(runs / "r"))
    failures = {d.idea.id: d.result.failure for d in details.ideas if d.result and d.result.failure}
    assert len(details.ideas) == 6
    # Every idea of the catalog was tried (6 entries, 6 ideas): both planted ones failed as planted.
    assert FailureCategory.METRIC_IMPLAUSIBLE in failures.values() and FailureCategory.CRASHED in failures.values()
    assert "implausible metric" in page and "metric_implausible" in page and "ZeroDivisionError" in page
    assert "noise (sd)" in page and "not measured" not in page.split('<h2 id="progress">')[0]  # 2 baseline seeds
    best = details.top(1)[0]
    assert f"{best.idea.id}: {best.idea.title}" in page and '<span class="add">' in page  # top idea with its diff
    assert "CPU-h" in page and details.cpu_hours > 0 and details.gpu_hours == 0  # toy jobs request no GPU

    # Opened in a real browser, from the file alone: every plot shows.
    require_chromium()
    with browser_page(tmp_path / "chromium-profile") as browser:
        browser.goto((tmp_path / "report.html").as_uri())
        shown = browser.evaluate("Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth])")
        assert {alt for alt, width in shown if width and width > 500} >= set(SECTIONS), shown
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(path=str(ARTIFACTS / "report-toy.png"), full_page=True)
        print(f"report screenshot: {ARTIFACTS / 'report-toy.png'}")

    # A comparison: a second, smaller run beside it.
    _toy_run(toy_env, runs, "b", "--epochs", "1", "--ideas", "1", "--seed", "1")
    page = _report(runs, tmp_path / "cmp.html", "r", "b")
    assert "Groundwork report: r vs b" in page
    assert set(SECTIONS) <= set(_images(page))
    overview = page.split('<h2 id="progress">')[0]
    assert "<td>r</td>" in overview and "<td>b</td>" in overview


@requires("matplotlib", "report")
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_report_of_a_nanogpt_smoke_run_has_curves_and_diffs(nanogpt_smoke_run, tmp_path):
    runs = nanogpt_smoke_run[1]  # the shared run: baseline and two ideas
    page = _report(runs, tmp_path / "n.html")  # no RUN: the latest run
    details = load_details(RunStore(runs / "smoke"))
    assert details.baseline is not None and details.baseline.result.curve  # nanogpt logs a loss curve
    assert set(SECTIONS) <= set(_images(page))
    # Its diffs are in the report, among the top ideas or, if the (loaded) machine made them fail, the failures.
    assert "+++ b/train.py" in page and '<span class="add">' in page
    assert "val_bpb" in page


# ---- categories ------------------------------------------------------------------


def test_keywords_label_the_common_kinds_of_change():
    assert keyword_category("Higher peak learning rate", "Double the learning rate.") == "hyperparameter"
    assert keyword_category("Three transformer blocks", "Add a third block.") == "architecture"
    assert keyword_category("Less momentum in AdamW", "Lower beta1 of the optimizer.") == "optimizer"
    assert keyword_category("Label smoothing", "Smooth the targets of the loss.") == "loss"
    assert keyword_category("Curriculum over the dataset", "Shuffle the data by difficulty.") == "data"
    assert keyword_category("Something else", "Nothing that matches.") == "other"


class MockLabellerLLM:
    """A stand-in model for the test: answers with fixed labels, or fails."""

    model, provider = "mock-labeller", "test"

    def __init__(self, answer: str | None):
        self.answer = answer
        self.requests = []

    def complete(self, request):
        self.requests.append(request)
        if self.answer is None:
            raise LLMError("overloaded")
        return LLMResponse(text=self.answer, model=self.model, provider=self.provider)


def test_a_configured_model_labels_ideas_and_keywords_fill_in():
    ideas = [IdeaText("e1-01", "Muon", "Use Muon for matrices."), IdeaText("e1-02", "Wider model", "n_embd 192.")]
    llm = MockLabellerLLM('Here: {"e1-01": "optimizer", "e1-02": "Normalization"}')
    labels, source = label_ideas(ideas, llm)
    assert labels == {"e1-01": "optimizer", "e1-02": "architecture"}  # finer labels fold into the six
    assert source == "test:mock-labeller" and llm.requests[0].role == "labeller"
    labels, source = label_ideas(ideas, MockLabellerLLM('{"e1-01": "loss"}'))
    assert labels["e1-01"] == "loss" and labels["e1-02"] == "architecture" and "1 by keywords" in source
    labels, source = label_ideas(ideas, MockLabellerLLM(None))
    assert labels["e1-02"] == "architecture" and source.startswith("keywords (the model test:mock-labeller failed")


# ---- integrity flags -------------------------------------------------------------------


def test_integrity_flags_name_each_kind_of_suspicious_result():
    base = Result(idea_id="baseline", metric=3.0, metrics={"val_loss": 2.08}, curve=[{"step": 9, "loss": 2.0}])
    tampered = Result(
        idea_id="a",
        failure=FailureCategory.EVAL_TAMPERED,
        detail="locked files changed: evaluate.py",
        flags={"eval_hash_ok": False},
    )
    assert any(f.startswith("tampered locked files") for f in integrity_flags(tampered, "val_bpb", "minimize", base))
    causal = Result(idea_id="b", metric=2.9, metrics={"causality_ok": False})
    assert any("causality guard" in f for f in integrity_flags(causal, "val_bpb", "minimize", base))
    # Evaluation far better than training, unlike the baseline: leaked or future data.
    leak = Result(idea_id="c", metric=1.0, metrics={"val_loss": 0.7}, curve=[{"step": 9, "loss": 2.0}])
    assert any(f.startswith("train-vs-eval gap") for f in integrity_flags(leak, "val_bpb", "minimize", base))
    assert any("baseline sd" in f for f in integrity_flags(leak, "val_bpb", "minimize", base, 0.01, noise_seeds=5))
    honest = Result(idea_id="d", metric=2.95, metrics={"val_loss": 2.05}, curve=[{"step": 9, "loss": 1.98}])
    assert integrity_flags(honest, "val_bpb", "minimize", base, noise_std=0.01) == []
    wrote = Result(idea_id="e", metric=2.95, flags={"training_wrote_result_file": True})
    assert any("wrote the result file" in f for f in integrity_flags(wrote, "val_bpb", "minimize"))
    grpo_base = Result(idea_id="baseline", metric=0.6, metrics={"max_train_eval_accuracy": 0.62})
    inflated = Result(idea_id="f", metric=0.95, metrics={"max_train_eval_accuracy": 0.6})
    assert any("gap" in f for f in integrity_flags(inflated, "accuracy", "maximize", grpo_base))


@requires("matplotlib", "report")
@pytest.mark.slow
def test_a_model_run_reports_costs_thinking_and_model_labelled_categories(toy_env, tmp_path):
    """A run whose ideas and diffs come from a model (a local OpenAI-compatible stand-in):
    the report asks that model for the categories, records the call, and shows dollars."""
    from llm_stub import StubServer
    from test_llm_loop import _toy_reply

    toy = _toy_reply(toy_env)
    labels = {"Raise the learning rate": "hyperparameter", "Narrower toy model": "architecture"}

    def reply(body) -> str:
        if "label machine-learning research ideas" in body["messages"][0]["content"]:
            text = body["messages"][-1]["content"]
            ids = re.findall(r"^\[(e\d-\d\d)\] (.*)$", text, re.MULTILINE)
            return json.dumps({idea: labels.get(title, "loss") for idea, title in ids})
        return toy(body)

    runs = tmp_path / "runs"
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."stub-model"]\ninput = 1.0\ncached_input = 0.1\noutput = 4.0\n')
    env = cli_env({"GROUNDWORK_PRICES": str(prices)})
    with StubServer(reply) as stub:
        spec = f"openai-compatible:stub-model@{stub.url}/v1"
        run = subprocess.run(
            [*GROUNDWORK, "run", "--env", str(toy_env), "--runs-dir", str(runs), "--name", "m", "--llm", spec,
             "--epochs", "1", "--ideas", "2"],
            capture_output=True, text=True, env=env, timeout=240,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        spent_before = RunStore(runs / "m").llm_spent_usd()
        report = subprocess.run(
            [*GROUNDWORK, "report", "m", "--runs-dir", str(runs), "--out", str(tmp_path / "m.html")],
            capture_output=True, text=True, env=env, timeout=240,
        )  # fmt: skip
        assert report.returncode == 0, report.stdout + report.stderr
        asked = sum(1 for _, body in stub.requests if "label machine" in body["messages"][0]["content"])
        again = subprocess.run(
            [*GROUNDWORK, "report", "m", "--runs-dir", str(runs), "--out", str(tmp_path / "m2.html")],
            capture_output=True, text=True, env=env, timeout=240,
        )  # fmt: skip
        assert again.returncode == 0
        asked_again = sum(1 for _, body in stub.requests if "label machine" in body["messages"][0]["content"])
    assert asked == 1 and asked_again == 1  # the second report reused the recorded answer
    store = RunStore(runs / "m")
    assert [c["role"] for c in store.llm_calls("labeller")] == ["labeller"]
    assert store.llm_spent_usd() > spent_before  # the labelling call is part of the run's visible cost
    details = load_details(store)
    assert {d.idea.title: d.category for d in details.ideas} == labels
    assert all(d.thinking_tokens == 50 for d in details.ideas)  # the stand-in bills 50 reasoning tokens a call
    page = (tmp_path / "m.html").read_text()
    assert "labelled by openai-compatible:stub-model" in page
    assert f"${details.summary.llm_spent_usd:.2f}" in page
    assert set(SECTIONS) <= set(_images(page))


def test_compute_is_wall_time_times_gpus_requested_and_cpu_hours_without_gpus():
    from groundwork.analysis.details import IdeaDetail, RunDetails
    from groundwork.analysis.summary import Funnel, IdeaRow, RunSummary
    from groundwork.records import Idea, Job, PromptKind

    def detail(idea_id: str, seconds: float, resources: dict) -> IdeaDetail:
        idea = Idea(id=idea_id, epoch=1, index=1, title=idea_id, text="t", prompt_kind=PromptKind.SIMPLE, origin="x")
        job = Job(id=f"job-{idea_id}", idea_id=idea_id, patch_id="p", backend="local", resources=resources,
                  started_at=1000.0, ended_at=1000.0 + seconds)  # fmt: skip
        return IdeaDetail(IdeaRow(idea_id, 1, idea_id, "simple", "x", RowStatus.OK, 1.0), idea, None, job, [])

    summary = RunSummary("r", "finished", "e", "p", "loss", "minimize", [], None, [], Funnel())
    run = RunDetails(
        summary,
        Path("."),
        None,
        [
            detail("a", 1800, {"gpus": 2, "cpus": 8}),  # 0.5 h x 2 GPUs
            detail("b", 3600, {"gpus": 0, "cpus": 2}),  # 1 h x 2 CPUs, no GPU
            detail("c", 7200, {"gpus": 4}),
        ],
    )
    assert run.gpu_hours == pytest.approx(1.0 + 8.0)
    assert run.cpu_hours == pytest.approx(2.0)


@requires("matplotlib", "report")
def test_the_report_never_shows_a_key_a_job_printed(toy_env, tmp_path):
    from groundwork.analysis.report import render_report
    from test_dashboard import crashed_run_with_a_leaked_key

    store = crashed_run_with_a_leaked_key(tmp_path / "runs", toy_env)
    page = render_report([load_details(store)])
    assert "training exited with code 1: ... ValueError: refused key [redacted]" in page
    assert "L" * 40 not in page and "abcdef0123456789xyz" not in page


def test_training_curve_legend_shows_each_idea_id_and_a_title_cut_at_a_word():
    pytest.importorskip("matplotlib")
    from types import SimpleNamespace

    from groundwork.analysis import plots
    from groundwork.records import Idea, PromptKind

    long_title = "Replace the cosine schedule with a warmup then linear decay to a tenth of the peak rate"

    def detail(idea_id: str, title: str, metric: float):  # a fake IdeaDetail: only what the plot reads
        idea = Idea(id=idea_id, epoch=1, index=1, title=title, text=title, prompt_kind=PromptKind.SIMPLE, origin="t")
        curve = [{"step": s, "loss": metric + 1.0 / (s + 1)} for s in range(5)]
        return SimpleNamespace(idea=idea, result=Result(idea_id=idea_id, metric=metric, curve=curve))

    baseline = detail("e0-00", "Baseline", 2.0)
    ideas = [detail("e1-01", long_title, 1.5), detail("e1-02", "Wider", 1.6)]
    fake_run = SimpleNamespace(baseline=baseline, top=lambda k: ideas[:k], summary=SimpleNamespace(run_id="r"))
    fig = plots.training_curves_figure(fake_run)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "e0-00: Baseline" and texts[2] == "e1-02: Wider"
    short = texts[1].removeprefix("e1-01: ")
    assert short.endswith("…") and long_title.startswith(short[:-1].rstrip())
    assert long_title.split()[len(short[:-1].split()) - 1] == short[:-1].split()[-1]  # ends on a whole word
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend_box, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend_box.y1 <= axes_box.y0  # below the plot, covering no curve
    assert plots.training_curves(fake_run).startswith(b"\x89PNG")
