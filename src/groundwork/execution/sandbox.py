"""The sandbox for model-written code: bubblewrap (`bwrap`) with no network and the whole
file system read-only except the job's own work folder.

Where bwrap cannot run (not installed, or the kernel refuses it namespaces) a job still
runs, under the same time, memory and output limits, with a warning in its log and its
result's flags; `sandbox = "required"` refuses to run it instead.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
MODES = ("auto", "required", "off")
# Extra paths a job may write (os.pathsep-separated), e.g. a shared cache; a path that does
# not exist yet opens its parent folder.
WRITABLE_ENV = "GROUNDWORK_SANDBOX_WRITABLE"


@dataclass(frozen=True)
class SandboxStatus:
    available: bool
    detail: str  # why not, when it is not


@functools.cache
def probe() -> SandboxStatus:
    """Whether bwrap can build a no-network sandbox on this machine (checked once)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return SandboxStatus(False, f"bwrap is not installed; {INSTALL_HINT}")
    try:
        done = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "--unshare-pid", "--", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return SandboxStatus(False, f"bwrap failed to start: {exc}")
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        return SandboxStatus(
            False,
            f"bwrap cannot create namespaces here ({reason}); allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1) or run the workers as a user that may",
        )
    return SandboxStatus(True, "")


def extra_writable(environ: dict[str, str] | None = None) -> list[Path]:
    value = (os.environ if environ is None else environ).get(WRITABLE_ENV, "")
    paths = []
    for item in filter(None, value.split(os.pathsep)):
        path = Path(item).resolve()
        paths.append(path if path.exists() else path.parent)
    return [p for p in paths if p.exists()]


def wrap(command: list[str], work_dir: Path, writable: list[Path] = ()) -> list[str]:
    """`command` inside bwrap: everything read-only, `work_dir` (and `writable`) writable,
    no network, private /dev/shm and process table, killed with its parent."""
    work = str(Path(work_dir).resolve())
    args = [
        shutil.which("bwrap") or "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--ro-bind", "/", "/",
        "--dev-bind", "/dev", "/dev",  # GPUs stay reachable
        "--tmpfs", "/dev/shm",
        "--proc", "/proc",
    ]  # fmt: skip
    for path in writable:
        args += ["--bind", str(path), str(path)]
    args += ["--bind", work, work, "--chdir", work, "--"]
    return args + list(command)


def private_dirs_env(work_dir: Path) -> dict[str, str]:
    """Temporary and cache folders inside the work folder: everything else is read-only."""
    work = Path(work_dir)
    return {
        "TMPDIR": str(work / ".tmp"),
        "XDG_CACHE_HOME": str(work / ".cache"),
        "MPLCONFIGDIR": str(work / ".cache" / "matplotlib"),
        "TRITON_CACHE_DIR": str(work / ".cache" / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(work / ".cache" / "inductor"),
        "HF_HOME": str(work / ".cache" / "huggingface"),
    }
