"""The README's quick offline RL example, through the real CLI and real job processes:
`groundwork rl tiny-model --env quadratic`, then `groundwork rl run` with the README's
settings; the mean reward of the tiny random policy clearly rises over its steps (the
claim the suite makes of GRPO on a tiny ideator)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import GROUNDWORK, cli_env, requires
from groundwork.analysis.rl_steps import rl_step_table
from groundwork.store import RunStore

# The README's settings (section "Reinforcement learning of the ideator"), less the
# embedding model, which measures diversity and plays no part in the reward.
README_RUN = [
    "--env", "quadratic", "--implementer", "knobs", "--prompt", "goal",
    "--max-new-tokens", "6", "--lr", "1e-2", "--group-size", "16", "--steps", "10",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.e2e
@requires("torch", "rl")
@requires("transformers", "rl")
def test_the_readme_quick_rl_example_raises_the_mean_reward(tmp_path):
    model = tmp_path / "tiny"
    tiny = [*GROUNDWORK, "rl", "tiny-model", str(model), "--env", "quadratic"]
    made = subprocess.run(tiny, env=cli_env(), capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    assert " ".join(README_RUN) in made.stdout, made.stdout  # the command it prints is the README's
    run = subprocess.run(
        [*GROUNDWORK, "rl", "run", "--model", str(model), *README_RUN, "--embedding-model", "none",
         "--runs-dir", str(tmp_path / "runs"), "--name", "quick"],
        env=cli_env(), capture_output=True, text=True, timeout=800,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "RL steps learned 10/10" in run.stdout

    rows = rl_step_table(tmp_path / "runs" / "quick")
    means = [r["mean_reward"] for r in rows]
    print("mean reward per step:", [round(m, 3) for m in means])
    assert [r["step"] for r in rows] == list(range(1, 11)) and all(r["ideas"] == 16 for r in rows)
    first, last = sum(means[:3]) / 3, sum(means[-3:]) / 3
    assert last > first + 1.0, means  # from below the baseline (many unparsable ideas) to near the best knobs
    assert last > 0.5 and rows[-1]["execution_rate"] > rows[0]["execution_rate"], rows
    # every idea went through the store with a result; the policy was checkpointed
    store = RunStore(tmp_path / "runs" / "quick")
    assert len(store.results()) == 1 + 10 * 16
    assert (store.run_dir / "rl" / "checkpoints" / f"step-{10:05d}" / "policy").is_dir()
