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
from dataclasses import asdict, replace
from pathlib import Path

from groundwork.environments import placeholders
from groundwork.execution import resources, result_channel, sandbox
from groundwork.execution.early_abort import AbortRule, compute_share, read_curve
from groundwork.execution.metric_checks import CheckFailed, check_relations
from groundwork.execution.processes import PhaseEnd, become_subreaper, is_subreaper, run_with_deadline
from groundwork.files import write_atomic
from groundwork.patch.codebase import codebase_hash, copy_codebase, file_sha256
from groundwork.patch.patching import PatchError, PatchPolicy, apply_patch
from groundwork.protocols import JobSpec
from groundwork.records import FailureCategory, JobOutcome
from groundwork.redaction import redact

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
    return redact("\n".join(text.rstrip().splitlines()[-lines:]))  # it becomes the result's detail


def _training_view(env: dict[str, str]) -> dict[str, str]:
    """Training reads its data from the training view (only the training split) when the
    environment provides one; the evaluation keeps the whole prepared folder."""
    view = env.get("GROUNDWORK_TRAIN_DATA_DIR")
    return {**env, "GROUNDWORK_DATA_DIR": view} if view else env


def _evaluation_view(env: dict[str, str], result_fd: int, work: Path) -> dict[str, str]:
    """The evaluation's environment: the result channel announced, and no way for files that
    training wrote to run at the evaluation's start-up: a sitecustomize.py in a PYTHONPATH
    entry inside the work folder (a relative or empty entry resolves there, in the
    evaluation's working folder: relative ones are taken from the runner's folder instead),
    or a *.pth in the user's site folder."""
    inside = Path(work).resolve()
    entries = [
        path
        for path in (os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)
        if not Path(path).resolve().is_relative_to(inside)
    ]
    view = {**env, result_channel.FD_ENV: str(result_fd), "PYTHONNOUSERSITE": "1"}
    if entries:
        view["PYTHONPATH"] = os.pathsep.join(entries)
    else:
        view.pop("PYTHONPATH", None)
    return view


def first_non_finite_loss(curve: list[dict]) -> str:
    """Where a training curve's loss first stops being a finite number ('' if it never does):
    any number logged under a name holding "loss"."""
    for point in curve:
        for key, value in point.items():
            if "loss" in key and isinstance(value, (int, float)) and not math.isfinite(value):
                where = f"step {point['step']}" if "step" in point else f"point {curve.index(point) + 1}"
                return f"{key} {value} at {where} of train_log.jsonl"
    return ""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _through_real_folders(python: str) -> str:
    """The interpreter reached through its folder's real path, its own name kept: the sandbox
    binds real paths only, so a venv reached through a symlinked folder would not be found
    there; the file itself may stay a link (a venv's python must be started by its venv path)."""
    return os.path.join(os.path.realpath(os.path.dirname(python)), os.path.basename(python))


def _expand(command: list[str], spec: JobSpec, work: Path, env: dict[str, str]) -> list[str]:
    """A phase's command with its placeholders filled from what this phase gets (`{data_dir}`
    is the data folder of the phase's environment: training's view for training)."""
    values = {
        "python": _through_real_folders(spec.python or sys.executable),
        "seed": env.get("GROUNDWORK_SEED", ""),
        "budget_s": f"{spec.time_budget_s:g}",
        "work_dir": str(work),
        "output_dir": str(work / "out"),
    }
    if env.get("GROUNDWORK_DATA_DIR"):
        values["data_dir"] = env["GROUNDWORK_DATA_DIR"]
    return placeholders.fill(command, values)


class _AbortWatch:
    """Asked by the training phase every half second: has its curve trailed the baseline's?"""

    def __init__(self, rule: AbortRule | None, curve_path: Path):
        self.rule, self.curve_path = rule, curve_path
        self.reason, self.share = "", 0.0

    def check(self) -> bool:
        if self.rule is None:
            return False
        curve = read_curve(self.curve_path)
        reason = self.rule.verdict(curve)
        if reason:
            self.reason, self.share = reason, round(compute_share(self.rule, curve), 4)
        return bool(reason)


