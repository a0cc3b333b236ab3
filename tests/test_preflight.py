"""Pre-flight: an idea's patched codebase first runs at a short profile inside its job; a
failure there ends the job (stage "preflight") before the full training ever starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import patched_job
from groundwork.environments import load_environment
from groundwork.environments.manifest import ManifestError, parse_manifest
from groundwork.execution.runner import JobRunner
from groundwork.records import FailureCategory

# Crashes only at the pre-flight profile (TOY_STAGE=pre), so a pass of the full phase would show.
CRASH_AT_PREFLIGHT = (
    "import os, sys\n"
    "if os.environ.get('TOY_STAGE') == 'pre':\n"
    "    sys.exit('boom: shape mismatch')\n"
    "exec(open('train_real.py').read())\n"
)


def _with_preflight(toy_env: Path, extra: str = "") -> Path:
    manifest = toy_env / "environment.toml"
    text = manifest.read_text().replace("[run]\n", '[run]\npreflight = "pre"\n', 1)
    manifest.write_text(
        text
        + '\n[profiles.pre]\ntime_budget_s = 3\n\n[profiles.pre.env]\nTOY_SLEEP_S = "0"\nTOY_STAGE = "pre"\n'
        + extra
    )
    return toy_env


def _job(toy_env: Path, tmp_path: Path, files: dict[str, str], preflight: bool = True):
    env = load_environment(toy_env)
    pre = env.profile(env.manifest.preflight_profile("quick")) if preflight else None
    real = (env.codebase_dir / "train.py").read_text()
    files = {"train_real.py": real, **files}
    spec = patched_job(env, tmp_path / "data", tmp_path, files, job_id="j", seed=1, sandbox="off", preflight=pre)
    return spec, JobRunner(spec).run()


def test_a_diff_that_crashes_at_preflight_never_runs_its_full_training(toy_env, tmp_path):
    spec, outcome = _job(_with_preflight(toy_env), tmp_path, {"train.py": CRASH_AT_PREFLIGHT})
    assert outcome.failure == FailureCategory.CRASHED, outcome.detail
    assert outcome.flags["stage"] == "preflight"
    assert outcome.flags["preflight"]["passed"] is False
    assert "pre-flight (profile pre) failed" in outcome.detail and "boom: shape mismatch" in outcome.detail
    assert "train_seconds" not in outcome.flags  # the real training phase never started
    log = (Path(spec.job_dir) / "job.log").read_text()
    assert "boom: shape mismatch" in log  # repair reads the job's log
    assert "===== groundwork: train (budget 3s" in log  # only the pre-flight's training header...
    assert log.count("===== groundwork: train (") == 1  # ...the real one is absent


def test_a_passing_preflight_runs_the_real_job(toy_env, tmp_path):
    spec, outcome = _job(_with_preflight(toy_env), tmp_path, {"train.py": "exec(open('train_real.py').read())\n"})
    assert outcome.failure is None, outcome.detail
    assert outcome.flags["preflight"]["passed"] is True and outcome.flags["preflight"]["seconds"] > 0
    assert "stage" not in outcome.flags and outcome.flags["train_seconds"] > 0
    assert outcome.metric is not None
    assert (Path(spec.job_dir) / "job.log").read_text().count("===== groundwork: train (") == 2


def test_without_preflight_the_crash_only_at_preflight_does_not_happen(toy_env, tmp_path):
    _, outcome = _job(_with_preflight(toy_env), tmp_path, {"train.py": CRASH_AT_PREFLIGHT}, preflight=False)
    assert outcome.failure is None, outcome.detail
    assert "preflight" not in outcome.flags


def test_manifest_preflight_naming_no_profile_is_an_error(toy_env):
    manifest = toy_env / "environment.toml"
    manifest.write_text(manifest.read_text().replace("[run]\n", '[run]\npreflight = "smok"\n', 1))
    with pytest.raises(ManifestError, match=r"run.preflight = 'smok'.*is not a profile"):
        parse_manifest(manifest)


def test_manifest_preflight_of_another_codebase_is_an_error(toy_env):
    (toy_env / "other").mkdir()
    for name in ("train.py", "evaluate.py"):
        (toy_env / "other" / name).write_text((toy_env / "baseline" / name).read_text())
    _with_preflight(toy_env, '\n[profiles.big]\ntime_budget_s = 3\ncodebase = "other"\n')
    with pytest.raises(ManifestError, match=r"profile 'big' runs codebase 'other' but 'pre' runs 'baseline'"):
        parse_manifest(toy_env / "environment.toml")


def test_a_profile_turns_preflight_off_and_builtins_name_theirs():
    assert load_environment("nanogpt").manifest.preflight_profile("small") == "smoke"
    grpo = load_environment("grpo").manifest
    assert grpo.preflight_profile("small") == "math-smoke" and grpo.preflight_profile("tiny") is None


def test_the_funnel_counts_preflight_passes():
    from groundwork.analysis.summary import _funnel
    from groundwork.records import Result

    stopped = {"stage": "preflight", "preflight": {"passed": False, "seconds": 1.0}}
    results = [
        Result(idea_id="a", failure=FailureCategory.PATCH_FAILED),
        Result(idea_id="b", failure=FailureCategory.NO_METRIC, flags=stopped),  # no metric at pre-flight: never ran
        Result(idea_id="c", failure=FailureCategory.CRASHED, flags={"preflight": {"passed": True, "seconds": 1.0}}),
        Result(idea_id="d", metric=1.0),  # pre-flight off
    ]
    f = _funnel(results)
    assert (f.proposed, f.applied, f.preflight_passed, f.ran, f.valid) == (4, 3, 2, 1, 1)


# Writes what each stage's training sees of the GPUs beside the job folder.
SEES_GPUS = (
    "import os, pathlib\n"
    "seen = pathlib.Path(os.environ['TOY_SEEN_DIR']) / (os.environ.get('TOY_STAGE', 'full') + '.txt')\n"
    "seen.write_text(repr(os.environ.get('CUDA_VISIBLE_DEVICES')) + ' ' + os.environ.get('GROUNDWORK_DEVICE', '-'))\n"
    "exec(open('train_real.py').read())\n"
)


@pytest.mark.parametrize("preflight_gpus", [0, 1])
def test_a_cpu_preflight_of_a_gpu_job_sees_no_gpu(toy_env, tmp_path, monkeypatch, preflight_gpus):
    """The job's profile asks for a GPU; the pre-flight's asks for none (so it runs with no GPU
    visible and its own device setting) or for one (so it shares the job's)."""
    seen = tmp_path / "seen"
    seen.mkdir()
    monkeypatch.setenv("TOY_SEEN_DIR", str(seen))
    extra = f"\n[profiles.pre.resources]\ngpus = {preflight_gpus}\n" if preflight_gpus else ""
    toy = _with_preflight(toy_env, extra)
    manifest = toy / "environment.toml"
    text = manifest.read_text().replace('pass_env = ["TOY_LEDGER"]', 'pass_env = ["TOY_SEEN_DIR"]', 1)
    text = text.replace("\n[profiles.quick.env]\n", "\n[profiles.quick.resources]\ngpus = 1\n\n[profiles.quick.env]\n")
    text = text.replace("\n[profiles.quick.env]\n", '\n[profiles.quick.env]\nGROUNDWORK_DEVICE = "cuda"\n')
    manifest.write_text(text.replace("\n[profiles.pre.env]\n", '\n[profiles.pre.env]\nGROUNDWORK_DEVICE = "cpu"\n'))
    env = load_environment(toy)
    assert env.profile("quick").resources.gpus == 1
    real = (env.codebase_dir / "train.py").read_text()
    files = {"train_real.py": real, "train.py": SEES_GPUS}
    pre = env.profile("pre")
    spec = patched_job(env, tmp_path / "data", tmp_path, files, job_id="j", seed=1, sandbox="off", preflight=pre,
                       gpu_ids=[3])  # fmt: skip
    outcome = JobRunner(spec).run()
    assert outcome.failure is None, outcome.detail
    assert (seen / "full.txt").read_text() == "'3' cuda"
    if preflight_gpus:
        assert (seen / "pre.txt").read_text() == "'3' cpu" and outcome.flags["preflight"]["gpus"] == 1
    else:
        assert (seen / "pre.txt").read_text() == "'' cpu" and outcome.flags["preflight"]["gpus"] == 0
