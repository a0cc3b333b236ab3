"""Planted hacks against the evaluation's result, from inside the process that imports the
edited train.py (nanogpt's locked evaluation builds the model through it): rewriting the
result after it was written (atexit, a timer signal, a thread that outlives main, a forked
child), swapping the functions that serialise it, faking a message on the result channel,
start-up hooks left in the work folder; and a result whose metric disagrees with the
values logged beside it. Real job runner, real subprocesses, nanogpt's smoke profile."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import patched_job
from groundwork.analysis.integrity import integrity_flags
from groundwork.environments import load_environment
from groundwork.execution import result_channel, sandbox
from groundwork.execution.metric_checks import CheckFailed, check_relations
from groundwork.execution.runner import JobRunner
from groundwork.protocols import JobSpec
from groundwork.records import FailureCategory, Result

NANOGPT = load_environment("nanogpt")
TRAIN = (NANOGPT.codebase_dir / "train.py").read_text()
IMPORTS_END = "import torch.nn.functional as F\n"
FAKE_BPB = 0.9

# Shared by the hacks: true only inside the evaluation's process, and a rewrite of the
# result file that keeps everything but the metric (as a hostile probe did).
PRELUDE = f"""
IN_EVALUATION = os.path.basename(sys.argv[0]) == "evaluate.py"
RESULT_PATH = os.environ.get("GROUNDWORK_RESULT_PATH", "result.json")


def _rewrite_result():
    try:
        with open(RESULT_PATH) as fh:
            real = json.load(fh)
    except (OSError, ValueError):
        real = {{}}
    real["val_bpb"] = {FAKE_BPB}
    real.pop("checks", None)
    with open(RESULT_PATH, "w") as fh:
        json.dump(real, fh)
"""


@pytest.fixture(scope="module")
def nanogpt_data() -> Path:
    return NANOGPT.prepare(NANOGPT.profile("smoke"), quiet=True)


def _hacked(hack: str) -> str:
    """train.py with PRELUDE and `hack` run at import, right after its imports."""
    assert IMPORTS_END in TRAIN
    return TRAIN.replace(IMPORTS_END, IMPORTS_END + PRELUDE + hack, 1)


def _job(tmp_path: Path, data_dir: Path, train: str, **overrides) -> JobSpec:
    spec = patched_job(
        NANOGPT.for_profile("smoke"),
        data_dir,
        tmp_path,
        {"train.py": train},
        job_id="job-hack",
        seed=1,
        time_budget_s=2.0,
    )
    return dataclasses.replace(spec, **{"grace_s": 30.0, "eval_timeout_s": 90.0, "sandbox": "off", **overrides})


def _log(tmp_path: Path) -> str:
    return (tmp_path / "job" / "job.log").read_text()


def _assert_honest(outcome) -> None:
    """The job kept the metric the evaluation computed, not the planted one."""
    assert outcome.failure is None, outcome.detail
    assert outcome.metric != FAKE_BPB
    assert math.isclose(outcome.metric, outcome.metrics["val_loss"] / math.log(2), rel_tol=1e-9)
    assert outcome.flags["result_channel"] == "pipe"


REWRITES_AFTER_THE_RESULT = {
    "atexit": """
if IN_EVALUATION:
    import atexit
    atexit.register(_rewrite_result)
""",
    "sigalrm": """
if IN_EVALUATION:
    import signal

    def _on_alarm(signum, frame):
        if os.path.exists(RESULT_PATH):
            _rewrite_result()
            signal.setitimer(signal.ITIMER_REAL, 0)

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
""",
    "thread-outliving-main": """
if IN_EVALUATION:
    import threading

    def _wait_then_rewrite():
        main = threading.main_thread()
        while main.is_alive() or not os.path.exists(RESULT_PATH):
            time.sleep(0.001)
            if not main.is_alive() and not os.path.exists(RESULT_PATH):
                return
        _rewrite_result()

    threading.Thread(target=_wait_then_rewrite, daemon=False).start()
""",
    "forked-child": """
if IN_EVALUATION:
    _parent = os.getpid()
    if os.fork() == 0:  # the child leaves the evaluation's process group and outlives it
        os.setsid()
        _give_up = time.time() + 15
        while os.getppid() == _parent and time.time() < _give_up:
            time.sleep(0.001)
        if time.time() < _give_up:
            _rewrite_result()
        os._exit(0)
