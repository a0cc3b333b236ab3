from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Prepared data goes to a per-session cache, never the user's (session-scoped, so it
    is in place before any module-scoped fixture prepares data)."""
    cache = os.environ.get("GROUNDWORK_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GROUNDWORK_CACHE", cache)
        yield


@pytest.fixture
def toy_env(tmp_path: Path) -> Path:
    """A private copy of the seconds-fast toy environment."""
    dst = tmp_path / "toyenv"
    shutil.copytree(FIXTURES / "toyenv", dst)
    return dst


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1", **(extra or {})})
    if "TOY_LEDGER" in env:  # the toy environment's ledger lies outside the sandboxed work folder
        env["GROUNDWORK_SANDBOX_WRITABLE"] = env["TOY_LEDGER"]
    return env


GROUNDWORK = [sys.executable, "-m", "groundwork.cli"]
