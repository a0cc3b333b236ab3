"""SQLite run store (WAL mode). Every state change is committed before it is acted on,
and each stage's records are written in one transaction, so a run killed at any point
(kill -9 included) resumes with nothing lost and nothing run twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundwork.records import (
    TERMINAL_JOB_STATES,
    Idea,
    IdeaState,
    Job,
    JobOutcome,
    JobState,
    Patch,
    Result,
    RunStatus,
    now,
)

DB_NAME = "store.sqlite"
SCHEMA_VERSION = 2  # 2: model_choices

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id TEXT PRIMARY KEY, created_at REAL, status TEXT, config TEXT, info TEXT, schema_version INTEGER
);
CREATE TABLE IF NOT EXISTS epochs (epoch INTEGER PRIMARY KEY, proposed_at REAL);
CREATE TABLE IF NOT EXISTS ideas (
    id TEXT PRIMARY KEY, epoch INTEGER, idx INTEGER, state TEXT, data TEXT
);
CREATE TABLE IF NOT EXISTS patches (
    id TEXT PRIMARY KEY, idea_id TEXT REFERENCES ideas(id), attempt INTEGER, status TEXT, data TEXT,
    UNIQUE (idea_id, attempt)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, idea_id TEXT UNIQUE REFERENCES ideas(id), state TEXT, data TEXT
);
CREATE TABLE IF NOT EXISTS results (
    idea_id TEXT PRIMARY KEY REFERENCES ideas(id), job_id TEXT, failure TEXT, metric REAL, data TEXT
);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, role TEXT, call_key TEXT, fingerprint TEXT, model TEXT,
    provider TEXT, epoch INTEGER, idea_id TEXT, request TEXT, text TEXT, thinking TEXT, usage TEXT,
    cost_usd REAL, latency_s REAL, replayed INTEGER
);
CREATE INDEX IF NOT EXISTS llm_calls_fingerprint ON llm_calls (fingerprint);
CREATE TABLE IF NOT EXISTS artifacts (
    rel TEXT PRIMARY KEY, url TEXT, sha256 TEXT, size INTEGER, ts REAL
);
-- Which model of a portfolio (llm/portfolio.py) served each proposal, and every arm's
-- statistics when it was chosen. Added in schema 2; older stores gain it, empty, on open.
CREATE TABLE IF NOT EXISTS model_choices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, role TEXT, key TEXT, arm TEXT, rule TEXT,
    epoch INTEGER, idea_id TEXT, arms TEXT, UNIQUE (role, key)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, entity TEXT, entity_id TEXT,
    from_state TEXT, to_state TEXT, detail TEXT
);
"""

IDEA_TRANSITIONS = {
    IdeaState.PROPOSED: {IdeaState.IMPLEMENTED, IdeaState.PATCH_FAILED},
}

# A stopped run (any status but created) is resumed into running; a running one whose
# controller died is taken over by the next (running -> running).
RUN_TRANSITIONS = {
    RunStatus.CREATED: {RunStatus.RUNNING},
    RunStatus.RUNNING: set(RunStatus) - {RunStatus.CREATED},
    **{s: {RunStatus.RUNNING} for s in RunStatus if s not in (RunStatus.CREATED, RunStatus.RUNNING)},
}

JOB_TRANSITIONS = {
    JobState.QUEUED: {JobState.LEASED, JobState.CANCELLED},
    # A job leased by a controller that died before marking it running may already have
    # finished: it can go straight to a terminal state, or back to the queue.
    JobState.LEASED: {JobState.RUNNING, JobState.QUEUED, *TERMINAL_JOB_STATES},
    JobState.RUNNING: {JobState.QUEUED, *TERMINAL_JOB_STATES},
    JobState.FAILED: {JobState.QUEUED},  # a repair round: the corrected patch runs as a new attempt
}


class StoreError(RuntimeError):
    pass


class InvalidTransition(StoreError):
    def __init__(self, entity: str, entity_id: str, current: str, target: str):
        super().__init__(f"{entity} {entity_id}: cannot go from {current!r} to {target!r}")