""",
    "monkeypatched-serialisers": f"""
if IN_EVALUATION:
    import builtins

    _json_dump, _open = json.dump, builtins.open

    def _fake(obj):
        return dict(obj, val_bpb={FAKE_BPB}) if isinstance(obj, dict) and "val_bpb" in obj else obj

    json.dump = lambda obj, fp, **kw: _json_dump(_fake(obj), fp, **kw)
    _dumps = json.dumps
    json.dumps = lambda obj, **kw: _dumps(_fake(obj), **kw)

    def _spying_open(file, mode="r", *args, **kwargs):
        if "w" in mode and "result" in str(file):
            os.environ["GROUNDWORK_HACK_OPENED"] = str(file)
        return _open(file, mode, *args, **kwargs)

    builtins.open = _spying_open
    # The encoder's internals, the pipe write and the constant behind bits per byte as well.
    _encode = json.JSONEncoder.encode
    json.JSONEncoder.encode = lambda self, obj: _encode(self, _fake(obj))
    _iterencode = json.JSONEncoder.iterencode
    json.JSONEncoder.iterencode = lambda self, obj, *a, **k: _iterencode(self, _fake(obj), *a, **k)
    _write = os.write
    os.write = lambda fd, data: _write(fd, data.replace(b'"val_bpb": ', b'"val_bpb": {FAKE_BPB}, "x": '))
    _log = math.log
    math.log = lambda x, *base: 2.0 if x == 2 and not base else _log(x, *base)
""",
}


@pytest.mark.slow
@pytest.mark.parametrize("hack", list(REWRITES_AFTER_THE_RESULT))
def test_a_rewrite_of_the_result_from_inside_the_evaluation_does_not_count(tmp_path, nanogpt_data, hack):
    """Each hack changes the result after (or while) the evaluation writes it; the result
    goes through the channel, sent with functions bound before train.py was imported, and
    the process ends the moment it is sent: the honest metric is kept."""
    train = _hacked(REWRITES_AFTER_THE_RESULT[hack])
    outcome = JobRunner(_job(tmp_path, nanogpt_data, train)).run()
    _assert_honest(outcome)
    assert outcome.flags["metric_checks"] == 1


@pytest.mark.parametrize(
    "hack",
    [
        # A fake result on the channel, consistent with its own checks.
        """
if IN_EVALUATION and "GROUNDWORK_RESULT_FD" in os.environ:
    _fake = {"val_bpb": 0.9, "val_loss": 0.9 * math.log(2), "eval_tokens": 8192, "eval_profile": "smoke"}
    os.write(int(os.environ["GROUNDWORK_RESULT_FD"]), (json.dumps(_fake) + "\\n").encode())
""",
        # The channel swapped for /dev/null, a fake result kept back for the real pipe later.
        """
if IN_EVALUATION and "GROUNDWORK_RESULT_FD" in os.environ:
    _fd = int(os.environ["GROUNDWORK_RESULT_FD"])
    _real_pipe = os.dup(_fd)
    _null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(_null, _fd)
""",
        # A child that leaves the evaluation's process group with the pipe and sends a second
        # result once the evaluation has exited.
        """
if IN_EVALUATION and "GROUNDWORK_RESULT_FD" in os.environ:
    _parent, _fd = os.getpid(), int(os.environ["GROUNDWORK_RESULT_FD"])
    if os.fork() == 0:
        os.setsid()
        _give_up = time.time() + 15
        while os.getppid() == _parent and time.time() < _give_up:
            time.sleep(0.001)
        os.write(_fd, b'{"val_bpb": 0.9}\\n')
        time.sleep(8)  # and keeps the pipe open past the runner's wait
        os._exit(0)
