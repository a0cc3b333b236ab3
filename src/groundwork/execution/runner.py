"""The job runner: runs one job end to end in its own folder and reports an outcome.

    python -m groundwork.execution.runner JOB_DIR/spec.json

It holds a lock on JOB_DIR/runner.lock while it works (a controller that restarts can
tell a live job from a dead one) and writes JOB_DIR/outcome.json atomically at the end.
Steps: fresh copy of the pristine baseline, apply the diff, restore the locked files and
check their hashes, train under the time budget (killed with its children at budget +
grace), check the locked files again, run the locked evaluation, read and check the
metric. Every failure ends in a category, never in a silent loss.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import socket
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from groundwork.execution import sandbox
from groundwork.execution.processes import PhaseEnd, run_with_deadline
from groundwork.files import write_atomic
from groundwork.implementation.codebase import codebase_hash, copy_codebase, file_sha256
from groundwork.implementation.patching import PatchError, PatchPolicy, apply_patch
from groundwork.protocols import JobSpec
from groundwork.records import FailureCategory, JobOutcome

SPEC_FILE = "spec.json"
OUTCOME_FILE = "outcome.json"
LOCK_FILE = "runner.lock"
LOG_FILE = "job.log"
PHASE_PID_FILE = "phase.pid"
MAX_CURVE_POINTS = 2000


def save_spec(spec: JobSpec) -> Path:
    path = Path(spec.job_dir) / SPEC_FILE
    # No disk sync: the runner reads it at once, and a spec lost to a power cut only loses the attempt.
    write_atomic(path, json.dumps(asdict(spec), indent=2), sync=False)
    return path


def load_spec(path: Path) -> JobSpec:
    data = json.loads(path.read_text())
    data["plausible_range"] = tuple(data["plausible_range"])
    return JobSpec(**data)


def read_outcome(job_dir: Path) -> JobOutcome | None:
    path = job_dir / OUTCOME_FILE
    if not path.is_file():
        return None
    return JobOutcome.model_validate_json(path.read_text())


def runner_alive(job_dir: Path) -> bool:
    """True while some runner holds the job's lock."""
    lock_path = job_dir / LOCK_FILE
    if not lock_path.exists():
        return False
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


class _Failed(Exception):
    def __init__(self, category: FailureCategory, detail: str, exit_code: int | None = None):
        super().__init__(detail)
        self.category, self.detail, self.exit_code = category, detail, exit_code


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _training_view(env: dict[str, str]) -> dict[str, str]:
    """Training reads its data from the training view (only the training split) when the
    environment provides one; the evaluation keeps the whole prepared folder."""
    view = env.get("GROUNDWORK_TRAIN_DATA_DIR")
    return {**env, "GROUNDWORK_DATA_DIR": view} if view else env


def _expand(command: list[str]) -> list[str]:
    return [arg.replace("{python}", sys.executable) for arg in command]


