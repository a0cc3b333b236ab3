"""Planted hacks against the real built-in environments, each caught: editing the evaluation,
attending to future bytes, changing the evaluation data or settings, a result file written
by training, a metric outside the plausible range; and training never sees the evaluation's
split. Jobs go through the real job runner (real subprocesses, real locked evaluation) on
the nanogpt smoke profile."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from conftest import patched_job
from groundwork.environments import load_environment
from groundwork.execution import sandbox
from groundwork.execution.runner import JobRunner
from groundwork.patch.codebase import file_sha256
from groundwork.protocols import JobSpec
from groundwork.records import FailureCategory

NANOGPT = load_environment("nanogpt")
TRAIN = (NANOGPT.codebase_dir / "train.py").read_text()
SMOKE_EVAL_TOKENS = 8192  # the smoke profile's setting, locked in nanogpt's evaluate.py


@pytest.fixture(scope="module")
def nanogpt_data() -> Path:
    return NANOGPT.prepare(NANOGPT.profile("smoke"), quiet=True)


def _edit(old: str, new: str, text: str = TRAIN) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _job(tmp_path: Path, data_dir: Path, new_files: dict[str, str] | None = None, **overrides) -> JobSpec:
    """A job of nanogpt's smoke profile whose patch turns the baseline's files into `new_files`."""
    spec = patched_job(
        NANOGPT.for_profile("smoke"), data_dir, tmp_path, new_files, job_id="job-hack", seed=1, time_budget_s=2.0
    )
    # Short deadlines around a 2 s training budget: every planted hack is caught quickly.
    return dataclasses.replace(spec, **{"grace_s": 30.0, "eval_timeout_s": 90.0, **overrides})


def _log(tmp_path: Path) -> str:
    return (tmp_path / "job" / "job.log").read_text()


@pytest.mark.slow
def test_training_sees_only_the_training_split_and_the_locked_settings_hold(tmp_path, nanogpt_data):
    """The unmodified baseline is valid; training found only train.bin in its data folder;
    the evaluation scored the profile's locked number of bytes."""
    spy = _edit(
        "    os.makedirs(OUT_DIR, exist_ok=True)\n",
        "    os.makedirs(OUT_DIR, exist_ok=True)\n"
        "    json.dump(sorted(os.listdir(DATA_DIR)), open(os.path.join(OUT_DIR, 'seen.json'), 'w'))\n",
    )
    outcome = JobRunner(_job(tmp_path, nanogpt_data, {"train.py": spy})).run()
    assert outcome.failure is None, outcome.detail
    assert json.loads((tmp_path / "job" / "work" / "out" / "seen.json").read_text()) == ["train.bin"]
    assert outcome.metrics["eval_tokens"] == SMOKE_EVAL_TOKENS and outcome.metrics["eval_profile"] == "smoke"
    assert (nanogpt_data / "val.bin").is_file()  # the evaluation still had it


def test_a_patch_to_the_evaluation_is_refused(tmp_path, nanogpt_data):
    evaluate = (NANOGPT.codebase_dir / "evaluate.py").read_text()
    cheat = _edit('"val_bpb": val_bpb,', '"val_bpb": 0.31,', evaluate)
    outcome = JobRunner(_job(tmp_path, nanogpt_data, {"evaluate.py": cheat})).run()
    assert outcome.failure == FailureCategory.PATCH_FAILED
    assert "evaluate.py" in outcome.detail and "locked" in outcome.detail


