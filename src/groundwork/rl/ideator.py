"""The RL ideator: a search strategy and an ideator in one, over a learning policy.

Planning step s first learns from step s-1 (its ideas are in the run store with their
results: rewards, a GRPO update, the step's figures, a checkpoint), then asks for one
group of ideas per prompt; proposing samples each group from the policy. Everything a
step needs to be learned again (prompt, sampled token ids) is stored with its ideas, so
a run killed anywhere resumes from its last checkpoint and relearns what came after.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch

from groundwork.analysis.summary import summarize
from groundwork.environments import Environment
from groundwork.prompting import PromptLibrary, environment_context
from groundwork.protocols import IdeaDraft, IdeationRequest, SearchHistory
from groundwork.records import Idea, PromptKind, Result
from groundwork.rl import diversity
from groundwork.rl.checkpoint import latest_checkpoint, save_checkpoint
from groundwork.rl.config import RLConfig
from groundwork.rl.grpo import grpo_update
from groundwork.rl.policy import Policy, Sample
from groundwork.rl.reward import RewardScale
from groundwork.store import RunStore
from groundwork.store.step_log import StepLog

THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
TITLE_CHARS = 80


def split_thinking(completion: str) -> tuple[str, str]:
    """(thinking, idea) from a completion that may open with <think>...</think>."""
    thinking = "\n".join(m.strip() for m in THINK.findall(completion))
    return thinking, THINK.sub("", completion).strip()


def title_of(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(empty idea)"
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 3] + "..."


class RLIdeator:
    name = "rl-grpo"

    def __init__(self, config: RLConfig, env: Environment, budget: str, run_dir: Path, prompts=None):
        torch.set_num_threads(config.torch_threads)
        self.config = config
        self.env = env
        self.run_dir = Path(run_dir)
        self.epochs = config.steps
        self.label = f"rl:{Path(config.model).name}" + (f"+lora{config.lora_rank}" if config.lora_rank else "")
        prompts = prompts or PromptLibrary()
        self.prompts = prompts
        self.context = (
            environment_context(prompts, env, budget, line_numbers=False) if config.prompt == "context" else ""
        )
        self.learned_step, checkpoint = latest_checkpoint(self.run_dir)
        self.policy = Policy(config, checkpoint / "policy" if checkpoint else None)
        trainable = [p for p in self.policy.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
        if checkpoint is not None:
            self.optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        self.steps = StepLog(self.run_dir)
        self.embedder = diversity.load_embedder(config.embedding_model)

    # ---- SearchStrategy -------------------------------------------------------------

    def plan_epoch(self, epoch: int, history: SearchHistory, count: int | None = None) -> list[IdeationRequest]:
        # `count` (a steady-state batch size) does not apply: an RL step is always whole groups.
        self.learn_until(epoch - 1, history)
        return [
            IdeationRequest(kind=PromptKind.SIMPLE, count=self.config.group_size, epoch=epoch, seed=group)
            for group in range(self.config.prompts_per_step)
        ]

    # ---- Ideator --------------------------------------------------------------------

    def propose(self, request: IdeationRequest, history: SearchHistory) -> list[IdeaDraft]:
        prompt = self.prompt(history)
        group = request.seed
        seed = self.config.seed * 1_000_003 + request.epoch * 1009 + group
        drafts = []
        for index, sample in enumerate(self.policy.sample(prompt, request.count, seed)):
            thinking, text = split_thinking(sample.text)
            drafts.append(
                IdeaDraft(
                    title=title_of(text),
                    text=text,
                    category="rl",
                    thinking=thinking,
                    payload={
                        "rl": {
                            "step": request.epoch,
                            "group": group,
                            "sample": index,
                            "prompt": prompt,
                            "completion": sample.text,
                            "completion_ids": sample.completion_ids,
                        }
                    },
                )
            )
        return drafts

    def prompt(self, history: SearchHistory) -> str:
        past = []
        if self.config.past_ideas and history.baseline is not None and history.baseline.valid:
            scale = self.reward_scale(history)
            scored = sorted(history.valid(), key=lambda s: -scale.reward(s.result))[: self.config.past_ideas]
            past = [{"text": s.idea.text, "reward": scale.reward(s.result)} for s in scored]
            unit = scale.unit
        else:
            unit = ""
        return self.prompts.render(
            "rl_ideator", context=self.context, goal=self.env.manifest.goal.strip(), past=past, unit=unit
        )

    # ---- learning -------------------------------------------------------------------

    def reward_scale(self, history: SearchHistory) -> RewardScale:
        if history.baseline is None or not history.baseline.valid:
            detail = history.baseline.detail if history.baseline else "it has not run"
            raise RuntimeError(f"the baseline produced no metric ({detail}): rewards are measured against it")
        return RewardScale(
            metric=history.metric,
            baseline=float(history.baseline.metric),  # type: ignore[arg-type]
            noise_std=noise_std(self.run_dir),
            failure_reward=self.config.failure_reward,
        )

    def learn_until(self, step: int, history: SearchHistory) -> None:
        """Learn every step up to `step` not learned yet (after a resume, possibly several)."""
        for s in range(self.learned_step + 1, step + 1):
            self.learn_step(s, history)

    def learn_step(self, step: int, history: SearchHistory) -> None:
        started = time.time()
        scale = self.reward_scale(history)
        results = {s.idea.id: s.result for s in history.scored}
        ideas = [i for i in history.proposed if i.epoch == step and "rl" in i.payload]
        missing = [i.id for i in ideas if i.id not in results]
        if missing:
            raise RuntimeError(f"step {step}: ideas {missing} have no result yet; they must finish before learning")
        groups: dict[int, list[Idea]] = {}
        for idea in ideas:
            groups.setdefault(idea.payload["rl"]["group"], []).append(idea)
        batch = [
            ([self._sample(i) for i in members], [scale.reward(results[i.id]) for i in members])
            for _, members in sorted(groups.items())
        ]
        stats = grpo_update(self.policy, self.optimizer, batch)
        self.steps.record(self._figures(step, ideas, results, scale, stats, time.time() - started))
        save_checkpoint(self.run_dir, step, self.policy, self.optimizer)
        self.learned_step = step

    def finish(self, history: SearchHistory) -> None:
        """After the last step's results are in: learn from them too."""
        self.learn_until(self.config.steps, history)

    def _sample(self, idea: Idea) -> Sample:
        rl = idea.payload["rl"]
        return Sample(self.policy.encode_prompt(rl["prompt"]), list(rl["completion_ids"]), rl["completion"])

    def _figures(self, step, ideas, results: dict[str, Result], scale: RewardScale, stats, seconds: float) -> dict:
        rewards = [scale.reward(results[i.id]) for i in ideas]
        texts = [i.text for i in ideas]
        div = diversity.measure(texts, self.embedder)
        best = max(zip(rewards, ideas, strict=True), key=lambda pair: pair[0])
        n = max(1, len(ideas))
        return {
            "step": step,
            "ts": time.time(),
            "ideas": len(ideas),
            "mean_reward": sum(rewards) / n,
            "max_reward": max(rewards),
            "min_reward": min(rewards),
            "execution_rate": sum(results[i.id].valid for i in ideas) / n,
            "idea_words": sum(len(t.split()) for t in texts) / n,
            "thinking_words": sum(len(i.thinking.split()) for i in ideas) / n,
            "completion_tokens": sum(len(i.payload["rl"]["completion_ids"]) for i in ideas) / n,
            "distinct_1": div.distinct_1,
            "distinct_2": div.distinct_2,
            "pairwise_similarity": div.pairwise_similarity,
            "embedding_spread": div.embedding_spread,
            "loss": stats.loss,
            "kl": stats.kl,
            "grad_norm": stats.grad_norm,
            "flat_groups": stats.flat_groups,
            "reward_unit": scale.unit,
            "best_idea": best[1].id,
            "best_title": best[1].title,
            "learn_seconds": round(seconds, 3),
        }


def noise_std(run_dir: Path) -> float | None:
    """The baseline's noise: measured in this run (several baseline seeds), else the floor
    stored by `groundwork env baseline`, else unknown (None)."""
    store = RunStore(run_dir)
    try:
        return summarize(store).noise_std or None
    finally:
        store.close()
