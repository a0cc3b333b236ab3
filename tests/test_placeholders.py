"""Placeholders in every command of a manifest: checked when the manifest loads, filled by
the job runner (training's data folder is its view) and by data preparation."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from groundwork.environments import ManifestError, load_environment
from groundwork.environments.placeholders import fill
from groundwork.execution.job_spec import environment_job_spec
from groundwork.execution.runner import JobRunner

MANIFEST = """\
name = "flags"
goal = "Minimise the loss."
codebase = "."
default_profile = "quick"

[metric]
name = "loss"
direction = "minimize"
plausible_range = [0.0, 100.0]

[files]
editable = ["train.py"]
hidden = ["evaluate.py", "input.txt"]
locked = ["evaluate.py", "input.txt"]

[run]
prepare = {prepare}
train = {train}
evaluate = {evaluate}

[data]
training_files = ["train.txt"]

[profiles.quick]
time_budget_s = 7
"""
PREPARE = ["{python}", "prepare.py", "--out", "{data_dir}", "--src", "{work_dir}/input.txt"]
ARGS = ["--seed", "{seed}", "--budget", "{budget_s}", "--work", "{work_dir}", "--out", "{output_dir}"]
TRAIN = ["{python}", "train.py", "--data", "{data_dir}", *ARGS]
EVALUATE = ["{python}", "evaluate.py", "--data", "{data_dir}", *ARGS]

# A flag-driven repository: no environment variable read anywhere, no wrapper.
SCRIPTS = {
    "input.txt": "1\n2\n3\n4\n",
    "prepare.py": """
        import argparse, pathlib
        p = argparse.ArgumentParser(); p.add_argument("--out"); p.add_argument("--src")
        a = p.parse_args()
        lines = pathlib.Path(a.src).read_text().split()
        out = pathlib.Path(a.out); out.mkdir(parents=True, exist_ok=True)
        (out / "train.txt").write_text("\\n".join(lines[:3])); (out / "val.txt").write_text(lines[3])
    """,
    "train.py": """
        import json, os, sys
        flags = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        flags["seen"] = sorted(os.listdir(flags["--data"]))
        json.dump(flags, open(os.path.join(flags["--out"], "train_flags.json"), "w"))
    """,
    "evaluate.py": """
        import json, os, sys
        flags = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        flags["seen"] = sorted(os.listdir(flags["--data"]))
        json.dump(flags, open(os.path.join(flags["--out"], "eval_flags.json"), "w"))
        json.dump({"loss": 1.5}, open("result.json", "w"))
    """,
}


def _write_env(root: Path, prepare=PREPARE, train=TRAIN, evaluate=EVALUATE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = MANIFEST.format(prepare=json.dumps(prepare), train=json.dumps(train), evaluate=json.dumps(evaluate))
    (root / "environment.toml").write_text(text)
    for name, body in SCRIPTS.items():
        (root / name).write_text(textwrap.dedent(body).lstrip())
    return root


def test_a_flag_driven_script_gets_every_value_as_an_argument(tmp_path):
    env = load_environment(_write_env(tmp_path / "repo"))
    data_dir = env.prepare(env.profile(), quiet=True)
    assert (data_dir / "val.txt").read_text() == "4"  # {work_dir} of prepare: the codebase
    spec = environment_job_spec(env, env.profile(), data_dir, tmp_path / "job", job_id="j1", seed=7, sandbox="off")
    (tmp_path / "job").mkdir()
    outcome = JobRunner(spec).run()
    assert outcome.failure is None, outcome.detail
    work = tmp_path / "job" / "work"
    trained = json.loads((work / "out" / "train_flags.json").read_text())
    evaluated = json.loads((work / "out" / "eval_flags.json").read_text())
    for flags in (trained, evaluated):
        assert flags["--seed"] == "7" and flags["--budget"] == "7"
        assert flags["--work"] == str(work) and flags["--out"] == str(work / "out")
    # {data_dir}: training's view (only training_files) for train, the whole folder for evaluate
    assert trained["seen"] == ["train.txt"] and evaluated["seen"] == ["train.txt", "val.txt"]
    assert evaluated["--data"] == str(data_dir.resolve())


@pytest.mark.parametrize(
    ("field", "command", "expected"),
    [
        ("train", ["{python}", "train.py", "--lr", "{learning_rate}"], r"run\.train.*\{learning_rate\}"),
        ("evaluate", ["{pyhton}", "evaluate.py"], r"run\.evaluate.*\{pyhton\}"),
        ("prepare", ["{python}", "prepare.py", "--seed", "{seed}"], r"run\.prepare.*\{seed\}.*once per data folder"),
    ],
)
def test_an_unknown_placeholder_names_the_command_and_the_allowed_ones(tmp_path, field, command, expected):
    root = _write_env(tmp_path / "repo", **{field: command})
    with pytest.raises(ManifestError) as caught:
        load_environment(root)
    message = str(caught.value)
    assert re.search(expected, message), message
    allowed = "{python}, {data_dir}, {work_dir}" if field == "prepare" else "{python}, {data_dir}, {seed}, {budget_s}"
    assert allowed in message


def test_other_braces_pass_through():
    assert fill(["{python}", '{"a": 1}', "{x}"], {"python": "py"}) == ["py", '{"a": 1}', "{x}"]