@pytest.mark.slow
def test_training_that_rewrites_a_locked_file_is_discarded_as_tampered(tmp_path, nanogpt_data):
    """The hidden evaluation is not there while training runs (it comes back just before the
    evaluation); a visible locked file that training rewrites is caught by its hash."""
    codebase = tmp_path / "codebase"
    shutil.copytree(NANOGPT.codebase_dir, codebase)
    (codebase / "helpers.py").write_text("SCALE = 1.0\n")  # locked, not hidden (like grpo's model.py)
    cheat = _edit(
        "    train_seconds = time.time() - t0\n",
        "    train_seconds = time.time() - t0\n"
        "    assert not os.path.exists('evaluate.py')\n"
        "    open('helpers.py', 'w').write('SCALE = 0.1\\n')\n",
    )
    spec = _job(tmp_path, nanogpt_data, {"train.py": cheat})
    spec = dataclasses.replace(
        spec,
        baseline_dir=str(codebase),
        locked_hashes={**spec.locked_hashes, "helpers.py": file_sha256(codebase / "helpers.py")},
    )
    outcome = JobRunner(spec).run()
    assert outcome.failure == FailureCategory.EVAL_TAMPERED and outcome.metric is None, outcome.detail
    assert "helpers.py" in outcome.detail and outcome.flags["eval_hash_ok"] is False


@pytest.mark.parametrize(
    "attention",
    [
        "is_causal=False",  # plain bidirectional attention: sees every later byte
        "is_causal=(B == 1)",  # causal only on single sequences, to slip past a one-row probe
    ],
)
@pytest.mark.slow
def test_a_model_that_attends_to_future_bytes_is_invalid(tmp_path, nanogpt_data, attention):
    cheat = _edit("is_causal=True", attention)
    outcome = JobRunner(_job(tmp_path, nanogpt_data, {"train.py": cheat})).run()
    assert outcome.failure == FailureCategory.CRASHED and outcome.metric is None
    assert "not causal" in outcome.detail
    assert not (tmp_path / "job" / "work" / "result.json").exists()