class JobRunner:
    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.job_dir = Path(spec.job_dir)
        self.work = self.job_dir / "work"
        self.log_path = self.job_dir / LOG_FILE
        self.flags: dict[str, object] = {}
        self.sandboxed = False
        self.sandbox_warning = ""
        self.memory_limit_mb = memory_cap_mb(spec.memory_limit_mb)
        self.flags["memory_limit_mb"] = self.memory_limit_mb
        self.hidden_present = True  # False while training runs without the hidden files

    def run(self) -> JobOutcome:
        started = time.time()
        metric, metrics, curve = None, {}, []
        failure, detail, exit_code = None, "", None
        try:
            self._choose_sandbox()
            # Held-out data (hidden files, data outside training_files) is never in the work
            # folder; only the sandbox also keeps training from reading the copies elsewhere.
            held_out = bool(self.spec.hidden_files or self.spec.training_files is not None)
            self.flags["held_out_protected"] = self.sandboxed or not held_out
            if self.spec.preflight:
                self._preflight()
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

    def _preflight(self) -> None:
        """The patched codebase at the short pre-flight profile, in its own folder, under this
        job's sandbox and limits: a crash, a diverged loss or a missing metric ends the job
        here, seconds in, before the full training. Its log joins the job's log (repair reads it)."""
        p = self.spec.preflight or {}
        folder = self.job_dir / "preflight"
        if folder.exists():  # a re-run attempt starts afresh
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        # A pre-flight profile that asks for no GPU sees none, even inside a GPU job: it runs on
        # CPU (its profile's env names the device) and cannot touch the job's GPU memory.
        gpus = p.get("gpus", self.spec.gpus)
        gpu_ids = list(self.spec.gpu_ids[:gpus]) if gpus else []
        sub = replace(
            self.spec,
            job_dir=str(folder),
            **{key: p[key] for key in ("train_command", "eval_command", "env", "time_budget_s", "grace_s")},
            **{key: p[key] for key in ("eval_timeout_s", "budget", "threads", "training_files")},
            abort_rule=None,
            preflight=None,
            gpus=gpus,
            gpu_ids=gpu_ids,
        )
        outcome = JobRunner(sub).run()
        seconds = round(outcome.ended_at - outcome.started_at, 3)
        sub_log = folder / LOG_FILE
        with open(self.log_path, "ab") as log:
            self._header(log, f"pre-flight (profile {p['profile']})")
            if sub_log.is_file():
                log.write(sub_log.read_bytes())
            self._header(log, f"pre-flight {'failed: ' + outcome.failure.value if outcome.failure else 'passed'}")
        shutil.rmtree(folder / "work", ignore_errors=True)  # its log is kept; the copy is not needed
        self.flags["preflight"] = {
            "passed": outcome.failure is None,
            "seconds": seconds,
            "profile": p["profile"],
            "gpus": len(gpu_ids),
        }
        if outcome.failure is not None:
            self.flags["stage"] = "preflight"
            raise _Failed(
                outcome.failure,
                f"pre-flight (profile {p['profile']}) failed, so the full training never ran: {outcome.detail}",
                outcome.exit_code,
            )

    def _run_phases(self) -> tuple[float, dict, int]:
        spec = self.spec
        setup_started = time.monotonic()
        self._materialise()
        env = self._environment()
        self.flags["setup_seconds"] = round(time.monotonic() - setup_started, 3)  # copy, patch, locked-file checks
        result_path = self.work / spec.result_file
        with open(self.log_path, "ab") as log:
            if self.sandbox_warning:
                self._header(log, f"WARNING: {self.sandbox_warning}")
            self._header(log, f"train (budget {spec.time_budget_s:g}s + grace {spec.grace_s:g}s)")
            train_env = _training_view(env)
            abort = self._abort_watch()
            end = self._phase(
                spec.train_command, train_env, log, spec.time_budget_s + spec.grace_s, stop_when=abort.check
            )
            if end.stopped:
                self._header(log, f"aborted: {abort.reason}")
                self.flags["aborted_at"] = abort.share
                raise _Failed(FailureCategory.ABORTED_TRAILING, f"stopped early: {abort.reason}")
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
            diverged = first_non_finite_loss(read_curve(self.work / "out" / "train_log.jsonl"))
            if diverged:  # before the crash: a loss gone NaN is the cause, whatever broke next
                raise _Failed(FailureCategory.DIVERGED, f"training diverged: {diverged}", code)
            if code != 0:
                raise _Failed(
                    FailureCategory.CRASHED, f"training exited with code {code}:\n{_tail(self.log_path)}", code
                )
            if result_path.exists():  # only the locked evaluation may write the result
                self.flags["training_wrote_result_file"] = True
                result_path.unlink()
            self._restore_hidden()
            self._header(log, "evaluate (locked)")
            pipe = result_channel.ResultPipe()
            try:
                eval_env = _evaluation_view(env, pipe.write_fd, self.work)
                end = self._phase(spec.eval_command, eval_env, log, spec.eval_timeout_s, pass_fds=(pipe.write_fd,))
            except BaseException:
                pipe.close()
                raise
            sent = self._read_channel(pipe.finish())
            code, timed_out = end.exit_code, end.timed_out
            self.flags["eval_seconds"] = round(end.seconds, 3)
            self._check_locked("during evaluation")
            self._check_limits(end, "evaluation")
            if timed_out:
                raise _Failed(FailureCategory.TIMED_OUT, f"evaluation ran past {spec.eval_timeout_s:g}s and was killed")
            if sent.opened and code == result_channel.TAMPERED_EXIT:
                self.flags["result_channel"] = "tampered"
                raise _Failed(
                    FailureCategory.EVAL_TAMPERED,
                    f"the evaluation found its result channel closed or replaced:\n{_tail(self.log_path, 3)}",
                    code,
                )
            if code == result_channel.DIVERGED_EXIT:
                raise _Failed(
                    FailureCategory.DIVERGED,
                    f"the evaluation found the model diverged:\n{_tail(self.log_path, 3)}",
                    code,
                )
            if code != 0:
                raise _Failed(
                    FailureCategory.CRASHED, f"evaluation exited with code {code}:\n{_tail(self.log_path)}", code
                )
            if sent.opened and sent.result is None:
                self.flags["result_channel"] = "tampered"
                raise _Failed(
                    FailureCategory.EVAL_TAMPERED,
                    "the evaluation opened the result channel and exited cleanly without sending its result: "
                    "something in its process closed or replaced the channel",
                )
        metric, metrics = self._read_metric(result_path, sent.result)
        return metric, metrics, 0

    def _read_channel(self, received: result_channel.Received) -> result_channel.Sent:
        """What the evaluation sent on its pipe; anything but its own messages is tampering."""
        try:
            sent = result_channel.parse(received)
        except result_channel.ChannelTampered as exc:
            self.flags["result_channel"] = "tampered"
            raise _Failed(FailureCategory.EVAL_TAMPERED, str(exc)) from None
        self.flags["result_channel"] = "pipe" if sent.opened else "file"
        return sent

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
        # Checked whole above; training never sees the hidden files (the evaluation among
        # them): they come back from the pristine baseline just before the evaluation.
        for rel in spec.hidden_files:
            _remove(self.work / rel)
        self.hidden_present = not spec.hidden_files

    def _restore_hidden(self) -> None:
        spec = self.spec
        written = [rel for rel in spec.hidden_files if os.path.lexists(self.work / rel)]
        if written:
            raise _Failed(
                FailureCategory.EVAL_TAMPERED,
                f"training wrote {', '.join(sorted(written))}, where the hidden files go",
            )
        for rel in spec.hidden_files:
            target = self.work / rel
            if not target.resolve().is_relative_to(self.work.resolve()):
                raise _Failed(
                    FailureCategory.EVAL_TAMPERED, f"the path of the hidden file {rel} leads out of the work folder"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(spec.baseline_dir) / rel, target)
        self.hidden_present = True
        self._check_locked("before the evaluation")

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
            "model-written code runs WITHOUT a sandbox: it can reach the network and read and write "
            "whatever this user can (the run folder and its store, the home folder, the evaluation's "
            f"data); only its environment variables, limits and process tree are controlled: {status.detail}"
        )
        print(f"groundwork: {self.sandbox_warning}", file=sys.stderr)

    def _check_limits(self, end: PhaseEnd, phase: str) -> None:
        if end.log_truncated:
            self.flags["log_truncated"] = True
        if end.memory_exceeded:
            self.flags["peak_rss_mb"] = end.peak_rss_mb
            raise _Failed(
                FailureCategory.CRASHED,
                f"{phase} used more than the memory limit of {self.memory_limit_mb:g} MB "
                f"({end.peak_rss_mb:g} MB resident) and was killed",
            )

    def _check_locked(self, when: str) -> None:
        absent = set() if self.hidden_present else set(self.spec.hidden_files)
        changed = [
            rel
            for rel, expected in self.spec.locked_hashes.items()
            if rel not in absent
            and (
                not (self.work / rel).is_file()
                or (self.work / rel).is_symlink()
                or file_sha256(self.work / rel) != expected
            )
        ]
        self.flags["eval_hash_ok"] = not changed
        if changed:
            raise _Failed(FailureCategory.EVAL_TAMPERED, f"locked files changed {when}: {', '.join(sorted(changed))}")

    def _environment(self) -> dict[str, str]:
        """A minimal, explicit environment: the allow-list of the controller's variables,
        private home/temporary/cache folders, the manifest's `pass_env`, the profile's
        settings, and the job's own variables. No API key or token ever gets here."""
        spec = self.spec
        try:
            passed = sandbox.passed_variables(os.environ, spec.pass_env)
        except sandbox.EnvironmentRefused as exc:
            raise _Failed(FailureCategory.CRASHED, str(exc)) from None
        private = sandbox.private_dirs_env(self.work)
        for folder in [*private.values(), self.work / "out"]:  # {output_dir} exists for any script
            Path(folder).mkdir(parents=True, exist_ok=True)
        env = {**sandbox.job_environment(os.environ), **private, **passed, **spec.env}
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
        return env

    def _abort_watch(self) -> _AbortWatch:
        rule = AbortRule.from_dict(self.spec.abort_rule) if self.spec.abort_rule else None
        return _AbortWatch(rule, self.work / "out" / "train_log.jsonl")

    def _phase(
        self,
        command: list[str],
        env: dict[str, str],
        log,
        timeout_s: float,
        stop_when=None,
        pass_fds: tuple[int, ...] = (),
    ) -> PhaseEnd:
        """One phase under the job's limits. Sandboxed, it sees the file system it needs and
        no more: the interpreter, its data folder (the one in `env`), the work folder."""
        command = _expand(command, self.spec, self.work, env)
        if self.sandboxed:
            visible = [Path(env["GROUNDWORK_DATA_DIR"])] if env.get("GROUNDWORK_DATA_DIR") else []
            visible += sandbox.named_paths(env, [*self.spec.pass_env, *sandbox.PATH_VARIABLES])
            if self.spec.python:  # the environment's own interpreter: its folder (bin/python's parent's)
                visible.append(Path(self.spec.python).parent.parent)
            command = sandbox.wrap(command, self.work, read_only=visible, writable=sandbox.extra_writable())
        tree = "subreaper" if is_subreaper() else "process group and descendants only"
        self.flags["process_tree"] = f"pid namespace (bwrap) + {tree}" if self.sandboxed else tree
        return run_with_deadline(
            command,
            self.work,
            env,
            log,
            timeout_s,
            self.job_dir / PHASE_PID_FILE,
            memory_limit_mb=self.memory_limit_mb,
            log_limit_mb=self.spec.log_limit_mb,
            stop_when=stop_when,
            pass_fds=pass_fds,
        )

    def _header(self, log, title: str) -> None:
        log.write(f"\n===== groundwork: {title} | {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        log.flush()

    def _read_metric(self, path: Path, sent: dict | None = None) -> tuple[float, dict]:
        """The metric from what the evaluation sent on the result channel or, when it sent
        nothing there, from its result file; then the relations the result states."""
        spec = self.spec
        if sent is not None:
            if os.path.lexists(path):  # the evaluation sent its result: this file is someone else's
                self.flags["stray_result_file"] = True
                _remove(path)
            metrics, source = sent, "the evaluation's result"
        else:
            metrics, source = self._result_file(path), spec.result_file
        value = metrics.get(spec.metric_name) if isinstance(metrics, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Failed(FailureCategory.NO_METRIC, f"{source} has no finite number {spec.metric_name!r}: {value!r}")
        try:
            self.flags["metric_checks"] = check_relations(metrics)
        except CheckFailed as exc:
            self.flags["metric_checks"] = "failed"
            raise _Failed(FailureCategory.EVAL_TAMPERED, f"{source}: {exc}") from None
        metrics = {key: v for key, v in metrics.items() if key != "checks"}  # checked: not a measurement
        low, high = spec.plausible_range
        self.flags["in_plausible_range"] = low <= value <= high
        if not low <= value <= high:
            raise _Failed(
                FailureCategory.METRIC_IMPLAUSIBLE,
                f"{spec.metric_name} = {value:g} is outside the plausible range [{low:g}, {high:g}]",
            )
        return float(value), metrics

    def _result_file(self, path: Path) -> object:
        if not path.is_file():
            raise _Failed(FailureCategory.NO_METRIC, f"the evaluation wrote no {self.spec.result_file}")
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Failed(FailureCategory.NO_METRIC, f"{self.spec.result_file} is not valid JSON: {exc}") from None

    def _curve(self) -> list[dict]:
        points = read_curve(self.work / "out" / "train_log.jsonl")
        step = max(1, math.ceil(len(points) / MAX_CURVE_POINTS))
        return points[::step]


def memory_cap_mb(requested: float | None) -> float:
    """The cap a job runs under: the one its spec asks for (0: none), or, left open, a
    share of this machine's memory (a remote worker's own, when the profile declares none)."""
    if requested is not None:
        return float(requested)
    return float(round(resources.MEMORY_SHARE * resources.total_memory_mb()))


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
    # Orphans of the phases (a child that started its own session and double-forked) are
    # re-parented to this process, so every phase can kill and reap all it started.
    become_subreaper()
    outcome = JobRunner(spec).run()
    outcome.flags["worker"] = f"pid {os.getpid()} on {socket.gethostname()}"
    write_atomic(job_dir / OUTCOME_FILE, outcome.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is written (the outcome atomically, the phases reaped): end without the
    # interpreter's tear-down, a tenth of a second or more per job that the slot waits on.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