@dataclass(frozen=True)
class RunInfo:
    """The run's own row: its id, when it was created, its status, config and environment info."""

    id: str
    created_at: float
    status: RunStatus
    config: dict[str, Any]
    info: dict[str, Any]


class RunStore:
    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        db = self.run_dir / DB_NAME
        if not db.is_file():
            raise StoreError(f"no run store at {db}: is {self.run_dir} a run folder?")
        self._conn = self._connect(db)
        self._conn.executescript(SCHEMA)  # tables added since the run was created

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(db, isolation_level=None, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @classmethod
    def create(cls, run_dir: Path | str, run_id: str, config: dict[str, Any], info: dict[str, Any]) -> RunStore:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / DB_NAME).exists():
            raise StoreError(f"{run_dir} already holds a run store")
        conn = cls._connect(run_dir / DB_NAME)
        conn.executescript(SCHEMA)
        conn.execute(
            "INSERT INTO run VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, now(), RunStatus.CREATED.value, json.dumps(config), json.dumps(info), SCHEMA_VERSION),
        )
        conn.close()
        return cls(run_dir)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self, sync: bool = True) -> Iterator[sqlite3.Connection]:
        """`sync=False`: committed for every reader at once, and safe from a crash of this
        process, but on disk only with the next synced commit (a power cut may lose it)."""
        if not sync:
            self._conn.execute("PRAGMA synchronous=NORMAL")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
        finally:
            if not sync:
                self._conn.execute("PRAGMA synchronous=FULL")

    def _event(
        self, c: sqlite3.Connection, entity: str, entity_id: str, frm: str | None, to: str, detail: str = ""
    ) -> None:
        c.execute(
            "INSERT INTO events (ts, entity, entity_id, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (now(), entity, entity_id, frm, to, detail),
        )

    # ---- run ----------------------------------------------------------------------

    def run_info(self) -> RunInfo:
        row = self._conn.execute("SELECT * FROM run").fetchone()
        return RunInfo(
            id=row["id"],
            created_at=row["created_at"],
            status=RunStatus(row["status"]),
            config=json.loads(row["config"]),
            info=json.loads(row["info"]),
        )

    def set_run_status(self, status: RunStatus, detail: str = "") -> None:
        status = RunStatus(status)  # a name that is no status fails here, naming it
        with self.transaction() as c:
            old = c.execute("SELECT id, status FROM run").fetchone()
            current = RunStatus(old["status"])
            if status not in RUN_TRANSITIONS[current]:
                raise InvalidTransition("run", old["id"], current.value, status.value)
            c.execute("UPDATE run SET status = ?", (status.value,))
            self._event(c, "run", old["id"], current.value, status.value, detail)

    def update_config(self, **values: Any) -> None:
        with self.transaction() as c:
            row = c.execute("SELECT id, config FROM run").fetchone()
            config = json.loads(row["config"])
            changes = ", ".join(f"{k}: {config.get(k)!r} -> {v!r}" for k, v in values.items() if config.get(k) != v)
            config.update(values)
            c.execute("UPDATE run SET config = ?", (json.dumps(config),))
            if changes:
                self._event(c, "run", row["id"], None, "config", changes)

    # ---- ideas --------------------------------------------------------------------

    def epoch_proposed(self, epoch: int) -> bool:
        return self._conn.execute("SELECT 1 FROM epochs WHERE epoch = ?", (epoch,)).fetchone() is not None

    def add_epoch(self, epoch: int, ideas: list[Idea]) -> None:
        """Store an epoch's ideas all at once: an epoch is proposed entirely or not at all."""
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM epochs WHERE epoch = ?", (epoch,)).fetchone():
                raise StoreError(f"epoch {epoch} was already proposed")
            c.execute("INSERT INTO epochs VALUES (?, ?)", (epoch, now()))
            for idea in ideas:
                c.execute(
                    "INSERT INTO ideas VALUES (?, ?, ?, ?, ?)",
                    (idea.id, idea.epoch, idea.index, idea.state.value, idea.model_dump_json()),
                )
                self._event(c, "idea", idea.id, None, idea.state.value, idea.title)

    def add_ideas(self, ideas: list[Idea]) -> list[Idea]:
        """Store ideas outside an epoch's proposal (e.g. confirmation re-runs), all at once;
        ideas already stored are skipped. Returns those added."""
        added = []
        with self.transaction() as c:
            for idea in ideas:
                if c.execute("SELECT 1 FROM ideas WHERE id = ?", (idea.id,)).fetchone():
                    continue
                c.execute(
                    "INSERT INTO ideas VALUES (?, ?, ?, ?, ?)",
                    (idea.id, idea.epoch, idea.index, idea.state.value, idea.model_dump_json()),
                )
                self._event(c, "idea", idea.id, None, idea.state.value, idea.title)
                added.append(idea)
        return added

    def ideas(self, epoch: int | None = None, state: IdeaState | None = None) -> list[Idea]:
        sql, args = "SELECT data FROM ideas WHERE 1=1", []
        if epoch is not None:
            sql += " AND epoch = ?"
            args.append(epoch)
        if state is not None:
            sql += " AND state = ?"
            args.append(state.value)
        rows = self._conn.execute(sql + " ORDER BY epoch, idx", args).fetchall()
        return [Idea.model_validate_json(r["data"]) for r in rows]

    def idea(self, idea_id: str) -> Idea:
        row = self._conn.execute("SELECT data FROM ideas WHERE id = ?", (idea_id,)).fetchone()
        if row is None:
            raise StoreError(f"no idea {idea_id!r} in this run")
        return Idea.model_validate_json(row["data"])

    def _set_idea_state(self, c: sqlite3.Connection, idea_id: str, target: IdeaState) -> None:
        row = c.execute("SELECT state, data FROM ideas WHERE id = ?", (idea_id,)).fetchone()
        current = IdeaState(row["state"])
        if target not in IDEA_TRANSITIONS.get(current, set()):
            raise InvalidTransition("idea", idea_id, current.value, target.value)
        idea = Idea.model_validate_json(row["data"]).model_copy(update={"state": target})
        c.execute("UPDATE ideas SET state = ?, data = ? WHERE id = ?", (target.value, idea.model_dump_json(), idea_id))
        self._event(c, "idea", idea_id, current.value, target.value)

    # ---- patches ------------------------------------------------------------------

    def patches(self, idea_id: str | None = None) -> list[Patch]:
        if idea_id is None:
            rows = self._conn.execute("SELECT data FROM patches ORDER BY idea_id, attempt").fetchall()
        else:
            rows = self._conn.execute(
                "SELECT data FROM patches WHERE idea_id = ? ORDER BY attempt", (idea_id,)
            ).fetchall()
        return [Patch.model_validate_json(r["data"]) for r in rows]

    def record_implementation(
        self, idea_id: str, attempts: list[Patch], job: Job | None, failure: Result | None
    ) -> None:
        """Store an idea's patch attempts and what follows from them, atomically: a queued
        job when a patch applied, or the idea's final (failed) result when none did."""
        if (job is None) == (failure is None):
            raise StoreError("an implementation ends in exactly one of: a queued job, a failure result")
        with self.transaction() as c:
            for patch in attempts:
                c.execute(
                    "INSERT INTO patches VALUES (?, ?, ?, ?, ?)",
                    (patch.id, idea_id, patch.attempt, patch.status.value, patch.model_dump_json()),
                )
            if job is not None:
                self._set_idea_state(c, idea_id, IdeaState.IMPLEMENTED)
                c.execute(
                    "INSERT INTO jobs VALUES (?, ?, ?, ?)", (job.id, idea_id, job.state.value, job.model_dump_json())
                )
                self._event(c, "job", job.id, None, job.state.value)
            else:
                assert failure is not None
                self._set_idea_state(c, idea_id, IdeaState.PATCH_FAILED)
                self._insert_result(c, failure)

    # ---- jobs ---------------------------------------------------------------------

    def jobs(self, states: set[JobState] | None = None) -> list[Job]:
        if states is None:
            rows = self._conn.execute("SELECT data FROM jobs ORDER BY rowid").fetchall()
        else:  # filtered in SQL: the scheduler asks for queued jobs on every round
            marks = ", ".join("?" * len(states))
            sql = f"SELECT data FROM jobs WHERE state IN ({marks}) ORDER BY rowid"
            rows = self._conn.execute(sql, [s.value for s in states]).fetchall()
        return [Job.model_validate_json(r["data"]) for r in rows]

    def job(self, job_id: str) -> Job:
        row = self._conn.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise StoreError(f"no job {job_id!r} in this run")
        return Job.model_validate_json(row["data"])

    def _update_job(self, c: sqlite3.Connection, job_id: str, target: JobState, detail: str = "", **fields: Any) -> Job:
        row = c.execute("SELECT state, data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise StoreError(f"no job {job_id!r} in this run")
        current = JobState(row["state"])
        if target != current and target not in JOB_TRANSITIONS.get(current, set()):
            raise InvalidTransition("job", job_id, current.value, target.value)
        job = Job.model_validate_json(row["data"]).model_copy(update={"state": target, **fields})
        c.execute("UPDATE jobs SET state = ?, data = ? WHERE id = ?", (target.value, job.model_dump_json(), job_id))
        if target != current:
            self._event(c, "job", job_id, current.value, target.value, detail)
        return job

    def transition_job(self, job_id: str, target: JobState, detail: str = "", **fields: Any) -> Job:
        with self.transaction() as c:
            return self._update_job(c, job_id, target, detail, **fields)

    def transition_jobs(self, changes: list[tuple[str, JobState, str, dict[str, Any]]], sync: bool = True) -> list[Job]:
        """Several (job id, target, detail, fields) transitions in one transaction (one disk
        sync; none with `sync=False`, see `transaction`)."""
        with self.transaction(sync) as c:
            return [self._update_job(c, job_id, target, detail, **fields) for job_id, target, detail, fields in changes]

    def requeue_job(self, job_id: str, reason: str) -> Job:
        """Send a job whose worker was lost back to the queue as a fresh attempt."""
        with self.transaction() as c:
            job = Job.model_validate_json(c.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()["data"])
            return self._update_job(
                c,
                job_id,
                JobState.QUEUED,
                reason,
                attempt=job.attempt + 1,
                slot=None,
                worker="",
                started_at=None,
                job_dir="",
            )

    def retry_job(self, job_id: str, reason: str) -> Job:
        """Run a job that ended once more, as a fresh attempt: its result is discarded and
        the event log keeps `reason` (the run's baseline gets a second chance this way)."""
        with self.transaction() as c:
            row = c.execute("SELECT state, data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise StoreError(f"no job {job_id!r} in this run")
            job = Job.model_validate_json(row["data"])
            if job.state not in TERMINAL_JOB_STATES:
                raise InvalidTransition("job", job_id, job.state.value, JobState.QUEUED.value)
            c.execute("DELETE FROM results WHERE idea_id = ?", (job.idea_id,))
            fresh = job.model_copy(
                update={
                    "state": JobState.QUEUED,
                    "attempt": job.attempt + 1,
                    "slot": None,
                    "worker": "",
                    "started_at": None,
                    "ended_at": None,
                    "job_dir": "",
                }
            )
            c.execute(
                "UPDATE jobs SET state = ?, data = ? WHERE id = ?", (fresh.state.value, fresh.model_dump_json(), job_id)
            )
            self._event(c, "job", job_id, job.state.value, JobState.QUEUED.value, reason)
            return fresh

    def _current_attempt(self, c: sqlite3.Connection, outcome: JobOutcome) -> Job:
        """The job an outcome reports on; an outcome of another attempt than the current one is refused."""
        job = Job.model_validate_json(
            c.execute("SELECT data FROM jobs WHERE id = ?", (outcome.job_id,)).fetchone()["data"]
        )
        if job.attempt != outcome.attempt:
            raise StoreError(f"job {job.id}: outcome of attempt {outcome.attempt}, current attempt {job.attempt}")
        return job

    def finish_job(self, outcome: JobOutcome, result: Result) -> None:
        """Record a job's end and the idea's result together, once."""
        with self.transaction() as c:
            self._current_attempt(c, outcome)
            self._update_job(
                c,
                outcome.job_id,
                outcome.job_state(),
                result.failure.value if result.failure else "",
                ended_at=outcome.ended_at,
                exit_code=outcome.exit_code,
            )
            self._insert_result(c, result)

    def hold_for_repair(self, outcome: JobOutcome, result: Result) -> None:
        """Record a failed job's end with its result held on the job, not yet the idea's:
        a repair round follows (`record_repair`)."""
        with self.transaction() as c:
            self._current_attempt(c, outcome)
            self._update_job(
                c,
                outcome.job_id,
                outcome.job_state(),
                f"{result.failure}: awaiting repair",
                ended_at=outcome.ended_at,
                exit_code=outcome.exit_code,
                awaiting_repair=result,
            )

    def jobs_awaiting_repair(self) -> list[Job]:
        rows = self._conn.execute(
            "SELECT data FROM jobs WHERE state = ? AND idea_id NOT IN (SELECT idea_id FROM results) ORDER BY rowid",
            (JobState.FAILED.value,),
        ).fetchall()
        return [job for job in (Job.model_validate_json(r["data"]) for r in rows) if job.awaiting_repair is not None]

    def record_repair(self, job_id: str, attempts: list[Patch], patch_id: str | None, detail: str = "") -> None:
        """A repair round's patch attempts and their consequence, atomically: the job queued
        again (a new attempt) with the patch `patch_id`, or, with none, the held result
        becoming the idea's result."""
        with self.transaction() as c:
            job = Job.model_validate_json(c.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()["data"])
            held = job.awaiting_repair
            if held is None or job.state != JobState.FAILED:
                raise StoreError(f"job {job_id} is not awaiting a repair")
            for patch in attempts:
                c.execute(
                    "INSERT INTO patches VALUES (?, ?, ?, ?, ?)",
                    (patch.id, job.idea_id, patch.attempt, patch.status.value, patch.model_dump_json()),
                )
            if patch_id is None:
                self._update_job(c, job_id, JobState.FAILED, awaiting_repair=None)
                self._event(c, "job", job_id, JobState.FAILED.value, JobState.FAILED.value, detail or "not repaired")
                self._insert_result(c, held)
                return
            self._update_job(
                c,
                job_id,
                JobState.QUEUED,
                detail or f"repair round {job.repairs + 1}",
                patch_id=patch_id,
                attempt=job.attempt + 1,
                repairs=job.repairs + 1,
                preflight_stops=held.preflight_stops,  # the held attempt's, counted in
                awaiting_repair=None,
                slot=None,
                worker="",
                started_at=None,
                ended_at=None,
                exit_code=None,
                job_dir="",
            )

    # ---- results ------------------------------------------------------------------

    def _insert_result(self, c: sqlite3.Connection, result: Result) -> None:
        if c.execute("SELECT 1 FROM results WHERE idea_id = ?", (result.idea_id,)).fetchone():
            raise StoreError(f"idea {result.idea_id} already has a result")
        c.execute(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?)",
            (
                result.idea_id,
                result.job_id,
                result.failure.value if result.failure else None,
                result.metric,
                result.model_dump_json(),
            ),
        )
        self._event(
            c,
            "result",
            result.idea_id,
            None,
            result.failure.value if result.failure else "ok",
            "" if result.metric is None else f"{result.metric:.6g}",
        )

    # ---- island migrations (search/islands.py) -------------------------------------------

    def record_migration(self, round_: dict[str, Any]) -> None:
        """Store one migration round as an event; a round already stored is kept as it is."""
        with self.transaction() as c:
            key = f"round-{int(round_['round'])}"
            if c.execute("SELECT 1 FROM events WHERE entity = 'migration' AND entity_id = ?", (key,)).fetchone():
                return
            self._event(c, "migration", key, None, "migrated", json.dumps(round_))

    def migrations(self) -> list[dict[str, Any]]:
        return [json.loads(e["detail"]) for e in self.events("migration")]

    def count_results(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def results(self) -> dict[str, Result]:
        rows = self._conn.execute("SELECT idea_id, data FROM results").fetchall()
        return {r["idea_id"]: Result.model_validate_json(r["data"]) for r in rows}

    def events(self, entity: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events" + (" WHERE entity = ?" if entity else "") + " ORDER BY id"
        return [dict(r) for r in self._conn.execute(sql, (entity,) if entity else ()).fetchall()]

    # ---- artifacts ------------------------------------------------------------------

    def record_artifact(self, rel: str, url: str, sha256: str, size: int) -> None:
        """Where an artifact lives (a path in the run folder, or any fsspec URL)."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?) ON CONFLICT(rel) DO UPDATE SET "
                "url = excluded.url, sha256 = excluded.sha256, size = excluded.size, ts = excluded.ts",
                (rel, url, sha256, size, now()),
            )

    def artifacts(self) -> dict[str, dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM artifacts ORDER BY rel").fetchall()
        return {r["rel"]: dict(r) for r in rows}

    # ---- language model calls --------------------------------------------------------

    def record_llm_call(self, call: dict[str, Any]) -> int:
        columns = (
            "ts",
            "role",
            "call_key",
            "fingerprint",
            "model",
            "provider",
            "epoch",
            "idea_id",
            "request",
            "text",
            "thinking",
            "usage",
            "cost_usd",
            "latency_s",
            "replayed",
        )
        with self.transaction() as c:
            cur = c.execute(
                f"INSERT INTO llm_calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                tuple(call.get(k) for k in columns),
            )
            return int(cur.lastrowid)

    def llm_calls(self, role: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM llm_calls" + (" WHERE role = ?" if role else "") + " ORDER BY id"
        return [dict(r) for r in self._conn.execute(sql, (role,) if role else ()).fetchall()]

    def llm_costs(self, role: str) -> list[dict[str, Any]]:
        """Each call's key, idea and cost, without its text (a portfolio reads them at every choice)."""
        sql = "SELECT call_key, idea_id, cost_usd FROM llm_calls WHERE role = ? ORDER BY id"
        return [dict(r) for r in self._conn.execute(sql, (role,)).fetchall()]

    def find_llm_call(self, fingerprint: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT * FROM llm_calls WHERE fingerprint = ? ORDER BY id LIMIT 1", (fingerprint,)
        ).fetchone()
        return dict(row) if row else None

    def llm_spent_usd(self) -> float:
        """Dollars actually spent on model calls (replayed answers cost nothing)."""
        row = self._conn.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE replayed = 0").fetchone()
        return float(row[0])

    # ---- model portfolio --------------------------------------------------------------

    def record_model_choice(self, choice: dict[str, Any]) -> dict[str, Any]:
        """Store a portfolio's choice for one proposal; the first choice for a (role, key)
        stands (a resumed run asking again gets it back, so its calls replay from the store)."""
        columns = ("ts", "role", "key", "arm", "rule", "epoch", "idea_id", "arms")
        with self.transaction() as c:
            c.execute(
                f"INSERT OR IGNORE INTO model_choices ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                tuple(choice.get(k) for k in columns),
            )
        found = self.model_choice(choice["role"], choice["key"])
        assert found is not None
        return found

    def model_choice(self, role: str, key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM model_choices WHERE role = ? AND key = ?", (role, key)).fetchone()
        return dict(row) if row else None

    def model_choices(self, role: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM model_choices" + (" WHERE role = ?" if role else "") + " ORDER BY id"
        return [dict(r) for r in self._conn.execute(sql, (role,) if role else ()).fetchall()]
