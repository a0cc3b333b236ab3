"""Typed run configuration: what the user asked for, stored with the run so that
`resume` continues with exactly the same settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str = "nanogpt"
    profile: str | None = None                  # None: the environment's default profile
    search: Literal["evolution"] = "evolution"
    ideator: Literal["catalog"] = "catalog"
    backend: Literal["local"] = "local"
    epochs: int = Field(default=2, ge=1)
    ideas_per_epoch: int = Field(default=4, ge=1)
    slots: int = Field(default=2, ge=1)
    seed: int = 0
    time_budget_s: float | None = Field(default=None, gt=0)  # override the profile's budget
    max_attempts: int = Field(default=3, ge=1)               # tries for a job whose worker is lost
