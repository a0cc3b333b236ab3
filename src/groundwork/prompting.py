"""Prompt templates (Jinja2 files in `prompts/`, overridable by a folder of your own) and
the shared context every call of an epoch starts with: goal, metric, rules and code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from groundwork.environments import Environment

BUILTIN_PROMPTS = Path(__file__).with_name("prompts")
LANGUAGES = {".py": "python", ".toml": "toml", ".json": "json", ".sh": "bash", ".md": "markdown", ".yaml": "yaml"}


@dataclass(frozen=True)
class CodeFile:
    path: str
    text: str
    editable: bool
    language: str


class PromptLibrary:
    def __init__(self, override_dir: Path | None = None):
        folders = ([str(override_dir)] if override_dir else []) + [str(BUILTIN_PROMPTS)]
        self._jinja = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            autoescape=False,
        )

    def render(self, name: str, **values: Any) -> str:
        try:
            return self._jinja.get_template(f"{name}.j2").render(**values).strip() + "\n"
        except jinja2.TemplateError as exc:
            raise ValueError(f"prompt template {name}.j2: {exc}") from None


def code_files(env: Environment, line_numbers: bool) -> list[CodeFile]:
    editable = set(env.manifest.files.editable)
    files = []
    for rel in env.visible_files():
        text = (env.codebase_dir / rel).read_text(encoding="utf-8", errors="replace")
        if line_numbers:
            width = len(str(text.count("\n") + 1))
            text = "".join(f"{n:>{width}}| {line}" for n, line in enumerate(text.splitlines(keepends=True), 1))
        if text and not text.endswith("\n"):
            text += "\n"
        files.append(CodeFile(rel, text, rel in editable, LANGUAGES.get(Path(rel).suffix, "")))
    return files


def environment_context(prompts: PromptLibrary, env: Environment, budget: str, line_numbers: bool) -> str:
    """The long, cacheable part of every prompt: identical across the calls of an epoch.
    `budget` says what a run gets, in words (ResolvedProfile.prompt_budget)."""
    files = code_files(env, line_numbers)
    return prompts.render(
        "context",
        env=env.manifest,
        metric=env.manifest.metric,
        budget=budget,
        files=files,
        editable=[f.path for f in files if f.editable],
        readonly=[f.path for f in files if not f.editable],
    )
