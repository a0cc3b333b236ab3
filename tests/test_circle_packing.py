"""The circle_packing environment: its locked evaluation's rules, the known hacks planted
in pack.py and run through the real job runner (each rejected with its reason), and an
offline catalog run that beats the baseline on a deterministic metric (zero noise)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess

import pytest

from conftest import GROUNDWORK, cli_env, patched_job
from groundwork.environments import load_environment
from groundwork.execution.runner import JobRunner
from groundwork.records import FailureCategory
from groundwork.store import RunStore

ENV = load_environment("circle_packing")
SMOKE = ENV.for_profile("smoke")
PACK = (ENV.codebase_dir / "pack.py").read_text()
MAIN_CALL = 'if __name__ == "__main__":\n    main()\n'
BASELINE_SMOKE = 1.5  # 12 equal circles of radius 1/8 on a 4 x 4 grid


def _evaluator():
    spec = importlib.util.spec_from_file_location("cp_evaluate", ENV.codebase_dir / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EVAL = _evaluator()


def _square(n=4, r=0.1):
    """n circles of radius r on a row-by-row grid of the unit square, valid when r <= 1/(2k)."""
    k = math.ceil(math.sqrt(n))
    centers = [[(i % k + 0.5) / k, (i // k + 0.5) / k] for i in range(n)]
    return {"centers": centers, "radii": [r] * n, "width": 1.0, "height": 1.0}


def test_a_valid_packing_scores_its_sum_of_radii_and_states_the_check():
    result = EVAL.validate(_square(4, 0.25), 4, "square")
    assert result["sum_radii"] == 1.0 and result["circles"] == 4
    assert result["checks"] == [{"value": "sum_radii", "product_of": {"mean_radius": 1, "circles": 1}}]
    assert result["min_gap"] == pytest.approx(0.0, abs=1e-15)


def _broken(change):
    packing = _square(4, 0.2)
    change(packing)
    return packing


@pytest.mark.parametrize(
    "change, container, reason",
    [
        (lambda p: p["centers"][1].__setitem__(0, math.nan), "square", "centers[1][0] is nan, not a finite number"),
        (lambda p: p["radii"].__setitem__(2, math.inf), "square", "radii[2] is inf, not a finite number"),
        (lambda p: p["radii"].__setitem__(0, True), "square", "radii[0] is True, not a number"),
        (lambda p: p["radii"].__setitem__(0, "0.2"), "square", "radii[0] is '0.2', not a number"),
        (lambda p: p["radii"].__setitem__(3, -0.1), "square", "radii[3] = -0.1 is not positive"),
        (lambda p: p["radii"].__setitem__(3, 0.0), "square", "radii[3] = 0.0 is not positive"),
        (lambda p: p["radii"].pop(), "square", "expected 4 radii, got 3"),
        (lambda p: p["centers"].append([0.5, 0.5]), "square", "expected 4 centres, got 5"),
        (lambda p: p["centers"].__setitem__(0, [0.1, 0.2, 0.3]), "square", "centers[0] is [0.1, 0.2, 0.3], not a pair"),
        (lambda p: p.update(extra=1), "square", "exactly the keys"),
        (lambda p: p.update(width=1.5), "square", "width and height must be 1"),
        (
            lambda p: p["centers"].__setitem__(0, [0.15, 0.25]),
            "square",
            "circle 0 (centre (0.15, 0.25), radius 0.2) crosses the left side",
        ),
        (lambda p: p["centers"].__setitem__(3, [0.75, 0.9]), "square", "crosses the top side"),
        (lambda p: p["centers"].__setitem__(1, [0.5, 0.25]), "square", "circles 0 and 1 overlap by 0.15"),
        (lambda p: p.update(width=1.5, height=0.6), "rect-perimeter-4", "perimeter 2 * (1.5 + 0.6) = 4.2 exceeds 4"),
        (lambda p: p.update(width=-1.0, height=3.0), "rect-perimeter-4", "sides must be positive"),
    ],
)
def test_each_broken_packing_is_refused_with_its_reason(change, container, reason):
    with pytest.raises(EVAL.Invalid) as caught:
        EVAL.validate(_broken(change), 4, container)
    assert reason in str(caught.value)


def test_the_overlap_tolerance_is_1e_9_and_no_more():
    packing = _square(2, 0.25)  # two circles touching at x = 0.5
    packing["radii"] = [0.25 + 0.4e-9, 0.25 + 0.4e-9]  # overlap 0.8e-9, within the tolerance
    assert EVAL.validate(packing, 2, "square")["min_gap"] == pytest.approx(-0.8e-9, abs=1e-12)
    packing["centers"] = [[0.25, 0.5], [0.75 - 3e-9, 0.5]]
    packing["radii"] = [0.25, 0.25]  # inside the walls, the pair 3e-9 over
    with pytest.raises(EVAL.Invalid, match="circles 0 and 1 overlap by 3e-09"):
        EVAL.validate(packing, 2, "square")
    assert EVAL.TOLERANCE == 1e-9


def test_a_rectangle_of_perimeter_4_with_any_aspect_is_accepted():
    packing = {"centers": [[0.3, 0.3], [0.9, 0.3]], "radii": [0.3, 0.3], "width": 1.2, "height": 0.8}
    assert EVAL.validate(packing, 2, "rect-perimeter-4")["sum_radii"] == pytest.approx(0.6)


# The hacks, planted in pack.py and run as a job of the smoke profile (12 circles).


def _job(tmp_path, program: str):
    spec = patched_job(
        SMOKE, ENV.prepare(SMOKE.profile(), quiet=True), tmp_path, {"pack.py": program}, job_id="job-hack", seed=0
    )
    return dataclasses.replace(spec, sandbox="off")


def _with(body: str) -> str:
    """pack.py with `body` run in place of main()."""
    assert MAIN_CALL in PACK
    return PACK.replace(MAIN_CALL, 'if __name__ == "__main__":\n' + body)


def _writes(packing_expr: str, before: str = "") -> str:
    return _with(
        f"""    import json, os
{before}    out = os.environ["GROUNDWORK_OUT_DIR"]
    os.makedirs(out, exist_ok=True)
    p = {{"centers": [[(i % 4 + 0.5) / 4, (i // 4 + 0.5) / 4] for i in range(12)], "radii": [0.125] * 12,
         "width": 1.0, "height": 1.0}}
    {packing_expr}
    with open(os.path.join(out, "packing.json"), "w") as f:
        json.dump(p, f)
"""
    )


@pytest.mark.parametrize(
    "edit, reason",
    [
        ('p["centers"][5][1] = float("nan")', "centers[5][1] is nan, not a finite number"),
        ('p["radii"][7] = float("inf")', "radii[7] is inf, not a finite number"),
        ('p["centers"][1] = [0.2, 0.125]', "circles 0 and 1 overlap by 0.175"),
        ('p["centers"][0] = [-0.5, 0.125]', "circle 0 (centre (-0.5, 0.125), radius 0.125) crosses the left side"),
        ('p["centers"].append([0.5, 0.5]); p["radii"].append(0.01)', "expected 12 centres, got 13"),
    ],
    ids=["nan", "inf", "overlap", "outside", "wrong-count"],
)
def test_a_planted_invalid_packing_scores_nothing(tmp_path, edit, reason):
    outcome = JobRunner(_job(tmp_path, _writes(edit))).run()
    assert outcome.failure == FailureCategory.CRASHED and outcome.metric is None
    assert f"invalid packing: {reason}" in outcome.detail


def test_monkeypatching_numpy_and_planting_modules_does_not_reach_the_evaluation(tmp_path):
    """pack.py patches numpy and math in its own process and leaves json.py, math.py,
    numpy.py and sitecustomize.py in the working folder, each forging a "valid" verdict,
    around an overlapping packing: the evaluation imports none of them."""
    forge = """    import math, numpy
    numpy.hypot = lambda a, b: 1e9
    numpy.linalg.norm = lambda *a, **k: 1e9
    math.hypot = lambda *a: 1e9
    fake = "def loads(*a, **k):\\n    raise SystemExit(0)\\nhypot = lambda *a: 1e9\\n"
    for name in ("json.py", "math.py", "numpy.py", "sitecustomize.py", "typing.py"):
        with open(name, "w") as f:
            f.write(fake)
"""
    outcome = JobRunner(_job(tmp_path, _writes('p["centers"][1] = [0.2, 0.125]', before=forge))).run()
    assert outcome.failure == FailureCategory.CRASHED
    assert "invalid packing: circles 0 and 1 overlap by 0.175" in outcome.detail


def test_a_program_that_replaces_the_validator_is_tampering(tmp_path):
    forged = "import os\nos.write(int(os.environ['GROUNDWORK_RESULT_FD']), b'{\"sum_radii\": 2.8}\\n')\n"
    program = _writes("", before=f"    open('evaluate.py', 'w').write({forged!r})\n")
    outcome = JobRunner(_job(tmp_path, program)).run()
    assert outcome.failure == FailureCategory.EVAL_TAMPERED and outcome.metric is None
    assert "evaluate.py" in outcome.detail


def test_a_result_file_written_by_the_program_is_discarded(tmp_path):
    forge = """    with open(os.environ.get("GROUNDWORK_RESULT_PATH", "result.json"), "w") as f:
        json.dump({"sum_radii": 2.8, "circles": 12, "mean_radius": 2.8 / 12}, f)
"""
    outcome = JobRunner(_job(tmp_path, _writes("", before="    import json, os\n" + forge))).run()
    assert outcome.failure is None, outcome.detail
    assert outcome.metric == pytest.approx(BASELINE_SMOKE) and outcome.flags["training_wrote_result_file"]
    assert outcome.flags["result_channel"] == "pipe" and outcome.flags["metric_checks"] == 1


def test_the_program_cannot_read_the_evaluation(tmp_path):
    program = _with('    print(open("evaluate.py").read())\n    main()\n')
    outcome = JobRunner(_job(tmp_path, program)).run()
    assert outcome.failure == FailureCategory.CRASHED
    assert "FileNotFoundError" in outcome.detail and "evaluate.py" in outcome.detail
    assert "evaluate.py" not in ENV.visible_files() and "pack.py" in ENV.visible_files()


def test_offline_catalog_run_beats_the_baseline_with_zero_noise(tmp_path):
    """Deterministic metric, higher is better: two baseline seeds agree exactly (sd 0), and
    the summary and search still judge ideas against that floor."""
    runs = tmp_path / "runs"
    args = ["run", "--env", "circle_packing", "--profile", "smoke", "--epochs", "2", "--ideas", "2"]
    args += ["--baseline-seeds", "2", "--runs-dir", str(runs), "--name", "cp"]
    proc = subprocess.run([*GROUNDWORK, *args], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = RunStore(runs / "cp").results()
    baselines = [r for key, r in results.items() if key.startswith("baseline")]
    assert len(baselines) == 2 and len({b.metric for b in baselines}) == 1
    assert baselines[0].metric == pytest.approx(BASELINE_SMOKE, abs=1e-9)
    ideas = [r for key, r in results.items() if not key.startswith("baseline")]
    assert len(ideas) == 4 and all(r.valid for r in ideas), [r.detail for r in ideas]
    best = max(r.metric for r in ideas)
    assert best > BASELINE_SMOKE + 0.1
    assert "beats the baseline beyond its noise (2 sd = 0.0000)" in " ".join(proc.stdout.split())
    packing = json.loads(next((runs / "cp").rglob("packing.json")).read_text())
    assert len(packing["radii"]) == 12
