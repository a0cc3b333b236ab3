"""Plain command-line error text: a bad option value is reported as the option, the value
and what is allowed, never as a library's validation dump."""

from __future__ import annotations

import importlib.util
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

# Config fields whose option is not simply --field-name.
RUN_FLAGS = {
    "environment": "--env",
    "ideas_per_epoch": "--ideas",
    "time_budget_s": "--time-budget",
    "prompts_dir": "--prompts",
    "ideator_llm": "--llm",
    "ideator_llms": "--ideator-llm",
    "implementer_llms": "--implementer-llm",
}


def flag_for(field: str, flags: Mapping[str, str] = RUN_FLAGS) -> str:
    return flags.get(field) or "--" + field.replace("_", "-")


def choices(model: type[BaseModel], field: str) -> list[str]:
    """The allowed values of a Literal field (optional or not), in declaration order."""
    info = model.model_fields.get(field)
    found: list[str] = []

    def walk(tp: Any) -> None:
        origin = typing.get_origin(tp)
        if origin is typing.Literal:
            found.extend(str(a) for a in typing.get_args(tp))
        elif origin in (typing.Union, types.UnionType):
            for arg in typing.get_args(tp):
                walk(arg)

    if info is not None:
        walk(info.annotation)
    return found


def validation_message(exc: ValidationError, model: type[BaseModel], flags: Mapping[str, str] = RUN_FLAGS) -> str:
    """One line per bad value: `Invalid value for --search: 'x'; choose from a, b, c`."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if isinstance(part, str)]
        msg = str(error["msg"]).removeprefix("Value error, ")
        if not loc:  # a check across fields: its own message already names the options
            lines.append(msg)
            continue
        flag = flag_for(loc[0], flags)
        value = error.get("input")
        if error["type"] == "literal_error" and (allowed := choices(model, loc[0])):
            lines.append(f"Invalid value for {flag}: {value!r}; choose from {', '.join(allowed)}")
        elif error["type"] == "extra_forbidden":
            lines.append(f"Unknown setting {loc[0]!r}")
        else:
            lines.append(f"Invalid value for {flag}: {value!r}; {msg.replace('Input should be', 'must be')}")
    return "\n".join(lines)


def build(config_type: type[Model], flags: Mapping[str, str] = RUN_FLAGS, /, **fields: Any) -> Model:
    """The config, or a ValueError carrying the plain message (the CLI prints it, exit 2).
    Positional-only: a config may have a field named `model` or `flags`."""
    try:
        return config_type(**fields)
    except ValidationError as exc:
        raise ValueError(validation_message(exc, config_type, flags)) from None


# The extra that brings each optional package a command may need.
EXTRA_OF = {"torch": "torch", "transformers": "rl", "tokenizers": "rl", "peft": "rl", "datasets": "rl"}


def module_available(name: str) -> bool:
    """Installed, without importing it (transformers takes seconds to import)."""
    if name in sys.modules:
        return sys.modules[name] is not None  # None: imports of it are blocked
    return importlib.util.find_spec(name) is not None


def require_extras(command: str, modules: list[str]) -> None:
    """A ValueError with the exact install command when an optional package is missing."""
    missing = [m for m in modules if not module_available(m)]
    if not missing:
        return
    extras = sorted({EXTRA_OF.get(m, m) for m in missing}, key=lambda extra: (extra != "torch", extra))
    install = " ".join(f"'groundwork[{extra}]'" for extra in extras)
    raise ValueError(f"`{command}` needs {' and '.join(missing)}, not installed here: pip install {install}")