@pytest.mark.slow
def test_a_run_cannot_change_its_evaluation_settings_or_result(tmp_path, nanogpt_data):
    """train.py writes its own result.json, changes the evaluation's environment in its own
    process, and leaves modules in the working folder that would take over the evaluation's
    imports: the real evaluation still runs with its locked settings and scores the model."""
    cheat = _edit(
        "    train_seconds = time.time() - t0\n",
        "    train_seconds = time.time() - t0\n"
        "    os.environ['GROUNDWORK_PROFILE'] = 'tiny'\n"
        "    json.dump({'val_bpb': 0.31}, open(os.environ['GROUNDWORK_RESULT_PATH'], 'w'))\n"
        "    for name in ('json.py', 'sitecustomize.py', 'math.py', 'pathlib.py'):\n"
        "        open(name, 'w').write('raise RuntimeError(\"shadow module imported by the evaluation\")\\n')\n",
    )
    outcome = JobRunner(_job(tmp_path, nanogpt_data, {"train.py": cheat})).run()
    assert outcome.failure is None, outcome.detail
    assert outcome.flags["training_wrote_result_file"] is True
    assert outcome.metric != 0.31 and outcome.metric > 1.0  # seconds of training: far from 0.31
    assert outcome.metrics["eval_tokens"] == SMOKE_EVAL_TOKENS and outcome.metrics["eval_profile"] == "smoke"
    assert "shadow module" not in _log(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("sandbox_mode", ["off", "required"])
def test_a_run_that_changes_the_validation_data_is_caught(tmp_path, nanogpt_data, sandbox_mode):
    """The folder training gets has no val.bin, but the whole folder is easy to guess; a
    training run that rewrites val.bin there is stopped by the sandbox (where training sees
    only its training view: the full folder does not exist) or, without one, makes the
    evaluation refuse to score."""
    if sandbox_mode == "required" and not sandbox.probe().available:
        pytest.skip(f"no sandbox here: {sandbox.probe().detail}")
    data = tmp_path / "data" / nanogpt_data.name  # a private copy: this test spoils it
    shutil.copytree(nanogpt_data, data)
    cheat = _edit(
        "    train_seconds = time.time() - t0\n",
        "    train_seconds = time.time() - t0\n"
        "    full = DATA_DIR[: -len('.training')]\n"
        "    open(os.path.join(full, 'val.bin'), 'wb').write(b' ' * 100000)\n",
    )
    outcome = JobRunner(_job(tmp_path, data, {"train.py": cheat}, sandbox=sandbox_mode)).run()
    assert outcome.failure == FailureCategory.CRASHED and outcome.metric is None
    if sandbox_mode == "off":
        assert "validation data is not as prepared" in outcome.detail
    else:
        assert f"No such file or directory: '{data / 'val.bin'}'" in outcome.detail
        assert (data / "val.bin").read_bytes() == (nanogpt_data / "val.bin").read_bytes()


@pytest.mark.slow
def test_an_implausible_metric_is_flagged(tmp_path, nanogpt_data):
    """Weights initialised 1000x too large give logits so extreme that the loss leaves the
    plausible range: the job is discarded as implausible, with the value in the detail."""
    cheat = _edit("mean=0.0, std=0.02)", "mean=0.0, std=20.0)")
    cheat = _edit("learning_rate = 2e-3", "learning_rate = 0.0", cheat)
    outcome = JobRunner(_job(tmp_path, nanogpt_data, {"train.py": cheat})).run()
    assert outcome.failure == FailureCategory.METRIC_IMPLAUSIBLE, outcome.detail
    assert outcome.flags["in_plausible_range"] is False and "val_bpb" in outcome.detail


def test_training_view_holds_only_the_named_files(toy_env):
    """The manifest's data.training_files become a folder of hard links next to the prepared
    one; it is rebuilt when the prepared files change."""
    manifest = toy_env / "environment.toml"
    manifest.write_text(manifest.read_text() + '\n[data]\ntraining_files = ["train.txt"]\n')
    env = load_environment(toy_env)
    data = toy_env.parent / "data" / "toy"
    data.mkdir(parents=True)
    (data / "train.txt").write_text("train")
    (data / "heldout.txt").write_text("secret")
    folders = env.data_env(data)
    view = Path(folders["GROUNDWORK_TRAIN_DATA_DIR"])
    assert Path(folders["GROUNDWORK_DATA_DIR"]) == data.resolve() and view != data.resolve()
    assert sorted(p.name for p in view.iterdir()) == ["train.txt"]
    assert (view / "train.txt").read_text() == "train"
    (data / "train.txt").unlink()
    (data / "train.txt").write_text("train, prepared again")
    assert (Path(env.data_env(data)["GROUNDWORK_TRAIN_DATA_DIR"]) / "train.txt").read_text() == "train, prepared again"
    (data / "train.txt").unlink()
    with pytest.raises(RuntimeError, match="train.txt"):
        env.data_env(data)


# ---- gains too large to trust, judged with the floor's own uncertainty ------------------


def _gain_flags(gain: float, sd: float, seeds: int | None) -> list[str]:
    from groundwork.analysis.integrity import integrity_flags
    from groundwork.records import Result

    base = Result(idea_id="baseline", metric=4.0)
    better = Result(idea_id="e1-01", metric=4.0 - gain)
    return integrity_flags(better, "val_bpb", "minimize", base, noise_std=sd, noise_seeds=seeds)


def test_an_ordinary_gain_over_a_two_seed_floor_is_not_flagged():
    """0.12 nats is 18 sd of a floor whose sd (0.0067) came from 2 seeds: an sd from 2
    seeds is compatible with one 30 times larger, so the gain is no evidence of a hack."""
    assert _gain_flags(0.12, 0.0067, seeds=2) == []
    assert _gain_flags(0.12, 0.0067, seeds=None) == []  # unknown: as few as a floor can have


def test_a_large_gain_over_a_well_measured_floor_is_flagged_with_the_reason():
    (flag,) = _gain_flags(0.12, 0.0067, seeds=30)
    assert "18 baseline sd (sd 0.0067 over 30 seeds)" in flag and "97.5% upper bound" in flag
    assert _gain_flags(3.0, 0.0067, seeds=2)  # a gain far past even the widest bound still is
    from groundwork.analysis.integrity import sd_upper_bound

    assert sd_upper_bound(1.0, 2) > 20 and 1.0 < sd_upper_bound(1.0, 30) < 1.5
