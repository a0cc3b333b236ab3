"""Manifest placeholders in every command: a flag-driven training script runs with no
wrapper, and a placeholder the harness does not know is refused when the manifest is read,
naming the command and the ones it may use. Real job runner, real subprocesses."""

from __future__ import annotations

import json
import re

import pytest

from conftest import patched_job
from groundwork.environments import ManifestError, load_environment
from groundwork.execution.runner import JobRunner

FLAG_DRIVEN_TRAIN = """
import argparse, json, os
p = argparse.ArgumentParser()
for flag in ("--seed", "--out-dir", "--data", "--budget", "--work-dir"):
    p.add_argument(flag, required=True)
args = p.parse_args()
json.dump(vars(args), open(os.path.join(args.out_dir, "flags.json"), "w"))
"""


def _manifest_with(toy_env, train: str) -> None:
    manifest = toy_env / "environment.toml"
    text = manifest.read_text()
    assert 'train = ["{python}", "train.py"]' in text
    manifest.write_text(text.replace('train = ["{python}", "train.py"]', train))


def test_a_flag_driven_script_gets_every_value_from_its_command(tmp_path, toy_env):
    _manifest_with(
        toy_env,
        'train = ["{python}", "train.py", "--seed", "{seed}", "--out-dir", "{output_dir}", '
        '"--data", "{data_dir}/train.txt", "--budget", "{budget_s}", "--work-dir", "{work_dir}"]',
    )
    env = load_environment(toy_env)
    spec = patched_job(env, tmp_path / "data", tmp_path, {"train.py": FLAG_DRIVEN_TRAIN}, job_id="flags", seed=7)
    JobRunner(spec).run()  # the toy evaluation scores knobs this train.py lacks: only the flags matter here
    work = tmp_path / "job" / "work"
    flags = json.loads((work / "out" / "flags.json").read_text())
    assert flags == {
        "seed": "7",
        "out_dir": str(work / "out"),
        "data": f"{spec.env['GROUNDWORK_TRAIN_DATA_DIR']}/train.txt",
        "budget": f"{spec.time_budget_s:g}",
        "work_dir": str(work),
    }


def test_an_unknown_placeholder_is_refused_with_the_ones_allowed(toy_env):
    _manifest_with(toy_env, 'train = ["{python}", "train.py", "--steps", "{max_steps}"]')
    with pytest.raises(ManifestError, match=re.escape("run.train uses {max_steps}; it may use {python}, {data_dir}")):
        load_environment(toy_env)


def test_the_preparation_gets_only_the_python_and_its_data_folder(toy_env):
    manifest = toy_env / "environment.toml"
    manifest.write_text(manifest.read_text().replace("[run]\n", '[run]\nprepare = ["{python}", "p.py", "{seed}"]\n'))
    with pytest.raises(ManifestError, match=re.escape("run.prepare uses {seed}; it may use {python}, {data_dir}")):
        load_environment(toy_env)
