"""bootstrap.py's test command: the suite on one pytest-xdist worker per core, unless the
arguments choose the workers themselves."""

from __future__ import annotations

import importlib.util

from conftest import REPO

_spec = importlib.util.spec_from_file_location("bootstrap", REPO / "bootstrap.py")
bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bootstrap)


def test_the_suite_runs_on_a_worker_per_core_at_most_four(monkeypatch):
    for cores, expected in ((1, []), (2, ["-n", "2", "--dist", "loadfile"]), (16, ["-n", "4", "--dist", "loadfile"])):
        monkeypatch.setattr(bootstrap.os, "cpu_count", lambda cores=cores: cores)
        assert bootstrap.parallel(["-k", "resume"]) == expected


def test_arguments_that_choose_the_workers_win(monkeypatch):
    monkeypatch.setattr(bootstrap.os, "cpu_count", lambda: 8)
    for extra in (["-n", "0"], ["-n3"], ["--numprocesses=2"], ["-p", "no:xdist"]):
        assert bootstrap.parallel(extra) == [], extra
    assert bootstrap.parallel(["--no-header", "-x"]) != []  # other flags that start with -n or --n
