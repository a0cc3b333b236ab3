"""Terminal rendering with rich: the live progress view, the results table, `status`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from rich.console import Console, ConsoleDimensions, Group
from rich.table import Table
from rich.text import Text

from groundwork.analysis.summary import IdeaRow, RowStatus, RunSummary
from groundwork.comparison import Verdict

# Piped or in CI, lines are never wrapped: a table is as wide as its longest row.
UNWRAPPED_WIDTH = 100_000


class CommandConsole(Console):
    """The commands' console: a terminal's own width, or COLUMNS where set; writing to a
    pipe or a file, no wrapping at all (rich would fold tables at 80 columns, splitting an
    idea's title and its metric over several lines)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and "COLUMNS" not in os.environ and not _is_tty(self.file):
            return ConsoleDimensions(UNWRAPPED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


def _is_tty(file) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


STATUS_STYLE = {
    RowStatus.OK: "green",
    RowStatus.QUEUED: "dim",
    RowStatus.LEASED: "cyan",
    RowStatus.RUNNING: "cyan",
    RowStatus.IMPLEMENTING: "dim",
}


def throttled(update: Callable[[], None], every_s: float = 0.5) -> Callable[[], None]:
    """`update`, run at most once every `every_s` seconds (the loop calls it on every event)."""
    last = 0.0

    def call() -> None:
        nonlocal last
        if time.time() - last >= every_s:
            last = time.time()
            update()

    return call


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _metric_cell(row: IdeaRow) -> str:
    """One run: its metric. Re-run with fresh seeds: mean ± 95% CI over its runs."""
    estimate = row.estimate
    text = "-" if estimate is None else str(estimate)
    if row.replicates_pending:
        text += f" (+{row.replicates_pending} re-runs pending)"
    return text


def _delta(summary: RunSummary, row: IdeaRow) -> Text:
    gain = summary.improvement(row)
    if gain is None or row is summary.baseline:
        return Text("-")
    verdict = summary.verdict(row)
    style = {
        Verdict.BETTER: "green",
        Verdict.BETTER_NOISE_UNKNOWN: "green",
        Verdict.WORSE: "red",
        Verdict.NOT_BETTER: "red",
    }.get(verdict, "")
    return Text(f"{gain:+.4f}" + (" ~" if verdict == Verdict.WITHIN_NOISE else ""), style=style)


def rate_text(summary: RunSummary) -> str:
    f = summary.funnel
    if not f.proposed:
        return "execution rate: - (no idea finished yet)"
    return (
        f"execution rate: {f.valid}/{f.proposed} = {f.execution_rate:.0%}  "
        f"(proposed {f.proposed} -> patch applied {f.applied} -> pre-flight passed {f.preflight_passed} "
        f"-> ran {f.ran} -> valid metric {f.valid}"
        + (f", {f.repaired} of them repaired after their run failed" if f.repaired else "")
        + ")"
        + (f"; {f.preflight_caught} caught at pre-flight" if f.preflight_caught else "")
    )


def baseline_text(summary: RunSummary) -> str:
    """The baseline as one number: the mean over its seeds with their spread, the figure
    ideas are compared with (never a single seed's value beside another mean)."""
    if summary.baseline is None:
        return "baseline -"
    status = f" [{summary.baseline.status}]" if summary.baseline.status != RowStatus.OK else ""
    if summary.noise:
        mean, std = summary.noise
        return f"baseline {mean:.4f} ± {std:.4f} (sd over {len(summary.baseline_metrics)} seeds){status}"
    seeds = len(summary.baseline_metrics)
    return f"baseline {_fmt(summary.baseline_mean)}" + (f" (1 seed){status}" if seeds == 1 else status)


def headline(summary: RunSummary) -> Group:
    sense = summary.objective.sense
    lines = [
        Text.assemble(("run ", "bold"), summary.run_id, "  ", (summary.status, "bold cyan")),
        Text(
            f"environment {summary.environment} (profile {summary.profile}); "
            + (f"ideas by {', '.join(summary.origins)}" if summary.origins else "no ideas yet")
        ),
        Text(f"metric {summary.metric} ({sense}); {baseline_text(summary)}"),
    ]
    best = summary.best
    if best is not None:
        gain = summary.improvement(best)
        margin = summary.margin(best) or 0.0
        verdict = {
            Verdict.BETTER: f" - beats the baseline beyond its noise (2 sd = {margin:.4f})",
            Verdict.WITHIN_NOISE: f" - within the baseline's noise (2 sd = {margin:.4f}): not an improvement",
            Verdict.BETTER_NOISE_UNKNOWN: " - beats the baseline (noise not measured: `groundwork env baseline`)",
        }.get(summary.verdict(best), " - does not beat the baseline")
        lines.append(
            Text(
                f'best {summary.metric} {_metric_cell(best)} by {best.id} "{best.title}"'
                + (f" ({gain:+.4f} vs baseline)" if gain is not None else "")
                + verdict,
                style="bold",
            )
        )
    lines.append(Text(rate_text(summary)))
    if summary.aborted_shares:
        shares = summary.aborted_shares
        lines.append(
            Text(
                f"early abort: {len(shares)} jobs stopped trailing the baseline, after "
                f"{sum(shares) / len(shares):.0%} of its compute on average: "
                f"{summary.compute_saved:.1f} job budgets saved"
            )
        )
    if len(summary.funnels) > 1 or any("catalog" not in pair for pair in summary.funnels):
        for pair, f in sorted(summary.funnels.items()):
            rate = f"{f.execution_rate:.0%}" if f.execution_rate is not None else "-"
            lines.append(
                Text(
                    f"  {pair}: {f.valid}/{f.proposed} = {rate} (applied {f.applied}, ran {f.ran}, valid {f.valid}"
                    + (f", repaired {f.repaired}" if f.repaired else "")
                    + ")"
                )
            )
    lines += [Text(line) for line in portfolio_lines(summary)]
    if summary.llm_tokens:
        lines.append(Text(cost_text(summary)))
    if summary.projection is not None:
        lines.append(Text(projection_text(summary)))
    return Group(*lines)


def portfolio_lines(summary: RunSummary) -> list[str]:
    """Per role with a portfolio: each model's share of the proposals, payoff and spend."""
    lines = []
    for role, stats in summary.portfolio.items():
        unit = summary.portfolio_payoff_unit(role)
        arms = "; ".join(
            f"{s.arm} {summary.portfolio_share(role, s)}, "
            + (f"{s.payoff:.4g} {unit} over {s.settled}" if s.payoff is not None else "no outcome yet")
            + f", spent ${s.spend_usd:.3f}"
            for s in stats
        )
        lines.append(f"{role} portfolio (UCB1): {arms}")
    return lines


def projection_text(summary: RunSummary) -> str:
    """Used so far and projected for the rest of the run, against the caps in force."""
    p = summary.projection
    assert p is not None

    def cap(key: str, unit: str) -> str:
        return f" (cap {p.caps[key]:g}{unit})" if key in p.caps else ""

    if p.dollars_left is not None:
        dollars = f"LLM ${p.dollars_left:.2f}{cap('max_dollars', ' $')}"
    elif p.models:  # no call yet: nothing to project their cost from
        dollars = f"model calls to come, their cost known after the first{cap('max_dollars', ' $')}"
    else:
        dollars = "no model calls (catalog ideas)"
    return (
        f"used {p.gpu_hours_used:.3f} GPU-h{cap('max_gpu_hours', '')}, {p.hours_used:.2f} h wall"
        f"{cap('max_hours', ' h')}; rest of the run ({p.ideas_left} ideas, {p.jobs_left} jobs at "
        f"~{p.seconds_per_job:.0f} s): ~{p.gpu_hours_left:.3f} GPU-h, ~{p.hours_left:.2f} h wall, {dollars}"
    )


def cost_text(summary: RunSummary) -> str:
    text = f"LLM cost ${summary.llm_spent_usd:.2f}"
    if summary.max_dollars is not None:
        text += f" of a ${summary.max_dollars:.2f} cap"
    if summary.replayed_calls:
        recorded = f", recorded at ${summary.llm_replayed_usd:.2f}" if summary.llm_replayed_usd else ""
        text += f" ({summary.replayed_calls} calls replayed from a recording, free{recorded})"
    epochs = ", ".join(f"e{e} ${c:.2f}" for e, c in sorted(summary.cost_by_epoch.items()))
    text += f"; {summary.llm_tokens:,} tokens; by epoch: {epochs}"
    if summary.unpriced_calls:
        text += (
            f"; {summary.unpriced_calls} calls to models with no price (not counted: "
            "add them to a price table, GROUNDWORK_PRICES)"
        )
    return text


def results_table(summary: RunSummary, rows: list[IdeaRow] | None = None) -> Table:
    table = Table(show_lines=False, header_style="bold")
    show_cost = summary.llm_tokens > 0
    columns = ["idea", "kind", "title", "status", summary.metric, "vs baseline"] + (["LLM $"] if show_cost else [])
    for column in columns:
        table.add_column(
            column, overflow="fold", justify="left" if column in ("idea", "kind", "title", "status") else "right"
        )
    for row in rows if rows is not None else summary.rows:
        status = Text(row.status, style=STATUS_STYLE.get(row.status, "red"))
        title = row.title if len(row.title) <= 60 else row.title[:57] + "..."
        cells = [row.id, row.kind, title, status, _metric_cell(row), _delta(summary, row)]
        table.add_row(*cells, *([f"{row.cost_usd:.3f}"] if show_cost else []))
    return table


def failures(summary: RunSummary) -> Table | None:
    failed = [r for r in summary.rows if r.detail and r.status != RowStatus.OK]
    if not failed:
        return None
    table = Table(title="why ideas failed", header_style="bold", title_justify="left")
    table.add_column("idea")
    table.add_column("reason", overflow="fold")
    for row in failed:
        table.add_row(row.id, f"{row.status}: {row.detail}")
    return table


def progress_view(summary: RunSummary, started: float) -> Group:
    jobs = summary.jobs
    done = sum(jobs.get(s, 0) for s in ("done", "failed", "timed_out", "cancelled"))
    best = summary.best
    steady = summary.search == "steady-state"
    progress = f"batch {summary.epoch}  |  " if steady else f"epoch {summary.epoch}/{summary.epochs}  |  "
    line = Text.assemble(
        (f"{summary.run_id}  ", "bold"),
        progress,
        f"ideas implemented {summary.ideas_implemented}/{summary.ideas_total}  |  jobs "
        f"queued {jobs.get('queued', 0)}, running {jobs.get('running', 0) + jobs.get('leased', 0)}, done {done}  |  ",
        f"baseline {_fmt(summary.baseline_mean)}, best {summary.metric} {_fmt(best.metric) if best else '-'}  |  ",
        f"LLM ${summary.llm_spent_usd:.2f}  |  " if summary.llm_tokens else "",
        f"{time.time() - started:.0f}s",
    )
    recent = [r for r in summary.rows if r.status != RowStatus.QUEUED][-6:]
    arms = [Text(text) for text in portfolio_lines(summary)]
    return Group(line, *arms, results_table(summary, recent) if recent else Text(""))


def print_summary(console: Console, summary: RunSummary) -> None:
    console.print(headline(summary))
    rows = ([summary.baseline] if summary.baseline else []) + summary.rows
    console.print(results_table(summary, rows))
    if summary.noise_std is not None:
        console.print(
            f"~ marks a difference within 2 sd of the noise on the difference of means "
            f"(run-to-run sd {summary.noise_std:.4f})"
        )
    warning = summary.floor_warning()
    if warning:
        console.print(f"[yellow]note:[/] {warning}", highlight=False)
    if any(r.replicates for r in summary.rows):
        console.print("mean ± 95% confidence interval over the idea's runs (its own and its re-runs with fresh seeds)")
    table = failures(summary)
    if table is not None:
        console.print(table)
