"""Policy checkpoints, one folder per learned step, written whole or not at all (a temp
folder renamed into place), so a run killed at any moment resumes from the last step it
finished learning. The two newest are kept."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from groundwork.rl.config import rl_dir
from groundwork.rl.policy import Policy

KEEP = 2
STEP_DIR = re.compile(r"^step-(\d{5})$")


def checkpoints_dir(run_dir: Path) -> Path:
    return rl_dir(run_dir) / "checkpoints"


def latest_checkpoint(run_dir: Path) -> tuple[int, Path | None]:
    """(the last learned step, its folder); (0, None) before the first update."""
    folder = checkpoints_dir(run_dir)
    steps = sorted(int(m.group(1)) for p in folder.glob("step-*") if (m := STEP_DIR.match(p.name)))
    if not steps:
        return 0, None
    return steps[-1], folder / f"step-{steps[-1]:05d}"


def save_checkpoint(run_dir: Path, step: int, policy: Policy, optimizer: torch.optim.Optimizer) -> Path:
    folder = checkpoints_dir(run_dir)
    final = folder / f"step-{step:05d}"
    tmp = folder / f".step-{step:05d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "policy").mkdir(parents=True)
    policy.save(tmp / "policy")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step}))
    shutil.rmtree(final, ignore_errors=True)  # a step relearned after a resume
    os.replace(tmp, final)
    for old in sorted(p for p in folder.glob("step-*") if STEP_DIR.match(p.name))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final
