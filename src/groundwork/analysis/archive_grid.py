"""A run's ideas as a MAP-Elites grid (search/archive.py's cells): for the report and the
dashboard, each filled cell with its best valid idea. Rows are the first descriptor's
values, columns the second's (one column when there is one descriptor)."""

from __future__ import annotations

from collections.abc import Sequence

from groundwork.analysis.details import RunDetails
from groundwork.descriptors import DESCRIPTORS, cell_of, changed_lines


def archive_grid(run: RunDetails, descriptors: Sequence[str] = ("category", "diff_size")) -> dict:
    descriptors = list(descriptors)[:2]
    objective = run.summary.objective
    best: dict[tuple[str, ...], object] = {}
    for d in run.ideas:
        if not d.valid:
            continue
        cell = cell_of(d.idea, changed_lines(d.diff), descriptors)
        held = best.get(cell)
        if held is None or objective.better(d.result.metric, held.result.metric):  # type: ignore[union-attr,attr-defined,operator]
            best[cell] = d
    rows = list(DESCRIPTORS[descriptors[0]][1])
    cols = list(DESCRIPTORS[descriptors[1]][1]) if len(descriptors) > 1 else [""]
    table = [
        [
            None
            if (d := best.get((r, c) if len(descriptors) > 1 else (r,))) is None
            else {"id": d.idea.id, "title": d.idea.title, "metric": f"{d.result.metric:.4f}"}  # type: ignore[attr-defined,union-attr]
            for c in cols
        ]
        for r in rows
    ]
    return {"descriptors": descriptors, "rows": rows, "cols": cols, "cells": table, "filled": len(best)}
