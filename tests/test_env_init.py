"""`groundwork env init`: a manifest scaffolded for an existing repository, inferred or
asked, validated by the manifest model, and usable as an environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import GROUNDWORK, cli_env
from groundwork.cli import app
from groundwork.environments import load_environment
from groundwork.environments.scaffold import infer, render
from groundwork.patch.patching import PatchPolicy, trial_apply, unified_diff

TRAIN = """import os, time
steps = 3  # a knob
time.sleep(min(0.1, float(os.environ.get("GROUNDWORK_TIME_BUDGET_S", "1"))))
open(os.path.join(os.environ.get("GROUNDWORK_OUT_DIR", "."), "steps.txt"), "w").write(str(steps))
"""
EVALUATE = """import json, os
json.dump({"accuracy": 0.5, "n": 10}, open(os.environ.get("GROUNDWORK_RESULT_PATH", "result.json"), "w"))
"""
PREPARE = """import argparse, pathlib
p = argparse.ArgumentParser(); p.add_argument("--out"); a = p.parse_args()
pathlib.Path(a.out).mkdir(parents=True, exist_ok=True); (pathlib.Path(a.out) / "data.txt").write_text("1 2 3")
"""


def _repo(tmp_path, **files):
    repo = tmp_path / "My Project"
    repo.mkdir()
    for name, text in files.items():
        path = repo / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return repo


def test_inference_reads_the_repository(tmp_path):
    repo = _repo(tmp_path, **{"train.py": TRAIN, "eval.py": EVALUATE, "prepare_data.py": PREPARE, "README.md": "x"})
    guess = infer(repo)
    assert guess.name == "my-project"
    assert (guess.train_script, guess.eval_script, guess.prepare_script) == ("train.py", "eval.py", "prepare_data.py")
    assert (guess.metric, guess.direction, guess.plausible_range) == ("accuracy", "maximize", (0.0, 1.0))
    assert guess.editable == ["train.py"] and guess.locked == ["eval.py", "prepare_data.py"]
    assert "accuracy" in render(guess) and "Only train.py may be changed" in render(guess)


@pytest.mark.slow
def test_init_without_questions_writes_a_valid_usable_manifest(tmp_path):
    repo = _repo(tmp_path, **{"train.py": TRAIN, "evaluate.py": EVALUATE, "prepare.py": PREPARE})
    proc = subprocess.run(
        [*GROUNDWORK, "env", "init", str(repo), "--no-ask", "--budget", "30"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accuracy (maximize" in proc.stdout and "training script: train.py" in proc.stdout
    env = load_environment(repo)
    m = env.manifest
    assert m.files.editable == ["train.py"] and m.files.locked == ["evaluate.py", "prepare.py"]
    assert m.files.hidden == m.files.locked and env.profile().time_budget_s == 30
    assert m.run.prepare == ["{python}", "prepare.py", "--out", "{data_dir}"]
    text = (repo / "environment.toml").read_text()
    assert "allow_new = []" in text and "allow_delete = false" in text  # the file rules are written out
    policy = PatchPolicy.from_files(m.files)
    for old, new, reason in [
        ({}, {"helper.py": "x = 1\n"}, "allows no new files"),
        ({"train.py": TRAIN}, {}, "does not allow deleting"),
        ({"train.py": TRAIN}, {"train.py": TRAIN.replace("steps = 3", "steps = 4")}, None),
    ]:
        attempt = trial_apply(unified_diff(old, new), env.codebase_dir, policy)
        assert attempt.applied if reason is None else reason in attempt.error, attempt.error
    assert (env.prepare(env.profile(), quiet=True) / "data.txt").read_text() == "1 2 3"  # its commands run
    show = subprocess.run([*GROUNDWORK, "env", "show", str(repo)], capture_output=True, text=True, env=cli_env())
    assert show.returncode == 0 and "accuracy" in show.stdout

    again = subprocess.run([*GROUNDWORK, "env", "init", str(repo), "--no-ask"], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stdout and "--force" in again.stdout


def test_init_takes_what_the_flags_say(tmp_path):
    repo = _repo(tmp_path, **{"scripts__train.py": TRAIN, "scripts__score.py": EVALUATE, "model.py": "x = 1\n"})
    args = ["env", "init", str(repo), "--no-ask", "--evaluate", "scripts/score.py", "--direction", "maximize"]
    args += ["--editable", "scripts/train.py", "--editable", "model.py", "--metric-range", "0.1,0.9"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    m = load_environment(repo).manifest
    assert m.run.train == ["{python}", "scripts/train.py"] and m.run.evaluate == ["{python}", "scripts/score.py"]
    assert m.metric.name == "accuracy" and m.metric.direction == "maximize" and m.metric.plausible_range == (0.1, 0.9)
    assert m.files.editable == ["scripts/train.py", "model.py"] and m.files.locked == ["scripts/score.py"]
    assert m.run.prepare == []


def test_init_reports_every_problem_at_once(tmp_path):
    repo = _repo(tmp_path, **{"notes.py": "x = 1\n", "score.py": 'import json\njson.dump({"n": 1}, open("r", "w"))\n'})
    result = CliRunner().invoke(app, ["env", "init", str(repo), "--no-ask", "--evaluate", "score.py",
                                      "--prepare", "missing.py"])  # fmt: skip
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "3 problem(s); nothing was written" in out
    assert "no training script found: name it with --train FILE" in out
    assert "preparation script 'missing.py' does not exist" in out
    assert "cannot tell which metric score.py writes: pass --metric-name KEY" in out
    assert not (repo / "environment.toml").exists()


def test_a_named_metric_the_evaluation_never_writes_is_refused(tmp_path):
    repo = _repo(tmp_path, **{"train.py": TRAIN, "evaluate.py": EVALUATE.replace("accuracy", "test_loss")})
    guess = infer(repo)
    assert (guess.metric, guess.direction, guess.plausible_range) == ("test_loss", "minimize", (0.0, 100.0))
    result = CliRunner().invoke(app, ["env", "init", str(repo), "--no-ask", "--metric-name", "loss"])
    assert result.exit_code == 1
    assert "never writes that key (it writes 'test_loss')" in " ".join(result.output.split())


@pytest.mark.slow
@pytest.mark.e2e
def test_the_documented_example_environment_runs(tmp_path):
    """docs/environments.md's worked example, extracted file by file, is a valid environment
    whose baseline trains and is scored by its locked evaluation, and whose catalog loads."""
    import re

    from groundwork.execution.job_spec import environment_job_spec
    from groundwork.execution.runner import JobRunner
    from groundwork.ideation.catalog import load_catalog

    doc = (Path(__file__).resolve().parents[1] / "docs" / "environments.md").read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", doc, flags=re.DOTALL)
    assert {name for name, _ in blocks} >= {"wave/environment.toml", "wave/baseline/train.py"}
    for name, text in blocks:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env = load_environment(tmp_path / "wave")
    assert [idea.id for idea in load_catalog(env.catalog_path)] == ["wider", "relu"]
    profile = env.profile()
    data = env.prepare(profile, quiet=True)
    (tmp_path / "job").mkdir()
    spec = environment_job_spec(env, profile, data, tmp_path / "job", job_id="job-wave", seed=0)
    outcome = JobRunner(spec).run()
    assert outcome.failure is None, outcome.detail
    assert 0.005 < outcome.metric < 0.5 and outcome.metrics["points"] == 500 and outcome.curve


CHAR_TRAINER = '''"""A char-level model trained from the command line."""
import argparse
import os

import torch
import fancylog

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", default="input.txt")
    p.add_argument("--max_steps", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cuda")
    p.add_argument("--work-dir", default="runs")
    a = p.parse_args()
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.step()
    torch.save({"model": model.state_dict(), "step": 1}, os.path.join(a.work_dir, "ckpt.pt"))

if __name__ == "__main__":
    main()
'''


def test_a_flag_driven_trainer_is_inferred_with_its_evidence(tmp_path):
    from groundwork.environments.init_plan import InitOptions, plan

    repo = _repo(tmp_path, **{"char_rnn.py": CHAR_TRAINER, "input.txt": "hello world\n" * 50, "utils.py": ""})

    def importable(present):  # a test double of the interpreter's import check
        return lambda name: name != "fancylog" or present

    missing = plan(repo, InitOptions(), importable(False))
    assert any("imports fancylog" in p and "--requirements" in p for p in missing.problems)
    p = plan(repo, InitOptions(max_steps=20), importable(True))
    assert p.problems == []
    s = p.scaffold
    assert s.train_script == "char_rnn.py" and s.metric == "val_loss" and s.plausible_range == (0.0, 100.0)
    assert s.train_command == ["{python}", "char_rnn.py", "--input", "{data_dir}/train.txt", "--seed", "{seed}",
                               "--work-dir", "{output_dir}", "--max_steps", "20", "--device", "cpu"]  # fmt: skip
    assert s.training_files == ["train.txt"] and "input.txt" in s.hidden and "input.txt" in s.locked
    evidence = "\n".join(p.evidence())
    assert "flag for seed: --seed" in evidence and "torch.save of a state dict under 'model' to ckpt.pt" in evidence
    assert "state = state['model']" in p.drafts["groundwork_eval.py"]
    assert "weights_only=True" in p.drafts["groundwork_eval.py"]
    assert set(p.drafts) == {"groundwork_eval.py", "groundwork_prepare.py"}


def test_the_requirements_become_a_dependencies_section(tmp_path):
    from groundwork.environments.init_plan import InitOptions, plan
    from groundwork.environments.manifest import parse_manifest
    from groundwork.environments.scaffold import write

    repo = _repo(tmp_path, **{"train.py": TRAIN, "evaluate.py": EVALUATE, "requirements.txt": "fancylog\n"})
    (repo / "wheels").mkdir()
    options = InitOptions(find_links=[str(repo / "wheels")], no_index=True)
    found = plan(repo, options, lambda name: True)
    assert found.problems == [] and found.scaffold.dependencies.named() == ["requirements.txt"]
    deps = parse_manifest(write(repo, found.scaffold)[0]).dependencies
    assert (deps.requirements_file, deps.requirements, deps.find_links) == ("requirements.txt", [], ["wheels"])
    assert deps.no_index and deps.inherit_packages  # torch and the rest come from Groundwork's interpreter

    named = plan(repo, InitOptions(requirements=["fancylog>=1", "requirements.txt"], inherit_packages=False))
    assert named.scaffold.dependencies.named() == ["requirements.txt", "fancylog>=1"]
    assert "inherit_packages = false" in render(named.scaffold)
    wrong = plan(repo, InitOptions(requirements=["reqs/dev.txt"], find_links=[str(tmp_path)]))
    assert any("--requirements 'reqs/dev.txt': no such file" in p for p in wrong.problems), wrong.problems
    assert any("--find-links" in p and "inside" in p for p in wrong.problems), wrong.problems
    (tmp_path / "bare").mkdir()
    bare = plan(_repo(tmp_path / "bare", **{"train.py": TRAIN, "evaluate.py": EVALUATE}), InitOptions(), lambda _: True)
    assert bare.scaffold.dependencies is None and "[dependencies]" not in render(bare.scaffold)


def test_an_import_found_only_through_pythonpath_is_passed_to_jobs(tmp_path, monkeypatch):
    from groundwork.environments.init_plan import InitOptions, plan

    repo = _repo(tmp_path, **{"char_rnn.py": CHAR_TRAINER, "input.txt": "hello world\n" * 50})
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / "fancylog.py").write_text("def log(*a):\n    pass\n")
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.setenv("PYTHONPATH", str(modules))
    p = plan(repo, InitOptions())
    assert p.problems == [] and p.scaffold.pass_env == ["PYTHONPATH"] and p.scaffold.dependencies is None
    assert "imports found through PYTHONPATH: fancylog" in "\n".join(p.evidence())
