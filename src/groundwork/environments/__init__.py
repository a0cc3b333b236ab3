"""Research environments: a baseline codebase, a locked evaluation and a manifest."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from groundwork.environments.manifest import Manifest, ManifestError, Profile
    from groundwork.environments.registry import Environment, builtin_names, load_environment

__all__ = ["Environment", "Manifest", "ManifestError", "Profile", "builtin_names", "load_environment"]

# Loaded on first use, not with the package: the job runner, a process started per job, needs
# only `placeholders`, and the manifest's models cost it about half a second of start-up.
_HOMES = {
    "Manifest": "manifest",
    "ManifestError": "manifest",
    "Profile": "manifest",
    "Environment": "registry",
    "builtin_names": "registry",
    "load_environment": "registry",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
