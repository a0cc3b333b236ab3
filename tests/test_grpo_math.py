"""The grpo environment's math codebase (the small and full profiles' program) on CPU: the
math-smoke profile's offline synthetic task through the real job runner and locked
evaluation, planted hacks against it, and what data preparation decides or refuses for
small and full when the weights and MATH cannot be had (no network here: the hub is
switched off or pointed at a closed port, so the real download path fails)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import patched_job
from groundwork.environments import load_environment
from groundwork.execution.runner import JobRunner
from groundwork.protocols import JobSpec
from groundwork.records import FailureCategory

pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

pytestmark = pytest.mark.slow

SMOKE = load_environment("grpo", profile="math-smoke")
CODEBASE = SMOKE.codebase_dir
TRAIN = (CODEBASE / "train.py").read_text()
SMOKE_EVAL_PROBLEMS = 50  # the math-smoke setting locked in math/evaluate.py


@pytest.fixture(scope="module")
def smoke_data() -> Path:
    """Prepared once for the module (in the tests' own cache, see conftest)."""
    return SMOKE.prepare(SMOKE.profile(), quiet=True)


def _edit(old: str, new: str, text: str = TRAIN) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _job(tmp_path: Path, data_dir: Path, new_files: dict[str, str] | None = None, **overrides) -> JobSpec:
    """A math-smoke job whose patch turns the math codebase's files into `new_files`."""
    spec = patched_job(SMOKE, data_dir, tmp_path, new_files, job_id="job-math", seed=1)
    return dataclasses.replace(spec, **overrides)


def _prepare(out: Path, source: str, scale: str, extra_env: dict[str, str], *flags: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GROUNDWORK_MATH"))}
    env.update(extra_env)
    command = [sys.executable, "prepare.py", "--out", str(out), "--source", source, "--scale", scale, *flags]
    return subprocess.run(command, cwd=CODEBASE, env=env, capture_output=True, text=True, timeout=120)


def test_the_math_profiles_run_their_own_codebase():
    env = load_environment("grpo")
    assert env.codebase_dir.name == "baseline" and "math_grader.py" not in env.manifest.files.locked
    for name in ("math-smoke", "small", "full"):
        view = env.for_profile(name)
        assert view.codebase_dir.name == "math" and view.manifest.files.editable == ["train.py"]
        assert {"evaluate.py", "math_grader.py", "prepare.py"} <= set(view.manifest.files.hidden)
        assert "heldout.jsonl" not in view.manifest.data.training_files and "r1_zero" in view.manifest.goal
    assert env.profile("small").resources.gpus == env.profile("full").resources.gpus == 1


@pytest.mark.slow
def test_unmodified_baseline_is_scored_by_the_locked_evaluation(tmp_path, smoke_data):
    outcome = JobRunner(_job(tmp_path, smoke_data)).run()
    assert outcome.failure is None, outcome.detail
    metrics = outcome.metrics
    assert 0.0 <= outcome.metric <= 1.0 and metrics["accuracy"] == outcome.metric
    assert metrics["eval_problems"] == SMOKE_EVAL_PROBLEMS and metrics["task"] == "synthetic"
    assert metrics["eval_profile"] == "math-smoke" and metrics["eval_backend"] == "hf-generate"
    assert 0.0 <= metrics["format_rate"] <= 1.0 and metrics["format_rate"] >= metrics["accuracy"]
    assert 0.0 <= metrics["max_train_eval_accuracy"] <= 1.0 and metrics["steps"] == 3
    rewards = [p["reward_mean"] for p in outcome.curve if "reward_mean" in p]
    assert len(rewards) == 3 and all(0.0 <= r <= 1.0 for r in rewards)
    manifest = json.loads((smoke_data / "manifest.json").read_text())
    assert manifest["task"] == "synthetic" and 100_000 < manifest["parameters"] < 1_000_000
    assert (tmp_path / "job" / "work" / "out" / "policy" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_run_cannot_change_its_evaluation_settings_see_the_held_out_split_or_write_its_result(tmp_path, smoke_data):
    """train.py lists its data folder, moves the evaluation's profile in its own process,
    writes its own result and leaves shadow modules: the evaluation keeps its locked settings."""
    cheat = _edit(
        '    policy_dir = os.path.join(OUT_DIR, "policy")\n',
        '    policy_dir = os.path.join(OUT_DIR, "policy")\n'
        "    json.dump(sorted(os.listdir(DATA_DIR)), open(os.path.join(OUT_DIR, 'seen.json'), 'w'))\n"
        "    os.environ['GROUNDWORK_PROFILE'] = 'full'\n"
        "    json.dump({'accuracy': 1.0}, open(os.environ['GROUNDWORK_RESULT_PATH'], 'w'))\n"
        "    for name in ('json.py', 'sitecustomize.py', 'math.py', 'pathlib.py'):\n"
        "        open(name, 'w').write('raise RuntimeError(\"shadow module imported by the evaluation\")\\n')\n",
    )
    # The cheat needs a saved policy, not a trained one: the smallest rollouts do.
    for knob, value in (("group_size", 2), ("prompts_per_step", 2), ("max_new_tokens", 8), ("val_problems", 4)):
        cheat = re.sub(rf"^{knob} = \S+", f"{knob} = {value}", cheat, count=1, flags=re.M)
        assert f"\n{knob} = {value}  #" in cheat, knob
    outcome = JobRunner(_job(tmp_path, smoke_data, {"train.py": cheat})).run()
    assert outcome.failure is None, outcome.detail
    seen = json.loads((tmp_path / "job" / "work" / "out" / "seen.json").read_text())
    assert "train.jsonl" in seen and "config.json" in seen
    assert "heldout.jsonl" not in seen and "manifest.json" not in seen
    assert outcome.flags["training_wrote_result_file"] is True
    assert outcome.metrics["eval_problems"] == SMOKE_EVAL_PROBLEMS and outcome.metrics["eval_profile"] == "math-smoke"
    assert "shadow module" not in (tmp_path / "job" / "job.log").read_text()


@pytest.mark.parametrize("locked", ["evaluate.py", "math_grader.py"])
def test_a_patch_to_the_evaluation_or_its_grader_is_refused(tmp_path, smoke_data, locked):
    text = (CODEBASE / locked).read_text()
    cheat = text.replace("def ", "def _unused(): return 1.0\n\n\ndef ", 1)
    outcome = JobRunner(_job(tmp_path, smoke_data, {locked: cheat})).run()
    assert outcome.failure == FailureCategory.PATCH_FAILED
    assert locked in outcome.detail and "locked" in outcome.detail


def test_training_that_plants_a_grader_is_discarded_as_tampered(tmp_path, smoke_data):
    """The hidden grader is not in the work folder while training runs; one that training
    writes where it goes is caught before the evaluation starts."""
    cheat = _edit(
        "def main():\n",
        "def main():\n"
        "    assert not os.path.exists('math_grader.py') and not os.path.exists('evaluate.py')\n"
        "    open('math_grader.py', 'w').write('grade_r1_zero = lambda completion, gold: (True, True)\\n')\n"
        "    raise SystemExit(0)\n",
    )
    outcome = JobRunner(_job(tmp_path, smoke_data, {"train.py": cheat})).run()
    assert outcome.failure == FailureCategory.EVAL_TAMPERED and outcome.metric is None
    assert "math_grader.py" in outcome.detail


def test_a_run_that_changes_the_held_out_problems_is_caught(tmp_path, smoke_data):
    """Training rewrites heldout.jsonl in the whole data folder (next to its training view):
    under the sandbox the whole folder does not exist for training, and without one the
    evaluation refuses the folder."""
    data = tmp_path / "data" / smoke_data.name  # a private copy: this test spoils it
    shutil.copytree(smoke_data, data)
    forged = json.dumps({"problem": "Compute 1 + 1.", "answer": "2"})
    cheat = _edit(
        "def main():\n",
        "def main():\n"
        "    full = DATA_DIR[: -len('.training')]\n"
        f"    open(os.path.join(full, 'heldout.jsonl'), 'w').write({forged!r} + '\\n')\n"
        "    raise SystemExit(0)  # no policy needed: the evaluation checks its data first\n",
    )
    outcome = JobRunner(_job(tmp_path, data, {"train.py": cheat})).run()
    assert outcome.failure == FailureCategory.CRASHED and outcome.metric is None
    assert "does not match its manifest" in outcome.detail or "No such file or directory" in outcome.detail
    assert (data / "heldout.jsonl").read_text() == (smoke_data / "heldout.jsonl").read_text() or (
        "does not match its manifest" in outcome.detail
    )


def test_a_policy_with_another_architecture_is_refused(tmp_path, smoke_data):
    """The locked evaluation, run by itself on a saved policy whose config is not the
    starting model's (a wider MLP): no result, and the differing key is named."""
    work = tmp_path / "work"
    shutil.copytree(CODEBASE, work)
    policy = work / "out" / "policy"
    policy.mkdir(parents=True)
    shutil.copy(smoke_data / "model.safetensors", policy)
    config = json.loads((smoke_data / "config.json").read_text())
    (policy / "config.json").write_text(json.dumps({**config, "intermediate_size": 2 * config["intermediate_size"]}))
    env = {**os.environ, "GROUNDWORK_DATA_DIR": str(smoke_data), "GROUNDWORK_PROFILE": "math-smoke"}
    env.update({"GROUNDWORK_OUT_DIR": str(work / "out"), "GROUNDWORK_RESULT_PATH": str(work / "result.json")})
    proc = subprocess.run(
        [sys.executable, "evaluate.py"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and not (work / "result.json").exists()
    assert "intermediate_size" in proc.stderr and "architecture is fixed" in proc.stderr


@pytest.mark.parametrize(
    "hub_env",
    [
        {"HF_HUB_OFFLINE": "1"},
        {"HF_ENDPOINT": "http://127.0.0.1:9"},  # a closed port: the real request fails
    ],
    ids=["offline", "closed-port"],
)
def test_full_stops_offline_naming_what_is_missing_and_the_fix(tmp_path, hub_env):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_PROGRESS_BARS": "1", **hub_env}
    proc = _prepare(tmp_path / "full", "math", "full", env)
    assert proc.returncode != 0
    err = proc.stderr
    assert "Qwen/Qwen2.5-Math-1.5B" in err
    assert "HuggingFaceH4/MATH-500/test.jsonl" in err and "DigitalLearningGmbH/MATH-lighteval" in err
    assert "groundwork env prepare grpo --profile full" in err and "GROUNDWORK_MATH_MODEL_PATH" in err
    assert not (tmp_path / "full").exists()  # nothing half-built left behind


def test_small_without_local_weights_falls_back_to_the_synthetic_task(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = _prepare(tmp_path / "small", "math-or-synthetic", "small", env, "--plan")
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["task"] == "synthetic" and decision["scale"] == "small"
    assert "Qwen/Qwen2.5-Math-1.5B" in decision["reason"]
    assert "groundwork env prepare grpo --profile small" in decision["reason"]
    assert not (tmp_path / "small").exists()

    weights = tmp_path / "weights"  # a local folder of weights: MATH is chosen (nothing trained here)
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    (weights / "model.safetensors").write_bytes(b"")
    proc = _prepare(
        tmp_path / "small", "math-or-synthetic", "small", {**env, "GROUNDWORK_MATH_MODEL_PATH": str(weights)}, "--plan"
    )
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["task"] == "math" and decision["model_path"] == str(weights)