class JobRunner:
    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.job_dir = Path(spec.job_dir)
        self.work = self.job_dir / "work"
        self.log_path = self.job_dir / LOG_FILE
        self.flags: dict[str, object] = {}
        self.sandboxed = False
        self.sandbox_warning = ""

    def run(self) -> JobOutcome:
        started = time.time()
        metric, metrics, curve = None, {}, []
        failure, detail, exit_code = None, "", None
        try:
            self._choose_sandbox()
            metric, metrics, exit_code = self._run_phases()
        except _Failed as failed:
            failure, detail, exit_code = failed.category, failed.detail, failed.exit_code
        except Exception:  # a harness error is still an outcome, never a lost job
            failure, detail = FailureCategory.CRASHED, "runner error:\n" + traceback.format_exc(limit=5)
        curve = self._curve()
        return JobOutcome(
            job_id=self.spec.job_id,
            attempt=self.spec.attempt,
            failure=failure,
            metric=metric,
            metrics=metrics,
            curve=curve,
            detail=detail,
            flags=self.flags,
            exit_code=exit_code,
            started_at=started,
            ended_at=time.time(),
        )

    # ---- phases -------------------------------------------------------------------

    def _run_phases(self) -> tuple[float, dict, int]:
        spec = self.spec
        self._materialise()
        env = self._environment()
        result_path = self.work / spec.result_file
        with open(self.log_path, "ab") as log:
            if self.sandbox_warning:
                self._header(log, f"WARNING: {self.sandbox_warning}")
            self._header(log, f"train (budget {spec.time_budget_s:g}s + grace {spec.grace_s:g}s)")
            train_env = _training_view(env)
            end = self._phase(spec.train_command, train_env, log, spec.time_budget_s + spec.grace_s)
            code, timed_out = end.exit_code, end.timed_out
            self.flags["train_seconds"] = round(end.seconds, 3)
            self.flags["within_budget"] = not timed_out
            self._check_limits(end, "training")
            if timed_out and spec.budget == "compute":
                raise _Failed(
                    FailureCategory.TIMED_OUT,
                    f"training had not finished its compute budget at the kill limit of a compute-budgeted job "
                    f"({spec.time_budget_s:g}s, start-up included) and was killed: the machine was far slower than "
                    f"usual, or the change costs far more per unit of compute",
                )
            if timed_out:
                raise _Failed(
                    FailureCategory.TIMED_OUT,
                    f"training ran past budget + grace ({spec.time_budget_s:g}s + {spec.grace_s:g}s) and was killed",
                )
            self._check_locked("during training")
            if code != 0:
                raise _Failed(
                    FailureCategory.CRASHED, f"training exited with code {code}:\n{_tail(self.log_path)}", code
                )
            if result_path.exists():  # only the locked evaluation may write the result
                self.flags["training_wrote_result_file"] = True
                result_path.unlink()
            self._header(log, "evaluate (locked)")
            end = self._phase(spec.eval_command, env, log, spec.eval_timeout_s)
            code, timed_out = end.exit_code, end.timed_out
            self._check_locked("during evaluation")
            self._check_limits(end, "evaluation")
            if timed_out:
                raise _Failed(FailureCategory.TIMED_OUT, f"evaluation ran past {spec.eval_timeout_s:g}s and was killed")
            if code != 0:
                raise _Failed(
                    FailureCategory.CRASHED, f"evaluation exited with code {code}:\n{_tail(self.log_path)}", code
                )
        metric, metrics = self._read_metric(result_path)
        return metric, metrics, 0

    def _materialise(self) -> None:
        spec = self.spec
        if self.work.exists():
            shutil.rmtree(self.work)
        copy_codebase(Path(spec.baseline_dir), self.work)
        if spec.diff_path:
            diff = Path(spec.diff_path).read_text(encoding="utf-8")
            try:
                apply_patch(diff, self.work, PatchPolicy(protected=frozenset(spec.locked_hashes)))
            except PatchError as exc:
                raise _Failed(FailureCategory.PATCH_FAILED, f"patch did not apply in the worker: {exc}") from None
        # Locked files always come from the pristine baseline, whatever the patch did.
        for rel in spec.locked_hashes:
            target = self.work / rel
            target.unlink(missing_ok=True)
            shutil.copy2(Path(spec.baseline_dir) / rel, target)
        self._check_locked("in the baseline snapshot")
        if spec.codebase_hash and codebase_hash(self.work) != spec.codebase_hash:
            raise _Failed(
                FailureCategory.PATCH_FAILED, "the patched codebase differs from the one the implementer checked"
            )

    def _choose_sandbox(self) -> None:
        mode = self.spec.sandbox
        if mode not in sandbox.MODES:
            raise _Failed(
                FailureCategory.CRASHED, f"unknown sandbox mode {mode!r}; use one of {', '.join(sandbox.MODES)}"
            )
        self.sandboxed = False
        self.sandbox_warning = ""
        if mode == "off":
            self.flags["sandbox"] = "off"
            return
        status = sandbox.probe()
        if status.available:
            self.sandboxed = True
            self.flags["sandbox"] = "bwrap"
            return
        if mode == "required":
            raise _Failed(FailureCategory.CRASHED, f"the sandbox is required but unavailable: {status.detail}")
        self.flags["sandbox"] = f"none: {status.detail}"
        self.sandbox_warning = (
            f"model-written code runs WITHOUT a sandbox (network and file system open): {status.detail}"
        )
        print(f"groundwork: {self.sandbox_warning}", file=sys.stderr)

    def _check_limits(self, end: PhaseEnd, phase: str) -> None:
        if end.log_truncated:
            self.flags["log_truncated"] = True
        if end.memory_exceeded:
            self.flags["peak_rss_mb"] = end.peak_rss_mb
            raise _Failed(
                FailureCategory.CRASHED,
                f"{phase} used more than the memory limit of {self.spec.memory_limit_mb:g} MB "
                f"({end.peak_rss_mb:g} MB resident) and was killed",
            )

    def _check_locked(self, when: str) -> None:
        changed = [
            rel
            for rel, expected in self.spec.locked_hashes.items()
            if not (self.work / rel).is_file()
            or (self.work / rel).is_symlink()
            or file_sha256(self.work / rel) != expected
        ]
        self.flags["eval_hash_ok"] = not changed
        if changed:
            raise _Failed(FailureCategory.EVAL_TAMPERED, f"locked files changed {when}: {', '.join(sorted(changed))}")

    def _environment(self) -> dict[str, str]:
        spec = self.spec
        env = dict(os.environ)
        env.update(spec.env)
        threads = str(spec.threads)
        env.update(
            {
                "GROUNDWORK_TIME_BUDGET_S": f"{spec.time_budget_s:g}",
                "GROUNDWORK_NUM_THREADS": threads,
                "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads,
                "GROUNDWORK_OUT_DIR": str(self.work / "out"),
                "GROUNDWORK_RESULT_PATH": str(self.work / spec.result_file),
                "GROUNDWORK_JOB_ID": spec.job_id,
                "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in spec.gpu_ids),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        if self.sandboxed:
            private = sandbox.private_dirs_env(self.work)
            for folder in private.values():
                Path(folder).mkdir(parents=True, exist_ok=True)
            env.update(private)
        return env

    def _phase(self, command: list[str], env: dict[str, str], log, timeout_s: float) -> PhaseEnd:
        command = _expand(command)
        if self.sandboxed:
            command = sandbox.wrap(command, self.work, sandbox.extra_writable())
        return run_with_deadline(
            command,
            self.work,
            env,
            log,
            timeout_s,
            self.job_dir / PHASE_PID_FILE,
            memory_limit_mb=self.spec.memory_limit_mb,
            log_limit_mb=self.spec.log_limit_mb,
        )

    def _header(self, log, title: str) -> None:
        log.write(f"\n===== groundwork: {title} | {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        log.flush()

    def _read_metric(self, path: Path) -> tuple[float, dict]:
        spec = self.spec
        if not path.is_file():
            raise _Failed(FailureCategory.NO_METRIC, f"the evaluation wrote no {spec.result_file}")
        try:
            metrics = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Failed(FailureCategory.NO_METRIC, f"{spec.result_file} is not valid JSON: {exc}") from None
        value = metrics.get(spec.metric_name) if isinstance(metrics, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Failed(
                FailureCategory.NO_METRIC, f"{spec.result_file} has no finite number {spec.metric_name!r}: {value!r}"
            )
        low, high = spec.plausible_range
        self.flags["in_plausible_range"] = low <= value <= high
        if not low <= value <= high:
            raise _Failed(
                FailureCategory.METRIC_IMPLAUSIBLE,
                f"{spec.metric_name} = {value:g} is outside the plausible range [{low:g}, {high:g}]",
            )
        return float(value), metrics

    def _curve(self) -> list[dict]:
        path = self.work / "out" / "train_log.jsonl"
        if not path.is_file():
            return []
        points = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                point = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(point, dict):
                points.append(point)
        step = max(1, math.ceil(len(points) / MAX_CURVE_POINTS))
        return points[::step]


def take_lock(job_dir: Path):
    """The job's runner lock, held from now on; None when another process holds it."""
    lock = open(job_dir / LOCK_FILE, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--lock-fd"):
        print("usage: python -m groundwork.execution.runner JOB_DIR/spec.json [--lock-fd N]", file=sys.stderr)
        return 2
    spec = load_spec(Path(argv[0]))
    job_dir = Path(spec.job_dir)
    # A backend that starts this process may take the lock first and hand it over (an
    # inherited descriptor shares the lock), so the job counts as alive from its first instant.
    lock = open(int(argv[2]), "a") if len(argv) == 3 else take_lock(job_dir)  # noqa: SIM115 (held until exit)
    if lock is None:
        print(f"another runner is working on {job_dir}", file=sys.stderr)
        return 3
    if read_outcome(job_dir) is not None:  # this attempt already ended: never run it twice
        return 0
    outcome = JobRunner(spec).run()
    outcome.flags["worker"] = f"pid {os.getpid()} on {socket.gethostname()}"
    write_atomic(job_dir / OUTCOME_FILE, outcome.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
