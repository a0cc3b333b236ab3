"""Research environments: a baseline codebase, a locked evaluation and a manifest."""

from groundwork.environments.manifest import Manifest, ManifestError, Profile
from groundwork.environments.registry import Environment, builtin_names, load_environment

__all__ = ["Environment", "Manifest", "ManifestError", "Profile", "builtin_names", "load_environment"]
