"""Reading ideas out of a model's answer: tagged <idea> blocks, or a JSON list as a
fallback. Malformed blocks are skipped, never guessed at."""

from __future__ import annotations

import json
import re

from groundwork.protocols import IdeaDraft

CATEGORIES = {
    "hyperparameter",
    "schedule",
    "architecture",
    "optimizer",
    "initialization",
    "normalization",
    "regularization",
    "loss",
    "data",
    "other",
}
_IDEA = re.compile(r"<idea>(.*?)</idea>", re.DOTALL | re.IGNORECASE)


def _tag(block: str, name: str) -> str:
    match = re.search(rf"<{name}>(.*?)</{name}>", block, re.DOTALL | re.IGNORECASE)
    return match.group(1).strip() if match else ""


def _draft(title: str, description: str, changes: str, category: str) -> IdeaDraft | None:
    title, description = " ".join(title.split()), description.strip()
    if not title or not description:
        return None
    category = category.strip().lower()
    text = description + (f"\n\nCode changes: {changes.strip()}" if changes.strip() else "")
    return IdeaDraft(title=title[:200], text=text, category=category if category in CATEGORIES else "other")


def parse_ideas(answer: str) -> list[IdeaDraft]:
    drafts = [
        _draft(_tag(b, "title"), _tag(b, "description"), _tag(b, "changes"), _tag(b, "category"))
        for b in _IDEA.findall(answer)
    ]
    if not drafts:
        drafts = _parse_json(answer)
    return [d for d in drafts if d is not None]


def _parse_json(answer: str) -> list[IdeaDraft | None]:
    start, end = answer.find("["), answer.rfind("]")
    if start < 0 or end <= start:
        return []
    try:
        items = json.loads(answer[start : end + 1])
    except json.JSONDecodeError:
        return []
    return [
        _draft(
            str(i.get("title", "")),
            str(i.get("description", "")),
            str(i.get("changes", "")),
            str(i.get("category", "")),
        )
        for i in items
        if isinstance(i, dict)
    ]
