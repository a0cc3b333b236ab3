"""Names no patch may create: Python's start-up hooks, and files that shadow a module
the code imports.

`sitecustomize`, `usercustomize` and `*.pth` files run at interpreter start-up wherever
they lie on the path, before any script. A new `json.py` or `torch/` beside a training
script would be imported instead of the real module by the script, and by the locked
evaluation that imports it, so a new file may not take the name of a module the
interpreter already resolves: the standard library's, an installed distribution's, or
anything on `sys.path`.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.machinery
import importlib.metadata
import os
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import PurePosixPath

STARTUP_HOOKS = frozenset({"sitecustomize", "usercustomize"})
# Longest first: 'x.cpython-311-x86_64-linux-gnu.so' is module 'x', not 'x.cpython-311-...'.
_MODULE_SUFFIXES = sorted(importlib.machinery.all_suffixes(), key=len, reverse=True)


def module_name(part: str, is_file: bool) -> str | None:
    """The import name a path component provides: a folder's own name (a package, or a
    namespace portion), a file's name without its module suffix; None if it provides none."""
    if is_file:
        suffix = next((s for s in _MODULE_SUFFIXES if part.endswith(s)), None)
        if suffix is None:
            return None
        part = part[: -len(suffix)]
    return part if part.isidentifier() else None


@functools.cache
def stdlib_names() -> frozenset[str]:
    return frozenset(n.casefold() for n in (*sys.stdlib_module_names, *sys.builtin_module_names))


@functools.cache
def installed_names() -> frozenset[str]:
    """Top-level import names this interpreter resolves outside the standard library:
    installed distributions' packages (their metadata) and every module on `sys.path`,
    the current folder left out so that the answer does not depend on where groundwork runs."""
    names = set(importlib.metadata.packages_distributions())
    cwd = os.getcwd()
    folders = [p for p in sys.path if p and os.path.abspath(p) != cwd]
    names.update(m.name for m in pkgutil.iter_modules(folders))
    return frozenset(n.casefold() for n in names if n.isidentifier()) - stdlib_names()


def startup_hook(rel: str) -> str | None:
    """Why Python would run the new file `rel` at start-up, or None."""
    path = PurePosixPath(rel)
    if path.name.casefold().endswith(".pth"):
        return f"{rel!r} is a .pth file, which Python runs at start-up wherever it lies on the path"
    for k, part in enumerate(path.parts):
        name = module_name(part, is_file=k == len(path.parts) - 1)
        if name and name.casefold() in STARTUP_HOOKS:
            return f"{rel!r} is a {name} module, which Python imports at start-up wherever it lies on the path"
    return None


def shadowed_module(rel: str, script_dirs: Iterable[str]) -> str | None:
    """Why the new file `rel` would shadow an import, or None. `script_dirs` are the folders
    that may be first on `sys.path` (the codebase root, '', and where the scripts live)."""
    parts = PurePosixPath(rel).parts
    for folder in sorted(set(script_dirs)):
        base = PurePosixPath(folder).parts if folder else ()
        if len(parts) <= len(base) or parts[: len(base)] != base:
            continue
        name = module_name(parts[len(base)], is_file=len(parts) == len(base) + 1)
        if name is None:
            continue
        if name.casefold() in stdlib_names():
            kind = "the standard library's"
        elif name.casefold() in installed_names():
            kind = "the installed"
        else:
            continue
        where = f"{folder}/" if folder else "the codebase root"
        return (
            f"{rel!r} would shadow {kind} module {name!r}: code run from {where} would import it "
            "instead; give the new file another name"
        )
    return None


def matches(rel: str, patterns: Iterable[str]) -> bool:
    """Whether `rel` matches one of the glob patterns (fnmatch, case-sensitive: '*' crosses folders)."""
    return any(fnmatch.fnmatchcase(rel, pattern) for pattern in patterns)
