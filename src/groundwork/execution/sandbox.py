"""The sandbox for model-written code: bubblewrap (`bwrap`) with no network, its own
process table, and a file system that holds only what a phase needs.

Visible inside, read-only: the system's programs and libraries (/usr, /bin, /lib*, a few
files of /etc), the Python interpreter and the site-packages it uses, /sys, the GPU device
nodes, the phase's data folder (training: the training view; the evaluation: the whole
prepared folder) and the paths a manifest's `pass_env` variables name. Writable: the job's
work folder, a private /tmp, and the paths of GROUNDWORK_SANDBOX_WRITABLE. Everything else
(the user's home, the run folder with its store and the environment snapshot, the rest of
the data cache) does not exist inside.

Where bwrap cannot run (not installed, or the kernel refuses it namespaces) a job still
runs, under the same time, memory and output limits and with the same minimal environment,
with a warning in its log and its result's flags; `sandbox = "required"` refuses to run it
instead.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from groundwork.redaction import is_secret_name

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
MODES = ("auto", "required", "off")
# Extra paths a job may write (os.pathsep-separated), e.g. a shared cache; a path that does
# not exist yet opens its parent folder.
WRITABLE_ENV = "GROUNDWORK_SANDBOX_WRITABLE"

# The controller's variables a job gets (besides the job's own and what its manifest and
# profile declare): locale, time zone, search path, and what GPU libraries read.
PASSED_NAMES = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "LD_LIBRARY_PATH"})
PASSED_PREFIXES = (
    "LC_",
    "CUDA_",
    "NCCL_",
    "NVIDIA_",
    "CUBLAS_",
    "CUDNN_",
    "TORCH_",
    "PYTORCH_",
    "HIP_",
    "ROCR_",
    "HSA_",
)
# Variables naming folders GPU jobs read (CUDA toolkits): bound read-only when they exist.
PATH_VARIABLES = ("LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH")

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "passwd", "group", "nsswitch.conf", "hosts", "host.conf", "localtime", "timezone",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl", "ca-certificates",
    "mime.types", "os-release",
)  # fmt: skip
GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")


class EnvironmentRefused(ValueError):
    """A secret-named variable was asked for by name."""


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
            [bwrap, *_system_binds(), "--dev", "/dev", "--unshare-net", "--unshare-pid", "--", "true"],
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


def extra_writable(environ: Mapping[str, str] | None = None) -> list[Path]:
    value = (os.environ if environ is None else environ).get(WRITABLE_ENV, "")
    paths = []
    for item in filter(None, value.split(os.pathsep)):
        path = Path(item).resolve()
        paths.append(path if path.exists() else path.parent)
    return [p for p in paths if p.exists()]


# ---- the environment -------------------------------------------------------------------


def refuse_secrets(names: Iterable[str], where: str) -> None:
    secret = sorted(n for n in names if is_secret_name(n))
    if secret:
        raise EnvironmentRefused(
            f"{where} names secret-looking variables ({', '.join(secret)}): model-written code never gets "
            "API keys, tokens or passwords; remove them (a job that needs a credential cannot be trusted with one)"
        )


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The controller's variables every job gets: the allow-list, never a secret-named one."""
    return {
        k: v
        for k, v in environ.items()
        if (k in PASSED_NAMES or k.startswith(PASSED_PREFIXES)) and not is_secret_name(k)
    }


def passed_variables(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The variables a manifest's `pass_env` names, as the controller has them; a
    secret-named one is refused, not dropped."""
    names = list(names)
    refuse_secrets(names, "pass_env")
    return {k: environ[k] for k in names if k in environ}


def private_dirs_env(work_dir: Path) -> dict[str, str]:
    """Home, temporary and cache folders inside the work folder: a job sees none of the user's."""
    work = Path(work_dir)
    return {
        "HOME": str(work / ".home"),
        "TMPDIR": str(work / ".tmp"),
        "XDG_CACHE_HOME": str(work / ".cache"),
        "XDG_CONFIG_HOME": str(work / ".home" / ".config"),
        "MPLCONFIGDIR": str(work / ".cache" / "matplotlib"),
        "TRITON_CACHE_DIR": str(work / ".cache" / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(work / ".cache" / "inductor"),
        "HF_HOME": str(work / ".cache" / "huggingface"),
        "VLLM_CACHE_ROOT": str(work / ".cache" / "vllm"),
    }


def named_paths(env: Mapping[str, str], names: Iterable[str]) -> list[Path]:
    """Existing absolute paths that the variables `names` hold (os.pathsep-separated lists too)."""
    paths = []
    for name in names:
        for item in env.get(name, "").split(os.pathsep):
            if os.path.isabs(item) and os.path.exists(item):
                paths.append(Path(item).resolve())
    return paths


# ---- the file system -------------------------------------------------------------------


def interpreter_paths() -> list[Path]:
    """The Python installation phases run with: its prefixes, site-packages, and the
    folders those site-packages' .pth files add (editable installs)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    packages = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        packages.append(site.getusersitepackages())
    for folder in packages:
        paths.add(folder)
        for pth in glob.glob(os.path.join(folder, "*.pth")):
            try:
                lines = Path(pth).read_text(errors="replace").splitlines()
            except OSError:
                continue
            paths.update(line.strip() for line in lines if os.path.isabs(line.strip()))
    return sorted({Path(p).resolve() for p in paths if os.path.exists(p)})


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def _covered(path: Path, by: Iterable[Path]) -> bool:
    return any(path.is_relative_to(other) for other in by)


def wrap(
    command: list[str],
    work_dir: Path,
    *,
    read_only: Iterable[Path] = (),
    writable: Iterable[Path] = (),
) -> list[str]:
    """`command` inside bwrap: the system, the interpreter and `read_only` visible
    read-only, `work_dir` (and `writable`) writable, a private /tmp, no network, its own
    process table and IPC, killed with its parent."""
    work = Path(work_dir).resolve()
    args = [
        shutil.which("bwrap") or "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        *_system_binds(),
        "--ro-bind", "/sys", "/sys",  # GPU libraries read the PCI topology here
        "--dev", "/dev",  # a minimal /dev (null, zero, urandom, tty, pts) ...
        "--tmpfs", "/dev/shm",  # (shared memory: data loader workers, NCCL)
        "--proc", "/proc",
        "--tmpfs", "/tmp",
    ]  # fmt: skip
    for pattern in GPU_DEVICES:  # ... plus the GPUs
        for device in sorted(glob.glob(pattern)):
            args += ["--dev-bind", device, device]
    system = [Path(p).resolve() for p in SYSTEM_DIRS if os.path.isdir(p)]
    seen: set[Path] = set()
    for path in [*interpreter_paths(), *(Path(p).resolve() for p in read_only)]:
        if path not in seen and not _covered(path, system) and path.exists():
            args += ["--ro-bind", str(path), str(path)]
            seen.add(path)
    for path in writable:
        args += ["--bind", str(path), str(path)]
    args += ["--bind", str(work), str(work), "--remount-ro", "/", "--chdir", str(work), "--"]
    return args + list(command)
