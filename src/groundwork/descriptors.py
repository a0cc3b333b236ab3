"""An idea's archive descriptors (its category, the size of its diff, the prompt that made
it) and the cell they make: pure functions of the idea and its diff, so a cell never
changes between runs. The MAP-Elites archive (search/archive.py) and the report's grid
(analysis/archive_grid.py) use them; the run settings check `--descriptors` names here."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from groundwork.idea_categories import CATEGORIES, fold, keyword_category
from groundwork.records import Idea

DIFF_BINS = (4, 16, 64)  # upper edges (lines added + removed) of the diff-size bins; the last is open
DIFF_LABELS = ("<=4", "5-16", "17-64", ">64")
KIND_LABELS = ("simple", "explore", "exploit")


def idea_category(idea: Idea) -> str:
    """The idea's own label folded into the report's six, else by keywords (no model call:
    the cell of an idea must not change between runs)."""
    label = fold(idea.category)
    if label == "other" and idea.category.strip().lower() != "other":  # a label of none of the six
        return keyword_category(idea.title, idea.text)
    return label


def changed_lines(diff: str) -> int:
    return sum(1 for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))


def diff_bin(lines: int) -> str:
    for edge, label in zip(DIFF_BINS, DIFF_LABELS, strict=False):
        if lines <= edge:
            return label
    return DIFF_LABELS[-1]


# name -> (the descriptor of an idea given its diff's changed lines, the descriptor's values in order)
DESCRIPTORS: dict[str, tuple[Callable[[Idea, int], str], tuple[str, ...]]] = {
    "category": (lambda idea, lines: idea_category(idea), CATEGORIES),
    "diff_size": (lambda idea, lines: diff_bin(lines), DIFF_LABELS),
    "kind": (
        lambda idea, lines: str(idea.prompt_kind) if str(idea.prompt_kind) in KIND_LABELS else "simple",
        KIND_LABELS,
    ),
}


def check_descriptors(names: Sequence[str]) -> list[str]:
    names = [n.strip() for n in names if n.strip()]
    bad = [n for n in names if n not in DESCRIPTORS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(
            f"archive descriptors must be one or more distinct names of {', '.join(DESCRIPTORS)}; got "
            f"{','.join(names) or 'none'} (e.g. --descriptors category,diff_size)"
        )
    return names


def cell_of(idea: Idea, lines: int, descriptors: Sequence[str]) -> tuple[str, ...]:
    """The idea's cell: one value per descriptor, a pure function of the idea and its diff."""
    return tuple(DESCRIPTORS[name][0](idea, lines) for name in descriptors)
