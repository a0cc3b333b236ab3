#!/usr/bin/env python3
"""Set up Groundwork in a local virtual environment, then run the demo or the tests.

    python3 bootstrap.py demo    # set up the core, then run the offline demo (`groundwork run`)
    python3 bootstrap.py test    # set up with every extra the tests use, then run the test suite
    python3 bootstrap.py setup   # set up with every extra, and stop there

Needs only Python 3.10+ with pip and venv. PyTorch: if the Python running this script
can already import torch (say, your CUDA build), the virtual environment sees that one
and nothing replaces it; otherwise the CPU build is installed (GROUNDWORK_TORCH_SPEC
overrides the requirement, GROUNDWORK_TORCH_INDEX_URL the index pip takes it from).
Re-running is fast: set-up steps whose inputs did not change are skipped.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("GROUNDWORK_VENV", ROOT / ".venv"))
TORCH_SPEC = os.environ.get("GROUNDWORK_TORCH_SPEC", "torch==2.13.0")
MARKER = VENV / ".groundwork-installed"


def say(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_torch(python: str | Path) -> bool:
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
    return probe.returncode == 0


def run(*command: str) -> None:
    subprocess.run(command, check=True)


def setup(extras: str = "dev") -> Path:
    if sys.version_info < (3, 10):  # noqa: UP036 - this script must run on old Pythons to say so
        sys.exit(f"Groundwork needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    python = venv_python()
    if not python.exists():
        reuse = has_torch(sys.executable)
        say(f"creating {VENV}" + (" (reusing this Python's torch)" if reuse else ""))
        venv.EnvBuilder(with_pip=True, system_site_packages=reuse).create(VENV)
    if not has_torch(python):
        command = [str(python), "-m", "pip", "install", TORCH_SPEC]
        if os.environ.get("GROUNDWORK_TORCH_INDEX_URL"):
            command += ["--index-url", os.environ["GROUNDWORK_TORCH_INDEX_URL"]]
        say(f"installing PyTorch ({TORCH_SPEC})")
        run(*command)
    # The demo needs only the core; the tests need every extra (Ray, trackers, browser
    # driver, RL...). An install with more extras serves a step that needs fewer.
    fingerprint = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    installed = MARKER.read_text().split() if MARKER.exists() else []
    if not installed or installed[0] != fingerprint or (extras and extras not in installed[1:]):
        target = f"{ROOT}[{extras}]" if extras else str(ROOT)
        say(f"installing groundwork and its dependencies{f' (extras: {extras})' if extras else ''}")
        run(str(python), "-m", "pip", "install", "--quiet", "-e", target)
        MARKER.write_text(" ".join([fingerprint, *([extras] if extras else [])]))
    say(f"ready: {VENV / 'bin' / 'groundwork'}")
    return python


def parallel(extra: list[str]) -> list[str]:
    """pytest-xdist workers, one per core (at most 4), unless the arguments choose: most
    tests wait on processes they started (runs, clusters, a browser), so two workers on
    2 cores take about two thirds of the time. A file's tests stay on one worker
    (`loadfile`), which makes each module's fixtures once."""
    if any(a == "-n" or a.startswith(("--numprocesses", "-n=")) or (a.startswith("-n") and a[2:].isdigit())
           for a in extra) or "no:xdist" in extra:  # fmt: skip
        return []
    workers = min(os.cpu_count() or 1, 4)
    return ["-n", str(workers), "--dist", "loadfile"] if workers > 1 else []


def main(argv: list[str]) -> int:
    action, extra = (argv[0], argv[1:]) if argv else ("setup", [])
    if action not in {"setup", "demo", "test"}:
        print(__doc__)
        return 2
    python = setup("" if action == "demo" else "dev")
    if action == "demo":
        say("running the demo: nanogpt tiny, catalog ideator (no LLM), baseline + 2 epochs of 4 ideas, 2 in parallel")
        return subprocess.call([str(python), "-m", "groundwork.cli", "run", *extra])
    if action == "test":
        return subprocess.call([str(python), "-m", "pytest", "-q", *parallel(extra), *extra], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
