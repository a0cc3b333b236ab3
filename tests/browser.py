"""Debian's chromium, driven by playwright, for tests that look at pages as a person would.
Playwright's own browser downloads cannot work here: the system chromium is used."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # gitignored; screenshots to look at


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: .ci/run installs it with apt-get")
    pytest.skip("chromium is not installed: apt-get install chromium (.ci/run does)")


@contextmanager
def browser_page(profile_dir: Path, width: int = 1300, height: int = 1000):
    """A page in a fresh chromium profile (a new user-data-dir each time)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context.new_page()
        finally:
            context.close()
