"""`groundwork run`'s options drawn from RunConfig: each option's default, help and choices
are its field's, so the model is the one source of them; `--config FILE` settings sit
between the defaults and the flags given on the command line."""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import typer

from groundwork.cli_errors import build, choices, flag_for
from groundwork.config import RunConfig

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

SHORT_NAMES = {"environment": "-e", "profile": "-p"}
# List fields written as one comma-separated value; the others repeat their option.
COMMA_SEPARATED = {"descriptors"}
# The repeatable portfolio options also set the single-model field (its first model).
PORTFOLIO_LEADS = {"ideator_llms": "ideator_llm", "implementer_llms": "implementer_llm"}


def run_option(field: str, help: str | None = None) -> Any:
    """The typer option of one RunConfig field. Ranges are left to the model, so a bad value
    is reported once, in cli_errors' plain style; Literal choices show as [a|b|c]."""
    info = RunConfig.model_fields[field]
    flag = flag_for(field)
    names = [f"{flag}/--no-{flag[2:]}" if _is_bool(info.annotation) else flag]
    if field in SHORT_NAMES:
        names.append(SHORT_NAMES[field])
    default = info.get_default(call_default_factory=True)
    if isinstance(default, list):
        default = ",".join(default) if field in COMMA_SEPARATED else None
    allowed = choices(RunConfig, field)
    return typer.Option(
        default,
        *names,
        help=help or info.description,
        metavar=f"[{'|'.join(allowed)}]" if allowed else None,
        show_default=default is not None and default is not False,
    )


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or set(typing.get_args(annotation)) == {bool, type(None)}


def config_from_options(
    values: Mapping[str, Any], given: Collection[str], config_file: Path | None
) -> tuple[RunConfig, dict[str, str]]:
    """The run's config: defaults, then the file's settings, then the flags in `given` (the
    options typed on the command line, by parameter name; `values` holds every option's value).
    With it, where each field's value came from (its flag, or the file) for later messages."""
    fields = read_config_file(config_file) if config_file else {}
    where = {name: flag_for(name) for name in RunConfig.model_fields}
    where.update({name: f"{name} (in {config_file})" for name in fields})
    flags = {name: values[name] for name in given if name in RunConfig.model_fields}
    for many, single in PORTFOLIO_LEADS.items():
        if many in flags:  # one --ideator-llm is that model alone; two or more, a portfolio
            specs = list(flags[many])
            flags[single], flags[many] = specs[0], specs if len(specs) > 1 else []
    if "ideator_llm" in flags:
        flags.setdefault("ideator_llms", [])  # --llm names one model: it replaces a portfolio from the file
    for name in COMMA_SEPARATED & flags.keys():
        flags[name] = [part.strip() for part in flags[name].split(",") if part.strip()]
    fields.update(flags)
    where.update({name: flag_for(name) for name in flags})
    for many, single in PORTFOLIO_LEADS.items():
        if many in given:
            where[single] = flag_for(many)
    if fields.get("prompts_dir"):  # stored absolute, so `resume` finds it from any folder
        fields["prompts_dir"] = str(Path(fields["prompts_dir"]).expanduser().resolve())
    return build(RunConfig, where, **fields), where


def read_config_file(path: Path) -> dict[str, Any]:
    """RunConfig fields from a TOML file (a .json file: JSON), unknown names refused."""
    kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--config {path}: cannot read it ({exc.strerror})") from None
    try:
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"--config {path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: write a table of settings (e.g. epochs = 4), not a {type(data).__name__}")
    for name in data:
        if name not in RunConfig.model_fields:
            raise ValueError(f"--config {path}: unknown setting {name!r}{_did_you_mean(name)}")
    return data


def _did_you_mean(name: str) -> str:
    by_flag = {flag_for(field)[2:]: field for field in RunConfig.model_fields}  # "env" -> environment
    key = name.replace("_", "-").removeprefix("--")
    if key in by_flag:
        return f"; the setting of {flag_for(by_flag[key])} is {by_flag[key]!r}"
    close = difflib.get_close_matches(name, list(RunConfig.model_fields), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return "; settings are RunConfig's field names, as in `groundwork run --help` with - written _"
