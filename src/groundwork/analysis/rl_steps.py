"""The per-step figures of an RL run, as plain rows for any view or report: rewards,
execution rate, lengths and the diversity of each step's ideas. Empty for runs that are
not RL runs (or have not learned a step yet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from groundwork.store.step_log import StepLog

DIVERSITY_COLUMNS = ("distinct_1", "distinct_2", "pairwise_similarity", "embedding_spread")
STEP_COLUMNS = (
    "step",
    "ideas",
    "mean_reward",
    "max_reward",
    "execution_rate",
    "idea_words",
    "thinking_words",
    *DIVERSITY_COLUMNS,
)


def rl_step_table(run_dir: Path | str) -> list[dict[str, Any]]:
    """One row per learned step, with the columns in STEP_COLUMNS (None where a figure
    was not measured, e.g. embedding spread with no embedding model installed)."""
    return [{c: row.get(c) for c in STEP_COLUMNS} for row in StepLog(Path(run_dir)).rows()]


def rl_diversity_table(run_dir: Path | str) -> list[dict[str, Any]]:
    """Step and diversity figures only: distinct 1- and 2-grams, mean pairwise word-set
    similarity, embedding spread."""
    return [{c: row[c] for c in ("step", *DIVERSITY_COLUMNS)} for row in rl_step_table(run_dir)]
