"""GRPO of a tiny, randomly initialised ideator on the built-in `quadratic` environment
(ideas set the learning rate and warmup of gradient descent on a fixed quadratic).

Everything is the real RL run (run store, knob implementer, scheduler, RL ideator, GRPO,
checkpoints, step figures) except where jobs execute: `InProcessBackend`, a test double
defined here, runs the patched environment's train.py and locked evaluate.py in this
process, because a fresh interpreter per job would make the dozens of steps learning
needs too slow for the suite. tests/test_rl_cli.py runs the same through real job
processes, with a kill and a resume."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from groundwork.config import RunConfig  # noqa: E402
from groundwork.patch.codebase import copy_codebase  # noqa: E402
from groundwork.patch.patching import PatchPolicy, apply_patch  # noqa: E402
from groundwork.protocols import BackendBase, JobSpec  # noqa: E402
from groundwork.records import FailureCategory, JobOutcome  # noqa: E402
from groundwork.rl.config import RLConfig  # noqa: E402
from groundwork.rl.tiny import build_tiny_model  # noqa: E402
from groundwork.rl.trainer import RLTrainer, create_rl_run  # noqa: E402
from groundwork.store import RunStore  # noqa: E402

KNOB_WORDS = [f"lr={v}" for v in ("1e-3", "3e-3", "1e-2", "3e-2", "1e-1", "3e-1", "1", "3")]
KNOB_WORDS += [f"warmup={v}" for v in (0, 10, 50)] + ["momentum=0.9"]  # momentum: an unknown knob


class InProcessBackend(BackendBase):
    """Test double of a Backend: runs a job's train and evaluate commands in this process."""

    name = "in-process (test)"

    def __init__(self, slots: int = 1):
        self.slots = slots
        self._done: list[JobOutcome] = []

    def start(self, spec: JobSpec) -> str:
        started = time.time()
        work = Path(spec.job_dir) / "work"
        shutil.rmtree(work, ignore_errors=True)
        copy_codebase(Path(spec.baseline_dir), work)
        if spec.diff_path:
            apply_patch(Path(spec.diff_path).read_text(), work, PatchPolicy(frozenset()))
        result_path = work / spec.result_file
        saved = dict(os.environ), os.getcwd()
        os.environ.update({"GROUNDWORK_OUT_DIR": str(work / "out"), "GROUNDWORK_RESULT_PATH": str(result_path)})
        try:
            os.chdir(work)
            runpy.run_path(str(work / "train.py"), run_name="__main__")
            runpy.run_path(str(work / "evaluate.py"), run_name="__main__")
        finally:
            os.environ.clear()
            os.environ.update(saved[0])
            os.chdir(saved[1])
        metric = json.loads(result_path.read_text())[spec.metric_name]
        low, high = spec.plausible_range
        failure = None if low <= metric <= high else FailureCategory.METRIC_IMPLAUSIBLE
        self._done.append(
            JobOutcome(
                job_id=spec.job_id,
                attempt=spec.attempt,
                failure=failure,
                metric=metric if failure is None else None,
                detail="" if failure is None else f"loss {metric:g} outside [{low}, {high}]",
                started_at=started,
                ended_at=time.time(),
            )
        )
        return "this process"

    def poll(self):
        done, self._done = self._done, []
        return done

    def reattach(self, spec: JobSpec) -> bool:
        return False

    def cancel(self, job_id: str) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _rl_run(tmp_path: Path, steps: int, **rl) -> tuple[RunStore, RLTrainer]:
    model = build_tiny_model(tmp_path / "tiny-model", KNOB_WORDS, seed=0)
    config = RunConfig(environment="quadratic", ideator_llm="rl:tiny", implementer_llm="knobs", slots=1)
    settings = dict(model=str(model), steps=steps, max_new_tokens=6, prompt="goal", embedding_model=None, seed=0)
    store = create_rl_run(config, RLConfig(**{**settings, **rl}), tmp_path / "runs", "rl")
    trainer = RLTrainer(store)
    trainer.loop.parts.backend = InProcessBackend(slots=16)  # a step's jobs all start in one scheduler tick
    return store, trainer


@pytest.mark.slow
def test_grpo_raises_the_mean_reward_of_a_tiny_random_ideator(tmp_path):
    steps = 10
    store, trainer = _rl_run(tmp_path, steps, group_size=16, learning_rate=1e-2)
    trainer.run()
    rows = trainer.ideator.steps.rows()
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    first = sum(r["mean_reward"] for r in rows[:3]) / 3
    last = sum(r["mean_reward"] for r in rows[-3:]) / 3
    print("mean reward per step:", [round(r["mean_reward"], 3) for r in rows])
    assert last > first + 0.5, (first, last)
    assert rows[-1]["execution_rate"] > rows[0]["execution_rate"]
    # every idea went through the store with a result; the policy was checkpointed
    assert len(store.results()) == 1 + steps * 16
    assert (store.run_dir / "rl" / "checkpoints" / f"step-{steps:05d}" / "policy").is_dir()