""",
    ],
    ids=["fake-message", "channel-replaced", "forked-child-writes-late"],
)
@pytest.mark.slow
def test_a_message_on_the_result_channel_from_train_py_is_tampering(tmp_path, nanogpt_data, hack, monkeypatch):
    # The late child writes within milliseconds and holds the pipe for 8 s: a 1 s drain still
    # sees both, without waiting out the default 5 s.
    monkeypatch.setattr(result_channel, "DRAIN_S", 1.0)
    outcome = JobRunner(_job(tmp_path, nanogpt_data, _hacked(hack))).run()
    assert outcome.failure == FailureCategory.EVAL_TAMPERED and outcome.metric is None, (outcome.metric, outcome.detail)
    assert "result channel" in outcome.detail
    assert outcome.flags["result_channel"] == "tampered"
    assert any("result channel" in flag for flag in integrity_flags(_result(outcome), "val_bpb", "minimize"))


STARTUP_HOOK = (
    "import atexit, json, os, sys\n"
    "print('STARTUP HOOK RAN in', sys.argv[0], flush=True)\n"
    "def _rewrite():\n"
    "    path = os.environ.get('GROUNDWORK_RESULT_PATH', 'result.json')\n"
    "    json.dump({'val_bpb': 0.9}, open(path, 'w'))\n"
    "atexit.register(_rewrite)\n"
)


@pytest.mark.slow
def test_start_up_hooks_that_training_leaves_are_not_run_by_the_evaluation(tmp_path, nanogpt_data, monkeypatch):
    """Training writes sitecustomize.py and a .pth file into the work folder and into a
    folder a relative PYTHONPATH entry names (it resolves inside the work folder): the
    evaluation runs none of them."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, ["hooks", os.environ.get("PYTHONPATH")])))
    hack = f"""
if not IN_EVALUATION:
    for _folder in (".", "hooks"):
        os.makedirs(_folder, exist_ok=True)
        with open(os.path.join(_folder, "sitecustomize.py"), "w") as fh:
            fh.write({STARTUP_HOOK!r})
        with open(os.path.join(_folder, "hook.pth"), "w") as fh:
            fh.write("import sitecustomize\\n")
"""
    outcome = JobRunner(_job(tmp_path, nanogpt_data, _hacked(hack))).run()
    evaluation_log = _log(tmp_path).split("evaluate (locked)")[1]
    assert "STARTUP HOOK RAN" not in evaluation_log
    _assert_honest(outcome)


