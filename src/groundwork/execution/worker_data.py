"""Prepared data on a worker that does not share the controller's cache.

A job's spec names the data folders (its pre-flight profile's too) by the controller's paths. On a cluster node where
that folder is missing, the worker runs the environment's locked preparation itself (once
per node: concurrent jobs wait on a file lock), into the same path, then builds training's
view of it. The evaluation checks the data's hashes as everywhere, so a node that prepared
different data cannot score a job.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

from groundwork.environments import interpreters
from groundwork.environments.registry import (
    DATA_ENV,
    TRAIN_DATA_ENV,
    fill_command,
    interpreter_cache,
    preparation_lock,
    training_view,
)
from groundwork.protocols import JobSpec


class WorkerDataError(RuntimeError):
    """The job's data is not on this worker and cannot be prepared here."""


def worker_interpreter(spec: JobSpec) -> JobSpec:
    """The spec with `{python}` this worker's build of the environment's interpreter (the
    controller's path means nothing here): built once per node and cached, like the data."""
    if not spec.interpreter:
        return spec
    request = interpreters.InterpreterRequest.from_dict(spec.interpreter)
    try:
        built = interpreters.ensure(request, interpreter_cache())
    except interpreters.InterpreterError as exc:
        raise WorkerDataError(f"on worker {socket.gethostname()}: {exc}") from None
    return dataclasses.replace(spec, python=built.python)


def ensure_data(spec: JobSpec, codebase: Path, log_path: Path) -> bool:
    """Make the spec's data folders exist on this machine, the pre-flight profile's too;
    True when it had to prepare any. Preparation output goes to `log_path`."""
    prepared = _ensure(spec, spec.env, spec.prepare_command, spec.training_files, codebase, log_path)
    if spec.preflight:  # its own folder, prepared with its own profile's settings
        p = spec.preflight
        command = p.get("prepare_command", spec.prepare_command)
        prepared = _ensure(spec, p["env"], command, p["training_files"], codebase, log_path) or prepared
    return prepared


def _ensure(
    spec: JobSpec,
    env: dict[str, str],
    prepare_command: list[str],
    training_files: list[str] | None,
    codebase: Path,
    log_path: Path,
) -> bool:
    if DATA_ENV not in env:
        return False
    data_dir = Path(env[DATA_ENV])
    view = Path(env.get(TRAIN_DATA_ENV, data_dir))
    if data_dir.is_dir() and view.is_dir():
        return False
    host = socket.gethostname()
    if not prepare_command:
        raise WorkerDataError(
            f"prepared data {data_dir} is not on worker {host}, and environment {spec.environment!r} has no "
            "prepare command: put the data cache (GROUNDWORK_CACHE) on a file system every node mounts"
        )
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkerDataError(
            f"cannot create {data_dir.parent} on worker {host} to prepare the data there ({exc}): point "
            "GROUNDWORK_CACHE at a path every node can write, or at a shared file system, and resume the run"
        ) from None
    with preparation_lock(data_dir):  # one preparation per node; the others wait for it
        if data_dir.is_dir() and view.is_dir():  # another job on this node has just prepared it
            return False
        command = fill_command(prepare_command, spec.python or sys.executable, data_dir, codebase.resolve())
        with open(log_path, "ab") as log:
            log.write(f"groundwork: preparing data on {host}: {' '.join(command)}\n".encode())
            log.flush()
            code = subprocess.run(
                command, cwd=codebase, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            ).returncode
        if code != 0:
            raise WorkerDataError(
                f"data preparation on worker {host} failed (exit {code}): {' '.join(command)}; "
                f"its output is in {log_path.name}"
            )
        built = training_view(data_dir, training_files, spec.environment or "this environment")
    if built != view:
        raise WorkerDataError(f"training's data view on {host} is {built}, the spec expects {view}")
    return True
