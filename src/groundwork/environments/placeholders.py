"""The `{name}` placeholders a manifest's commands may hold, and filling them in.

A flag-driven training script needs no wrapper: `train = ["{python}", "train.py",
"--seed", "{seed}", "--out", "{output_dir}", "--data", "{data_dir}/train.txt"]`. Every job
command gets them all; the data preparation, which runs once per data folder and not per
job, gets `{python}` and `{data_dir}`."""

from __future__ import annotations

import re

JOB_PLACEHOLDERS = {
    "python": "the interpreter that runs the environment's commands",
    "data_dir": "the data folder (training: its training view; the evaluation: the whole folder)",
    "seed": "the job's seed",
    "budget_s": "the job's time budget in seconds",
    "work_dir": "the job's work folder (the patched codebase; also the working directory)",
    "output_dir": "the folder for checkpoints and train_log.jsonl (work_dir/out)",
}
PREPARE_PLACEHOLDERS = ("python", "data_dir")
PATTERN = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def unknown_placeholders(command: list[str], allowed) -> list[str]:
    return sorted({name for arg in command for name in PATTERN.findall(arg) if name not in allowed})


def fill(command: list[str], values: dict[str, str]) -> list[str]:
    """`command` with every `{name}` of `values` replaced (others were refused when the
    manifest was read)."""
    return [PATTERN.sub(lambda m: values.get(m.group(1), m.group(0)), arg) for arg in command]
