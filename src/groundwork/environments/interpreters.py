"""An environment's own Python: an isolated interpreter with the requirements its manifest
names, built once and cached, keyed by a hash of the requirements and the base interpreter.

`uv` builds it when it is on PATH (or installed as the `uv` package); otherwise the base
interpreter's `venv` and `pip` do. The lock (every installed distribution's exact version)
is written beside the interpreter, and a run copies it into its folder.

With `inherit_packages` the interpreter also sees the packages of the interpreter running
Groundwork (its own site-packages, a virtual environment's included, which
`system_site_packages` does not reach): a `.pth` file names them, so a requirement they
already satisfy (torch) is not installed again and only what is missing is. pip sees them
as installed because it reads `sys.path`; uv does not, so pip installs in that case.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path

from groundwork.files import exclusive_lock

LOCK_NAME = "requirements.lock"  # `pip freeze` of the built interpreter
COMPLETE = ".groundwork-complete"
INHERIT_PTH = "groundwork-inherited.pth"  # in the built interpreter's site-packages
SITE_FOLDERS = (
    "import json, sysconfig; print(json.dumps(sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})))"
)


class InterpreterError(RuntimeError):
    """The environment's interpreter could not be built."""


@dataclass(frozen=True)
class InterpreterRequest:
    """Plain data, so a job's spec can carry it to a worker that builds its own."""

    environment: str
    requirements: list[str]  # requirement lines (a requirements file's are read in)
    find_links: list[str] = field(default_factory=list)  # absolute folders of local distributions
    no_index: bool = False
    system_site_packages: bool = False
    inherit_packages: bool = False  # also see the base interpreter's own site-packages
    base_python: str = ""  # "": the interpreter running Groundwork

    @classmethod
    def from_dict(cls, data: dict) -> InterpreterRequest:
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def base(self) -> str:
        return self.base_python or sys.executable

    def key(self) -> str:
        """Same requirements, options and base interpreter: same interpreter."""
        base = os.path.realpath(self.base)
        version = (
            sys.version
            if base == os.path.realpath(sys.executable)
            else subprocess.run(
                [base, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=False
            ).stdout.strip()
        )
        payload = {**self.to_dict(), "environment": "", "base_python": base, "version": version}
        payload["machine"] = platform.machine()
        if self.inherit_packages:  # a venv's python resolves to its base: the folders tell venvs apart
            payload["inherited"] = site_folders(self.base)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Interpreter:
    python: str  # the interpreter's executable
    lock: str  # the lock text: name==version per line
    tool: str  # "uv" or "pip"


def read_requirements_file(path: Path) -> list[str]:
    """A requirements file's requirement lines (comments and blank lines dropped)."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #")[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def site_folders(python: str) -> list[str]:
    """The site-packages folders (sysconfig purelib and platlib) of `python`."""
    if python == sys.executable:
        return sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    done = subprocess.run([python, "-c", SITE_FOLDERS], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InterpreterError(f"could not ask {python} for its site-packages: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def _inherit(request: InterpreterRequest, python: Path) -> None:
    """Name the base interpreter's site-packages in a .pth file of the new one: they come
    after its own on sys.path, so what it installs itself takes precedence."""
    own = site_folders(str(python))
    inherited = [folder for folder in site_folders(request.base) if folder not in own and os.path.isdir(folder)]
    Path(own[0], INHERIT_PTH).write_text("".join(f"{folder}\n" for folder in inherited))


def _has_pip(python: str) -> bool:
    done = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    return done.returncode == 0


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv  # type: ignore[import-not-found]

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


def _install_args(request: InterpreterRequest) -> list[str]:
    args = ["--no-index"] if request.no_index else []
    for folder in request.find_links:
        args += ["--find-links", folder]
    return [*args, *request.requirements]


def _run(command: list[str], log: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    return done


def _build(request: InterpreterRequest, target: Path, log: Path) -> Interpreter:
    python = target / "bin" / "python"
    uv = _uv()
    if uv and request.inherit_packages and _has_pip(request.base):
        uv = None  # uv would not see the inherited packages as installed, and install them again
    if uv:
        create = [uv, "venv", "--quiet", "--python", request.base, str(target)]
        if request.system_site_packages:
            create.insert(2, "--system-site-packages")
        install = [uv, "pip", "install", "--python", str(python), *_install_args(request)]
        freeze = [uv, "pip", "freeze", "--python", str(python)]
    else:
        # No pip inside (fast to create): the base interpreter's pip installs into it.
        create = [request.base, "-m", "venv", "--without-pip", str(target)]
        if request.system_site_packages:
            create.insert(3, "--system-site-packages")
        pip = [request.base, "-m", "pip", "--disable-pip-version-check", "--no-input", "--python", str(python)]
        install = [*pip, "install", *_install_args(request)]
        freeze = [*pip, "freeze", "--all"]
    tool = "uv" if uv else "pip"
    done = _run(create, log)
    if done.returncode != 0:
        raise InterpreterError(
            f"could not create the interpreter of environment {request.environment!r} with {tool} "
            f"({' '.join(create)}):\n{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    if request.inherit_packages:
        _inherit(request, python)
    if request.requirements:
        done = _run(install, log)
        if done.returncode != 0:
            output = (done.stderr + done.stdout).strip().splitlines()
            errors = [line for line in output if "error" in line.lower() or "not found" in line.lower()]
            raise InterpreterError(
                f"the requirements of environment {request.environment!r} cannot be installed "
                f"({', '.join(request.requirements)}) with {tool}:\n"
                + "\n".join((errors or output)[-12:])
                + "\nfix the requirement (its name or version), or the find_links / no_index of [dependencies]"
            )
    done = _run(freeze, log)
    if done.returncode != 0:
        raise InterpreterError(f"could not list what {python} holds: {done.stderr.strip()}")
    return Interpreter(python=str(python), lock=done.stdout, tool=tool)


RUN_LOCK = "interpreter.lock"  # in a run folder: what its jobs' `{python}` held


def record_in_run(run_dir: Path, built: Interpreter) -> Path:
    """Copy the interpreter's lock into the run folder (a resumed run overwrites it with the same)."""
    path = Path(run_dir) / RUN_LOCK
    path.write_text(f"# {built.tool}: {built.python}\n{built.lock}")
    return path


def ensure(request: InterpreterRequest, cache: Path) -> Interpreter:
    """The interpreter for `request` under `cache`: the cached one when it is complete, else
    built now (one build per key on a machine: others wait on a file lock)."""
    target = cache / f"{request.environment}-{request.key()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.with_name(f".{target.name}.lock")):
        marker = target / COMPLETE
        if marker.is_file():
            return Interpreter(**json.loads(marker.read_text()))
        shutil.rmtree(target, ignore_errors=True)  # a build that was interrupted
        log = target.with_name(f"{target.name}.build.log")
        log.unlink(missing_ok=True)
        try:
            built = _build(request, target, log)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / LOCK_NAME).write_text(built.lock)
        marker.write_text(json.dumps(asdict(built)))
        return built
