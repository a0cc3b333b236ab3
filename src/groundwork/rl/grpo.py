"""Group Relative Policy Optimisation, one on-policy update per step.

Each prompt's group of completions is scored; a completion's advantage is its reward
minus the group's mean, over the group's standard deviation, so the policy is pushed
toward the better ideas of each group and away from the worse. The loss is the
advantage-weighted log-likelihood averaged over all completion tokens of the batch
(long completions weigh no more per token than short ones), plus an optional KL penalty
to the starting policy (the k3 estimator). A group whose rewards are all equal teaches
nothing and is counted as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from groundwork.rl.policy import Policy, Sample

EPSILON = 1e-4


def group_advantages(rewards: list[float]) -> list[float]:
    r = torch.tensor(rewards, dtype=torch.float64)
    std = r.std(unbiased=False).item()
    if std < EPSILON:
        return [0.0] * len(rewards)
    return ((r - r.mean()) / (std + EPSILON)).tolist()


@dataclass(frozen=True)
class UpdateStats:
    loss: float
    kl: float | None
    grad_norm: float
    flat_groups: int  # groups whose rewards were all equal (no signal)
    tokens: int


def grpo_update(
    policy: Policy, optimizer: torch.optim.Optimizer, groups: list[tuple[list[Sample], list[float]]]
) -> UpdateStats:
    """One optimiser step over all groups; each group is its own forward and backward
    pass (gradients accumulate), so memory grows with the group, not the batch."""
    config = policy.config
    tokens = sum(len(s.completion_ids) for group, _ in groups for s in group)
    flat = sum(1 for _, rewards in groups if max(rewards) - min(rewards) < EPSILON)
    if flat == len(groups) and config.kl_beta == 0:  # nothing to learn; an optimiser step would still move
        return UpdateStats(0.0, None, 0.0, flat, tokens)
    policy.model.eval()  # no dropout: the update scores exactly the policy that sampled
    optimizer.zero_grad(set_to_none=True)
    total_loss, total_kl = 0.0, 0.0
    for samples, rewards in groups:
        if config.kl_beta == 0 and max(rewards) - min(rewards) < EPSILON:
            continue  # all advantages zero: no gradient, no need for the pass
        logprobs, mask = policy.token_logprobs(samples)
        adv = torch.tensor(group_advantages(rewards), dtype=logprobs.dtype, device=logprobs.device)[:, None]
        # exp(lp - lp.detach()) is 1 in value; its gradient is the policy gradient of lp.
        objective = torch.exp(logprobs - logprobs.detach()) * adv
        if config.kl_beta > 0:
            delta = _reference_logprobs(policy, samples) - logprobs
            per_token_kl = torch.exp(delta) - delta - 1
            objective = objective - config.kl_beta * per_token_kl
            total_kl += (per_token_kl * mask).sum().item()
        loss = -(objective * mask).sum() / max(1, tokens)  # token-level mean over the whole batch
        loss.backward()
        total_loss += loss.item()
    grad_norm = torch.nn.utils.clip_grad_norm_(
        [p for p in policy.model.parameters() if p.requires_grad], config.max_grad_norm
    )
    optimizer.step()
    kl = total_kl / max(1, tokens) if config.kl_beta > 0 else None
    return UpdateStats(total_loss, kl, float(grad_norm), flat, tokens)


@torch.no_grad()
def _reference_logprobs(policy: Policy, samples: list[Sample]) -> torch.Tensor:
    if policy.reference is not None:
        return policy.token_logprobs(samples, policy.reference)[0]
    with policy.model.disable_adapter():  # LoRA: the base model is the starting policy
        return policy.token_logprobs(samples)[0]
