"""Scheduler dispatch benchmark: N short jobs on S slots, on the local backend and on Ray.

    python benchmarks/scheduler_dispatch.py                       # both backends, 200 jobs x 2 s, 8 slots
    python benchmarks/scheduler_dispatch.py --backend local --jobs 40
    python benchmarks/scheduler_dispatch.py --lead-s 0 10         # Ray twice: jobs ready 0 s, then 10 s after prepare

Each job is a real job runner (train: `sleep 2`; evaluation: a shell one-liner writing the
metric), so what is measured is the scheduler and the backend, not a model. Prints JSON
(and writes it with --out):

- makespan_s: first dispatch to last result recorded.
- ideal_nominal_s: jobs x job seconds / slots (jobs that take exactly their sleep).
- ideal_measured_s: the sum of the jobs' measured durations / slots: the best any
  scheduler could do with these jobs (their own start-up included).
- dispatch latency, job ready -> process started, p50/p99 (ms). Local: "ready" is the
  exit of the runner whose slot the job takes (or, for the first S jobs, the moment every
  job is queued and the scheduler is handed the queue), "started" is its runner process
  spawned. Ray: "ready" is the previous job done on
  its worker (log and outcome uploaded: its last heartbeat), "started" is the job's code
  running in its worker (its first heartbeat).
- job durations: local, runner spawned -> exited; Ray, first -> last heartbeat. Both
  include the job runner's own start-up, which on a loaded machine is most of a 2 s job.
- Like the loop, the benchmark opens the backend and calls `Scheduler.prepare` before it
  writes the jobs (--no-prepare: not), so on Ray the worker actors start while the jobs are
  written, plus --lead-s seconds (the loop writes an epoch's ideas then); a worker still
  starting when its job is ready counts in that job's latency. `prepared_ahead_s` is how
  long they had.
Targets: makespan within 5% of ideal locally; p99 dispatch < 100 ms locally
and < 1 s on Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

from groundwork.execution.local import LocalBackend
from groundwork.execution.scheduler import Scheduler
from groundwork.protocols import JobSpec
from groundwork.records import Idea, Job, Patch, PatchStatus, PromptKind
from groundwork.store import ArtifactStore, RunStore

EVAL = ["sh", "-c", "echo '{\"loss\": 1.0}' > result.json"]
RESOURCES = {"gpus": 0, "cpus": 1}


def _queue(store: RunStore, jobs: int) -> None:
    names = [f"j{i:03d}" for i in range(jobs)]
    store.add_epoch(
        1,
        [
            Idea(id=n, epoch=1, index=i, title=n, text="", prompt_kind=PromptKind.SIMPLE, origin="benchmark")
            for i, n in enumerate(names, start=1)
        ],
    )
    for n in names:
        patch = Patch(
            id=f"{n}.p1", idea_id=n, attempt=1, implementer="benchmark", status=PatchStatus.APPLIED,
            diff_path="", diff_sha256="",
        )  # fmt: skip
        job = Job(id=n, idea_id=n, patch_id=patch.id, backend="benchmark", resources=RESOURCES)
        store.record_implementation(n, [patch], job, None)


def _spec_factory(run_dir: Path, baseline: Path, job_s: float):
    def make(job: Job) -> JobSpec:
        return JobSpec(
            job_id=job.id,
            attempt=job.attempt,
            job_dir=str(run_dir.resolve() / job.job_dir),
            baseline_dir=str(baseline),
            diff_path="",
            codebase_hash="",
            locked_hashes={},
            train_command=["sleep", f"{job_s:g}"],
            eval_command=EVAL,
            time_budget_s=job_s + 60,
            grace_s=5,
            eval_timeout_s=30,
            env={},
            metric_name="loss",
            result_file="result.json",
            plausible_range=(0.0, 10.0),
            slot=job.slot or 0,
            threads=1,
            gpu_ids=[],
            sandbox="off",  # measured: the scheduler, not bubblewrap's start-up
        )

    return make


class TimedLocalBackend(LocalBackend):
    """The local backend, noting when each runner was spawned and when it exited."""

    def __init__(self, slots: int):
        super().__init__(slots)
        self.spawned: dict[str, float] = {}
        self.exited: list[float] = []
        self._lock = threading.Lock()

    def start(self, spec: JobSpec) -> str:
        worker = super().start(spec)
        self.spawned[spec.job_id] = time.time()
        return worker

    def _wake_on_exit(self, process) -> None:
        process.wait()
        with self._lock:
            self.exited.append(time.time())
        self.wakeup.set()


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {
        "p50_ms": round(q[49] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


def _latencies(t0: float, ready_events: list[float], starts: list[float], slots: int) -> list[float]:
    """The first `slots` jobs were ready at t0; each later one when a running job freed its slot."""
    starts = sorted(starts)
    ready = [t0] * min(slots, len(starts)) + sorted(ready_events)
    return [max(0.0, s - r) for s, r in zip(starts, ready, strict=False)]


def run(backend_name: str, jobs: int, slots: int, job_s: float, prepare: bool, lead_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        tmp = Path(tmp)
        baseline = tmp / "baseline"
        baseline.mkdir()
        (baseline / "README").write_text("benchmark codebase\n")
        store = RunStore.create(tmp / "run", f"bench-{os.getpid()}-{int(time.time())}", {}, {})
        if backend_name == "local":
            backend = TimedLocalBackend(slots)
        else:
            from groundwork.execution.ray_backend import RayBackend

            backend = RayBackend(
                slots,
                ArtifactStore(store.run_dir),
                store.run_info().id,
                address=os.environ.get("GROUNDWORK_BENCH_RAY_ADDRESS"),
                heartbeat_s=3600,  # two beats per job: its start and its end
                init_options={"num_cpus": slots, "include_dashboard": False},
            )
        scheduler = Scheduler(store, backend, _spec_factory(store.run_dir, baseline, job_s))
        # As the loop does: the backend is opened and told that jobs are coming, then the
        # jobs are written (and, with --lead-s, the time an epoch's ideas take to write).
        t_prepared = time.time()
        prepared = scheduler.prepare(RESOURCES) if prepare else 0
        try:
            _queue(store, jobs)
            time.sleep(lead_s)
            t0 = time.time()  # every job is ready: the scheduler is handed the queue
            scheduler.drain()
        finally:
            backend.shutdown()
        makespan = time.time() - t0
        results = store.results()
        durations, ends, starts = [], [], []
        for job in store.jobs():
            outcome = json.loads((store.run_dir / job.job_dir / "outcome.json").read_text())
            durations.append(outcome["ended_at"] - outcome["started_at"])
            ends.append(outcome["ended_at"])
            if backend_name == "ray":  # the worker's first and last heartbeat: job code started, slot free
                beat = json.loads((store.run_dir / job.job_dir / "heartbeat.json").read_text())
                starts.append(beat["started"])
                ends[-1] = beat["finished"]
                durations[-1] = beat["finished"] - beat["started"]
        if backend_name == "local":
            latencies = _latencies(t0, backend.exited, list(backend.spawned.values()), slots)
            # a runner's own span (outcome) misses its interpreter start-up: use spawn -> exit
            durations = [e - s for s, e in zip(sorted(backend.spawned.values()), sorted(backend.exited), strict=False)]
        else:
            latencies = _latencies(t0, ends, starts, slots)
        ideal_measured = sum(durations) / slots
        ideal_nominal = jobs * job_s / slots
        return {
            "backend": backend_name,
            "jobs": jobs,
            "slots": slots,
            "job_seconds": job_s,
            "prepared_slots": prepared,  # started ahead by `Scheduler.prepare` (Ray: worker actors)
            "prepared_ahead_s": round(t0 - t_prepared, 2) if prepare else None,  # prepare -> jobs ready
            "lead_s": lead_s,
            "completed_valid": sum(1 for r in results.values() if r.valid),
            "makespan_s": round(makespan, 2),
            "ideal_nominal_s": round(ideal_nominal, 2),
            "ideal_measured_s": round(ideal_measured, 2),
            "makespan_over_ideal_measured": round(makespan / ideal_measured, 4),
            "makespan_over_ideal_nominal": round(makespan / ideal_nominal, 4),
            "mean_job_duration_s": round(statistics.fmean(durations), 3),
            "dispatch_latency": _percentiles(latencies),
            # the first `slots` jobs start together (cold: on Ray, new worker processes);
            # the rest each refill a slot another job freed (steady state)
            "dispatch_latency_first_batch": _percentiles(latencies[:slots]),
            "dispatch_latency_steady": _percentiles(latencies[slots:]),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["local", "ray", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument(
        "--no-prepare", action="store_true", help="do not start the backend's workers before the jobs are ready"
    )
    parser.add_argument(
        "--lead-s",
        type=float,
        nargs="+",
        default=[0.0],
        help="Ray: seconds between the backend being prepared and the jobs being ready (the loop writes "
        "ideas then); one Ray run per value",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    backends = ["local", "ray"] if args.backend == "both" else [args.backend]
    report = {
        "benchmark": "scheduler_dispatch",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "load_average_at_start": list(os.getloadavg()),
        "runs": [
            run(name, args.jobs, args.slots, args.job_seconds, not args.no_prepare, lead_s)
            for name in backends
            for lead_s in (args.lead_s if name == "ray" else [0.0])
        ],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
