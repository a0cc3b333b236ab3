"""The `{name}` placeholders of a manifest's commands: which a command may use, and filling them.

A job's commands (train, evaluate and any other phase of a job) get every placeholder, so a
script driven by command-line flags needs no wrapper. Data preparation runs once per data
folder, shared by every job and seed, so it gets only what does not depend on a job.
Only `{identifier}` is a placeholder: other braces (a JSON argument) pass through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# What each placeholder becomes (the docs' table says the same).
MEANINGS = {
    "python": "the environment's interpreter (its own when it names requirements, else Groundwork's)",
    "data_dir": "the data folder: training's view of it for train, the whole prepared folder otherwise",
    "seed": "the job's seed",
    "budget_s": "training's seconds (the time budget; under a compute budget the kill limit)",
    "work_dir": "the job's work folder (the command's working folder)",
    "output_dir": "the job's output folder (work_dir/out, where train_log.jsonl goes)",
}
JOB_PLACEHOLDERS = tuple(MEANINGS)
PREPARE_PLACEHOLDERS = ("python", "data_dir", "work_dir")  # prepare: no job, no seed, no budget


def names(args: Iterable[str]) -> list[str]:
    """The placeholder names a command uses, in order, each once."""
    return list(dict.fromkeys(m.group(1) for arg in args for m in PLACEHOLDER.finditer(arg)))


def unknown(command_name: str, args: Iterable[str]) -> list[str]:
    """One problem per placeholder that command `command_name` cannot have."""
    allowed = PREPARE_PLACEHOLDERS if command_name == "prepare" else JOB_PLACEHOLDERS
    shown = ", ".join(f"{{{n}}}" for n in allowed)
    problems = []
    for name in names(args):
        if name in allowed:
            continue
        why = (
            " (data preparation runs once per data folder, for every job and seed: it has no job's values)"
            if name in JOB_PLACEHOLDERS
            else ""
        )
        problems.append(f"unknown placeholder {{{name}}} in run.{command_name}{why}; allowed there: {shown}")
    return problems


def fill(args: Iterable[str], values: Mapping[str, str]) -> list[str]:
    """`args` with each placeholder that `values` holds replaced (others are left as written)."""
    return [PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), arg) for arg in args]