def test_a_pth_file_in_the_user_site_folder_is_not_run_by_the_evaluation(tmp_path, toy_env):
    """An interpreter outside a virtual environment runs the *.pth files of the user's site
    folder at start-up, and training can write one there when that folder is writable
    (PYTHONUSERBASE or HOME in the work folder): the evaluation runs it not. The toy
    environment's evaluation writes a result file, which the hook would rewrite at exit."""
    base = getattr(sys, "_base_executable", sys.executable)
    probe = subprocess.run(
        [base, "-c", "import site, sys; print(bool(site.ENABLE_USER_SITE) and sys.prefix == sys.base_prefix)"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONNOUSERSITE"},
    )
    if probe.stdout.strip() != "True":
        pytest.skip(f"{base} runs no user site folder here")
    env = load_environment(toy_env)
    train = (
        (env.codebase_dir / "train.py")
        .read_text()
        .replace(
            "    time.sleep(sleep_s)\n",
            "    time.sleep(sleep_s)\n"
            "    import site\n"
            "    os.makedirs(site.getusersitepackages(), exist_ok=True)\n"
            "    with open(os.path.join(site.getusersitepackages(), 'hook.pth'), 'w') as fh:\n"
            # (a .pth line runs in a function's scope: the lambda finds no module it imported)
            '        fh.write(\'import atexit; atexit.register(lambda: __import__("json").dump({"loss": 0.0}, \'\n'
            '                 \'open(__import__("os").environ["GROUNDWORK_RESULT_PATH"], "w")))\\n\')\n',
            1,
        )
    )
    spec = patched_job(env, tmp_path / "data", tmp_path, {"train.py": train}, job_id="job-pth", seed=1)
    user_base = str(tmp_path / "job" / "work" / ".userbase")
    spec = dataclasses.replace(spec, eval_command=[base, "evaluate.py"], env={**spec.env, "PYTHONUSERBASE": user_base})
    outcome = JobRunner(spec).run()
    assert list(Path(user_base).rglob("hook.pth")), "training did not plant the hook"
    assert outcome.failure is None, outcome.detail
    assert math.isclose(outcome.metric, 10 * (0.1 - 0.3) ** 2 + 0.01 * (4 - 8) ** 2 + 1.0)


@pytest.mark.slow
def test_training_sees_no_hidden_file_and_cannot_plant_one(tmp_path, nanogpt_data):
    """The hidden evaluation and data preparation are not in the work folder while training
    runs; a file training writes where one goes makes the job tampered."""
    spy = """
if not IN_EVALUATION:
    with open("seen.txt", "w") as fh:
        fh.write(" ".join(sorted(os.listdir("."))))
"""
    outcome = JobRunner(_job(tmp_path, nanogpt_data, _hacked(spy))).run()
    seen = (tmp_path / "job" / "work" / "seen.txt").read_text().split()
    assert "train.py" in seen and "evaluate.py" not in seen and "prepare.py" not in seen
    _assert_honest(outcome)

    plant = """
if not IN_EVALUATION:
    with open("evaluate.py", "w") as fh:
        fh.write("import json, os\\njson.dump({'val_bpb': 0.9}, open(os.environ['GROUNDWORK_RESULT_PATH'], 'w'))\\n")
"""
    outcome = JobRunner(_job(tmp_path / "plant", nanogpt_data, _hacked(plant))).run()
    assert outcome.failure == FailureCategory.EVAL_TAMPERED and "evaluate.py" in outcome.detail


@pytest.mark.slow
def test_the_result_channel_survives_the_sandbox(tmp_path, nanogpt_data):
    if not sandbox.probe().available:
        pytest.skip(f"no sandbox here: {sandbox.probe().detail}")
    hack = REWRITES_AFTER_THE_RESULT["atexit"]
    outcome = JobRunner(_job(tmp_path, nanogpt_data, _hacked(hack), sandbox="required")).run()
    assert outcome.flags["sandbox"] == "bwrap"
    _assert_honest(outcome)


def _result(outcome) -> Result:
    return Result(
        job_id=outcome.job_id,
        idea_id="idea",
        failure=outcome.failure,
        metric=outcome.metric,
        metrics=outcome.metrics,
        detail=outcome.detail,
        flags=outcome.flags,
    )


def test_a_file_result_whose_metric_disagrees_with_its_checks_is_tampering(tmp_path, toy_env):
    """A file result (the older contract) that states a relation its numbers break is
    refused, with both numbers in the reason, and shows in the integrity flags."""
    (toy_env / "baseline" / "evaluate.py").write_text(
        "import json, os\n"
        "result = {'loss': 0.5, 'correct': 3, 'total': 4,\n"
        "          'checks': [{'value': 'loss', 'product_of': {'correct': 1, 'total': -1}}]}\n"
        "json.dump(result, open(os.environ['GROUNDWORK_RESULT_PATH'], 'w'))\n"
    )
    env = load_environment(toy_env)
    outcome = JobRunner(patched_job(env, tmp_path / "data", tmp_path, job_id="job-check", seed=1)).run()
    assert outcome.failure == FailureCategory.EVAL_TAMPERED and outcome.metric is None
    assert "loss = 0.5" in outcome.detail and "0.75" in outcome.detail
    assert outcome.flags["result_channel"] == "file" and outcome.flags["metric_checks"] == "failed"
    flags = integrity_flags(_result(outcome), "loss", "minimize")
    assert any("0.75" in flag for flag in flags), flags


def test_relations_hold_or_name_both_numbers():
    ok = {
        "val_bpb": 2 / math.log(2),
        "val_loss": 2.0,
        "checks": [{"value": "val_bpb", "factor": 1 / math.log(2), "product_of": {"val_loss": 1}}],
    }
    assert check_relations(ok) == 1
    assert check_relations({"loss": 1.0}) == 0
    # nanogpt's token profiles: val_bpb is computed from the summed loss, not from val_loss.
    total_nll, tokens, scored_bytes = 31234.5678, 8192, 30011
    tokens_result = {
        "val_loss": total_nll / tokens,
        "val_bpb": total_nll / math.log(2) / scored_bytes,
        "eval_tokens": tokens,
        "eval_bytes": scored_bytes,
        "checks": [
            {
                "value": "val_bpb",
                "factor": 1 / math.log(2),
                "product_of": {"val_loss": 1, "eval_tokens": 1, "eval_bytes": -1},
            }
        ],
    }
    assert check_relations(tokens_result) == 1
    with pytest.raises(CheckFailed, match=r"val_bpb = 0\.9.*2\.885"):
        check_relations({**ok, "val_bpb": 0.9})
    with pytest.raises(CheckFailed, match="not a finite number"):
        check_relations({**ok, "val_loss": None})
    with pytest.raises(CheckFailed, match="divides by 'n' = 0"):
        check_relations({"a": 1.0, "n": 0, "checks": [{"value": "a", "product_of": {"n": -1}}]})
