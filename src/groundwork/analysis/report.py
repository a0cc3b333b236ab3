"""`groundwork report`: one self-contained HTML file (plots embedded as PNG) for a run or
a comparison of several runs."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jinja2
from markupsafe import Markup

from groundwork import __version__
from groundwork.analysis.archive_grid import archive_grid
from groundwork.analysis.details import IdeaDetail, RunDetails
from groundwork.analysis.rl_steps import STEP_COLUMNS, rl_step_table
from groundwork.analysis.summary import RowStatus
from groundwork.comparison import Verdict
from groundwork.store import RunStore
from groundwork.store.artifacts import write_atomic

TEMPLATES = Path(__file__).parent / "templates"
TOP_K = 5


def _figure(png: bytes, caption: str, alt: str) -> dict[str, str]:
    return {"png": base64.b64encode(png).decode("ascii"), "caption": caption, "alt": alt}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _gain(run: RunDetails, d: IdeaDetail) -> str:
    gain = run.summary.improvement(d.row)
    return "-" if gain is None else f"{gain:+.4f}"


def diff_html(diff: str) -> str:
    """A diff with added, removed and hunk lines coloured; everything escaped."""
    out = []
    for line in diff.splitlines():
        escaped = html.escape(line)
        if line.startswith("+") and not line.startswith("+++"):
            out.append(f'<span class="add">{escaped}</span>')
        elif line.startswith("-") and not line.startswith("---"):
            out.append(f'<span class="del">{escaped}</span>')
        elif line.startswith("@@"):
            out.append(f'<span class="hunk">{escaped}</span>')
        else:
            out.append(escaped)
    return "\n".join(out) or "(no diff)"


def _overview(run: RunDetails) -> dict[str, str]:
    s = run.summary
    best = s.best
    f = s.funnel
    compute = f"{run.gpu_hours:.3g} GPU-h" if run.gpu_hours else ""
    if run.cpu_hours or not compute:
        compute = ", ".join(x for x in (compute, f"{run.cpu_hours:.3g} CPU-h") if x)
    return {
        "run_id": s.run_id,
        "environment": f"{s.environment} ({s.profile})",
        "status": s.status,
        "origins": ", ".join(s.origins) or "-",
        "metric": f"{s.metric} ({s.objective.sense})",
        "baseline": _fmt(s.baseline.metric if s.baseline else None),
        "noise": _fmt(s.noise_std) if s.noise_std is not None else "not measured",
        "best": f"{_fmt(best.metric)} by {best.id} ({s.verdict(best)})" if best else "-",
        "rate": (f"{f.valid}/{f.proposed} = {f.execution_rate:.0%}" if f.proposed else "-")
        + (f"; {f.preflight_caught} caught at pre-flight" if f.preflight_caught else "")
        + (f"; {f.repaired} saved by a repair round" if f.repaired else ""),
        "cost": f"${s.llm_spent_usd:.2f}" + (f" (+${s.llm_replayed_usd:.2f} replayed)" if s.llm_replayed_usd else ""),
        "compute": compute,
    }


def portfolio_rows(run: RunDetails) -> list[dict[str, str]]:
    """Each portfolio model's share of its role's proposals, payoff and spend over the run."""
    s = run.summary
    rows = []
    for role, stats in s.portfolio.items():
        unit = s.portfolio_payoff_unit(role)
        for a in stats:
            rows.append(
                {
                    "run_id": s.run_id,
                    "role": role,
                    "model": a.arm,
                    "share": s.portfolio_share(role, a),
                    "payoff": "-" if a.payoff is None else f"{a.payoff:.4g} {unit} (over {a.settled})",
                    "spend": f"${a.spend_usd:.3f}",
                    "pulls": str(a.pulls),
                    "settled": str(a.settled),
                    "reward": f"{a.reward:.4g}",
                }
            )
    return rows


def _idea_card(run: RunDetails, d: IdeaDetail) -> dict:
    verdict = run.summary.verdict(d.row)
    return {
        "id": d.idea.id,
        "title": d.idea.title,
        "metric": f"{run.summary.metric} {_fmt(d.row.metric)}",
        "gain": f"({_gain(run, d)} vs baseline)",
        "verdict": verdict,
        "beats": verdict == Verdict.BETTER,
        "category": d.category,
        "kind": d.row.kind,
        "epoch": d.idea.epoch,
        "origin": d.idea.origin,
        "flags": d.flags,
        "text": d.idea.text,
        "diff_html": Markup(diff_html(d.diff)),
        "diff_lines": len(d.diff.splitlines()),
    }


def _rl_row(row: dict) -> dict[str, str]:
    return {k: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in row.items()}


def render_report(runs: Sequence[RunDetails], progress: Callable[[str], None] | None = None) -> str:
    from groundwork.analysis import plots  # matplotlib is an optional extra: imported only here

    runs = list(runs)
    if not runs:
        raise ValueError("a report needs at least one run")
    step = progress or (lambda _name: None)
    multi = len(runs) > 1
    metric = runs[0].summary.metric
    figures: dict = {}
    step("best so far")
    figures["progress"] = [
        _figure(
            plots.best_so_far_by_epoch(runs),
            f"The best {metric} found up to each epoch (epoch 0: the baseline); the dashed line is the baseline, "
            "the band its noise (± 2 sd) where measured.",
            "best so far per epoch",
        ),
        _figure(
            plots.best_so_far_by_idea(runs),
            "The best result after each executed idea, in the order results arrived; dots are single ideas.",
            "best so far per executed idea",
        ),
    ]
    step("distributions")
    figures["progress"].append(
        _figure(
            plots.distribution_by_epoch(runs),
            f"Valid {metric} values of each epoch (box: quartiles), against the baseline and its noise band.",
            "metric distribution per epoch",
        )
    )
    step("funnel")
    figures["funnel"] = _figure(
        plots.execution_funnel(runs),
        "Of the ideas whose fate is known: proposed, patch applied, passed its pre-flight (or had none), "
        "ran to the end, valid metric; beside the bars, those caught at pre-flight and those saved by repair.",
        "execution funnel per model",
    )
    step("categories")
    figures["categories"] = _figure(
        plots.categories(runs),
        "What kind of change each idea makes, coloured by outcome; labelled by "
        + "; ".join(dict.fromkeys(r.categories_by for r in runs))
        + ".",
        "idea categories",
    )
    step("failures")
    figures["failures"] = _figure(
        plots.failure_taxonomy(runs), "Failure categories of ideas that produced no valid metric.", "failure taxonomy"
    )
    step("lengths")
    figures["lengths"] = _figure(
        plots.length_vs_success(runs),
        "Words in the idea's description, and the thinking of the ideation call that proposed it (words, or "
        "tokens where the model hid the text), for ideas that produced a valid metric and for those that failed.",
        "idea and thinking length against execution success",
    )
    step("costs")
    figures["costs"] = _figure(
        plots.costs(runs),
        "Dollars paid for model calls; compute as job wall time times the GPUs each job requested "
        "(CPU-hours for jobs that requested none).",
        "cost in dollars and GPU-hours",
    )
    figures["integrity"] = _figure(
        plots.integrity(runs),
        "Results caught by integrity checks: tampered locked files or result channel, metrics that contradict "
        "their own checks, implausible metrics, causality guard, train-vs-eval gaps, gains too large for the "
        "baseline's noise.",
        "reward-hacking flags",
    )
    rl_tables = [rl_step_table(run.run_dir) for run in runs]
    rl = None
    if any(rl_tables):  # RL runs only: the ideator's learning and the diversity of its ideas
        step("RL steps")
        rl = {
            "figure": _figure(
                plots.rl_steps(runs, rl_tables),
                "Per RL step: mean and max reward of the step's ideas and their execution rate (left); distinct "
                "1- and 2-grams, mean pairwise word-set similarity and embedding spread of its ideas (right).",
                "RL reward and diversity per step",
            ),
            "tables": [
                {"run_id": run.summary.run_id, "rows": [_rl_row(r) for r in rows]}
                for run, rows in zip(runs, rl_tables, strict=True)
                if rows
            ],
        }
    top = []
    for run in runs:
        step(f"curves of {run.summary.run_id}")
        top.append(
            {
                "run_id": run.summary.run_id,
                "curves": _figure(
                    plots.training_curves(run, TOP_K),
                    "Training curves (from out/train_log.jsonl) of the baseline (dashed) and the top ideas.",
                    "training curves of the top ideas",
                ),
                "ideas": [_idea_card(run, d) for d in run.top(TOP_K)],
            }
        )
    failures = [
        {
            "run": run.summary.run_id,
            "id": d.idea.id,
            "title": d.idea.title,
            "status": d.row.status,
            "detail": d.row.detail,
            "diff_html": Markup(diff_html(d.diff)),
            "diff_lines": len(d.diff.splitlines()),
        }
        for run in runs
        for d in run.ideas
        if d.result is not None and not d.valid
    ]
    flagged = [
        {"run": run.summary.run_id, "id": d.idea.id, "title": d.idea.title, "status": d.row.status, "flags": d.flags}
        for run in runs
        for d in run.all
        if d.flags
    ]
    all_ideas = [
        {
            "run_id": run.summary.run_id,
            "metric": run.summary.metric,
            "rows": [
                {
                    "id": d.idea.id,
                    "epoch": d.idea.epoch,
                    "kind": d.row.kind,
                    "category": d.category if d in run.ideas else "-",
                    "title": d.idea.title,
                    "status": d.row.status,
                    "ok": d.row.status == RowStatus.OK,
                    "metric": _fmt(d.row.metric),
                    "gain": _gain(run, d) if d is not run.baseline else "-",
                    "words": d.idea_words,
                    "thinking": d.thinking_words,
                    "wall": f"{d.wall_seconds:.1f}s" if d.wall_seconds else "-",
                }
                for d in run.all
            ],
        }
        for run in runs
    ]
    archives = [{"run": r.summary.run_id, **archive_grid(r, archive_descriptors(r))} for r in runs]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return env.get_template("report.html.j2").render(
        archives=archives,
        title=" vs ".join(r.summary.run_id for r in runs) if multi else runs[0].summary.run_id,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        version=__version__,
        runs=runs,
        overview=[_overview(r) for r in runs],
        portfolio=[row for r in runs for row in portfolio_rows(r)],
        figures=figures,
        top=top,
        failures=failures,
        flagged=flagged,
        all_ideas=all_ideas,
        rl=rl,
        rl_columns=STEP_COLUMNS,
    )


def archive_descriptors(run: RunDetails) -> list[str]:
    """The run's archive descriptors when it searched with one, else category x diff size."""
    try:
        config = RunStore(run.run_dir).run_info().config
    except Exception:  # a run folder without its store: the default grid
        return ["category", "diff_size"]
    return list(config.get("descriptors") or ["category", "diff_size"])


def write_report(runs: Sequence[RunDetails], out: Path, progress: Callable[[str], None] | None = None) -> Path:
    write_atomic(out, render_report(runs, progress))
    return out
