"""The settings of an RL run, stored in its run folder (`rl/config.json`) so that
`groundwork rl resume` continues with exactly the same ones."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RL_DIR = "rl"
CONFIG_FILE = "config.json"


class RLConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str  # a local folder or a Hugging Face model name (loaded offline when cached)
    lora_rank: int = Field(default=0, ge=0)  # 0: train every weight; >0: LoRA adapters of this rank
    lora_alpha: int = Field(default=32, ge=1)
    steps: int = Field(default=20, ge=1)
    prompts_per_step: int = Field(default=1, ge=1)
    group_size: int = Field(default=8, ge=2)  # ideas sampled per prompt; GRPO compares within a group
    learning_rate: float = Field(default=1e-5, gt=0)
    kl_beta: float = Field(default=0.0, ge=0)  # weight of the KL penalty to the starting policy
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_new_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    prompt: Literal["context", "goal"] = "context"  # the full environment context, or its goal alone
    past_ideas: int = Field(default=0, ge=0)  # best earlier ideas (with rewards) shown in the prompt
    failure_reward: float = -1.0  # reward of an idea that fails to implement or to run
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    embedding_model: str | None = "auto"  # for embedding spread; auto: the offline MiniLM if installed; None: off
    # CPU threads for the policy; more than one is slower on a small, shared machine
    torch_threads: int = Field(default=1, ge=1)


def rl_dir(run_dir: Path) -> Path:
    return Path(run_dir) / RL_DIR


def is_rl_run(run_dir: Path) -> bool:
    return (rl_dir(run_dir) / CONFIG_FILE).is_file()


def save_rl_config(run_dir: Path, config: RLConfig) -> None:
    folder = rl_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CONFIG_FILE}.tmp"
    tmp.write_text(json.dumps(config.model_dump(), indent=2))
    os.replace(tmp, folder / CONFIG_FILE)


def load_rl_config(run_dir: Path) -> RLConfig:
    path = rl_dir(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} is not an RL run (no {RL_DIR}/{CONFIG_FILE}): start one with `groundwork rl`")
    return RLConfig.model_validate_json(path.read_text())
