"""Rich rendering of an RL run's per-step figures (live and at the end)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _f(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def steps_table(rows: list[dict[str, Any]], total_steps: int, last: int | None = None) -> Table:
    shown = rows[-last:] if last else rows
    table = Table(
        title=f"RL steps learned {len(rows)}/{total_steps}"
        + (f"  (reward unit: {rows[-1]['reward_unit']})" if rows else ""),
        title_justify="left",
        header_style="bold",
    )
    columns = ["step", "mean R", "max R", "exec", "idea words", "think words", "distinct-2", "pair sim", "embed spread"]
    for column in columns + ["best idea"]:
        table.add_column(column, justify="left" if column == "best idea" else "right", overflow="fold")
    for r in shown:
        table.add_row(
            str(r["step"]),
            _f(r["mean_reward"]),
            _f(r["max_reward"]),
            _f(r["execution_rate"], "{:.0%}"),
            _f(r["idea_words"], "{:.1f}"),
            _f(r["thinking_words"], "{:.1f}"),
            _f(r["distinct_2"], "{:.2f}"),
            _f(r["pairwise_similarity"], "{:.2f}"),
            _f(r["embedding_spread"], "{:.2f}"),
            r["best_title"][:50],
        )
    return table
