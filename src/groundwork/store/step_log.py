"""Per-step figures of an RL run, in their own table of the run's SQLite store (created
when first needed, so run folders from before it keep opening): the live view, `status`
and reports read them from there."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from groundwork.store.sqlite_store import DB_NAME

SCHEMA = """
CREATE TABLE IF NOT EXISTS rl_steps (
    step INTEGER PRIMARY KEY, ts REAL, mean_reward REAL, max_reward REAL, execution_rate REAL, data TEXT
)
"""


class StepLog:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / DB_NAME

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
        return conn

    def record(self, row: dict[str, Any]) -> None:
        """Store one step's figures; a step redone after a resume replaces its row."""
        conn = self._connect()
        try:
            conn.execute(
                "INSERT OR REPLACE INTO rl_steps VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row["step"],
                    row["ts"],
                    row["mean_reward"],
                    row["max_reward"],
                    row["execution_rate"],
                    json.dumps(row),
                ),
            )
        finally:
            conn.close()

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        conn = self._connect()
        try:
            return [json.loads(r[0]) for r in conn.execute("SELECT data FROM rl_steps ORDER BY step")]
        finally:
            conn.close()
