"""A model portfolio: several ideator (or implementer) models, one chosen per proposal by
a UCB1 bandit over payoff per dollar, with a floor share so that no model starves.

UCB1 rather than Thompson sampling: its choice is a pure function of the arms' statistics,
and those are recomputed from the run store at every choice (the choices, the calls' costs,
the ideas' results), so a resumed run makes exactly the choices an uninterrupted one would,
with no random state to keep, and tests of it are deterministic.

Payoff of an arm = its reward summed over its settled proposals / the dollars they cost.
- ideator: a proposal is one ideation call; its reward is the sum over its ideas of their
  improvement over the baseline in noise units (baseline sd over seeds, else the stored
  noise floor, else raw metric units), counting a failed or worse idea as 0;
- implementer: a proposal is one idea's implementation (with its revisions and repairs);
  its reward is 1 when the idea ran to a valid metric, else 0.
A proposal whose calls have no price (a local server, a model missing from the price
table) is charged FLOOR_USD, so a free model is cheap but not infinitely good value;
replayed calls count at their recorded price (what they cost when recorded).
Payoffs are divided by the best arm's, so the exploration bonus sqrt(2 ln N / n) acts on a
[0, 1] scale whatever the units. A proposal still running counts in n (the bonus), not in
the payoff, so a batch of parallel proposals is spread over the arms.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from groundwork.comparison import Comparison, run_noise_std
from groundwork.environments.manifest import Objective
from groundwork.protocols import FailedRun, IdeaDraft, IdeationRequest, PatchAttempt, SearchHistory
from groundwork.records import Idea, IdeaState, PromptKind
from groundwork.store import RunStore

FLOOR_USD = 0.001  # charged per proposal whose calls cost nothing known (about one short call of a small model)
ROLES = ("ideator", "implementer")


@dataclass(frozen=True)
class ArmStats:
    arm: str
    pulls: int = 0  # proposals it was chosen for
    settled: int = 0  # of them, those whose outcome is known
    reward: float = 0.0  # over the settled ones
    spend_usd: float = 0.0  # dollars its calls cost (all proposals; recorded price for replays)
    charged_usd: float = 0.0  # of the settled proposals, each at least FLOOR_USD: the payoff's divisor

    @property
    def payoff(self) -> float | None:
        """Reward per dollar over its settled proposals (None before any)."""
        return self.reward / self.charged_usd if self.settled else None


def choose(stats: Sequence[ArmStats], floor_share: float) -> tuple[str, str, dict[str, float]]:
    """(arm, rule, UCB index per arm). Rules in order: 'init' (an arm never tried), 'floor'
    (an arm whose share of the proposals would fall below floor_share), 'ucb'. Ties go to
    the arm listed first."""
    total = sum(s.pulls for s in stats)
    for s in stats:
        if s.pulls == 0:
            return s.arm, "init", {}
    behind = [s for s in stats if s.pulls < floor_share * (total + 1)]
    if behind:
        return min(behind, key=lambda s: s.pulls).arm, "floor", {}
    scale = max((s.payoff for s in stats if s.payoff is not None), default=0.0)
    index = {}
    for s in stats:
        mean = 1.0 if s.payoff is None else (s.payoff / scale if scale > 0 else 0.0)  # untested: optimistic
        index[s.arm] = mean + math.sqrt(2 * math.log(total) / s.pulls)
    return max(stats, key=lambda s: index[s.arm]).arm, "ucb", index


def gain_unit(baseline_metrics: Sequence[float], stored_std: float | None) -> float | None:
    """The noise unit ideas' gains are counted in: the baseline's sd over this run's seeds,
    else the stored noise floor's; None (raw metric units) when neither is known or is 0."""
    return run_noise_std(baseline_metrics, stored_std) or stored_std or None  # identical seeds: the floor


def arm_stats(
    store: RunStore, role: str, arms: Sequence[str], objective: Objective, stored_std: float | None = None
) -> list[ArmStats]:
    """Every arm's statistics, from the store alone."""
    stats = {arm: ArmStats(arm) for arm in arms}
    ideas = store.ideas()
    results = store.results()
    costs: dict[str, float] = {}  # by ideation call key, or by idea id for the implementer
    for call in store.llm_costs(role):
        key = call["call_key"] if role == "ideator" else call["idea_id"]
        costs[key] = costs.get(key, 0.0) + (call["cost_usd"] or 0.0)
    baseline = [results[i.id].metric for i in ideas if i.prompt_kind == PromptKind.BASELINE and i.id in results]
    baseline = [m for m in baseline if m is not None]
    comparison = Comparison(objective, baseline)
    unit = gain_unit(baseline, stored_std) or 1.0
    by_call: dict[str, list[Idea]] = {}
    for idea in ideas:
        if "portfolio_key" in idea.payload:
            by_call.setdefault(idea.payload["portfolio_key"], []).append(idea)
    for choice in store.model_choices(role):
        s = stats.get(choice["arm"])
        if s is None:  # an arm no longer in the portfolio
            continue
        if role == "ideator":
            cost = costs.get(choice["key"], 0.0)
            own = by_call.get(choice["key"], [])
            settled = store.epoch_proposed(choice["epoch"]) and all(i.id in results for i in own)
            reward = 0.0
            for idea in own:
                result = results.get(idea.id)
                if result is not None and result.valid and result.metric is not None:
                    gain = comparison.gain([result.metric])  # None without a baseline metric
                    reward += max(0.0, gain / unit) if gain is not None else 0.0
        else:
            cost = costs.get(choice["idea_id"], 0.0)
            result = results.get(choice["idea_id"])
            settled = result is not None
            reward = 1.0 if result is not None and result.valid else 0.0
        s = replace(s, pulls=s.pulls + 1, spend_usd=s.spend_usd + cost)
        if settled:
            s = replace(
                s,
                settled=s.settled + 1,
                reward=s.reward + reward,
                charged_usd=s.charged_usd + max(cost, FLOOR_USD),
            )
        stats[s.arm] = s
    return [stats[arm] for arm in arms]


class Portfolio:
    """Chooses the model of each proposal of one role and stores the choice with every
    arm's statistics. A proposal asked for again (a resumed run) gets its stored choice."""

    def __init__(
        self,
        run_dir: Path,
        role: str,
        arms: Sequence[str],
        floor_share: float,
        objective: Objective,
        stored_std: float | None = None,
    ):
        if role not in ROLES:
            raise ValueError(f"portfolio role {role!r}: use one of {', '.join(ROLES)}")
        self.run_dir = Path(run_dir)
        self.role = role
        self.arms = list(arms)
        self.floor_share = floor_share
        self.objective = objective
        self.stored_std = stored_std
        self._local = threading.local()  # one store connection per thread
        self._lock = threading.Lock()  # one choice at a time: each sees the ones before it

    def store(self) -> RunStore:
        if not hasattr(self._local, "store"):
            self._local.store = RunStore(self.run_dir)
        return self._local.store

    def stats(self) -> list[ArmStats]:
        return arm_stats(self.store(), self.role, self.arms, self.objective, self.stored_std)

    def choose(self, key: str, epoch: int | None = None, idea_id: str | None = None) -> str:
        with self._lock:
            store = self.store()
            found = store.model_choice(self.role, key)
            if found is not None:
                return str(found["arm"])
            stats = self.stats()
            arm, rule, index = choose(stats, self.floor_share)
            snapshot = [{**asdict(s), "payoff": s.payoff, "index": index.get(s.arm)} for s in stats]
            choice = {
                "ts": time.time(),
                "role": self.role,
                "key": key,
                "arm": arm,
                "rule": rule,
                "epoch": epoch,
                "idea_id": idea_id,
                "arms": json.dumps(snapshot),
            }
            return str(store.record_model_choice(choice)["arm"])

    def chosen(self, key: str) -> str | None:
        found = self.store().model_choice(self.role, key)
        return None if found is None else str(found["arm"])


class PortfolioIdeator:
    """Ideas from one model per ideation call, chosen by the portfolio; each idea is marked
    with its model (its origin) and the call it came from (its reward goes there)."""

    label = "portfolio"

    def __init__(self, arms: dict[str, Any], portfolio: Portfolio):
        self.arms = arms  # spec -> LLMIdeator
        self.portfolio = portfolio

    def propose(self, request: IdeationRequest, history: SearchHistory) -> list[IdeaDraft]:
        key = request.call_key  # the key of the call the arm makes
        arm = self.portfolio.choose(key, epoch=request.epoch)
        drafts = self.arms[arm].propose(request, history)
        return [replace(d, payload={**d.payload, "origin": arm, "portfolio_key": key}) for d in drafts]


class PortfolioImplementer:
    """Each idea implemented by one model, chosen by the portfolio; its repairs go to the
    same model (they continue its conversation)."""

    label = "portfolio"

    def __init__(self, arms: dict[str, Any], portfolio: Portfolio):
        self.arms = arms  # spec -> LLMImplementer
        self.portfolio = portfolio

    def _assign_pending(self) -> None:
        """Choose for every idea waiting to be implemented, in id order: the ideas of a batch
        get the same models whichever thread starts first."""
        for idea in self.portfolio.store().ideas(state=IdeaState.PROPOSED):
            if idea.prompt_kind not in (PromptKind.BASELINE, PromptKind.CONFIRM):
                self.portfolio.choose(f"implement:{idea.id}", epoch=idea.epoch, idea_id=idea.id)

    def implement(self, idea: Idea, codebase: Path) -> list[PatchAttempt]:
        self._assign_pending()
        arm = self.portfolio.choose(f"implement:{idea.id}", epoch=idea.epoch, idea_id=idea.id)
        return [replace(a, implementer=arm) for a in self.arms[arm].implement(idea, codebase)]

    def repair(self, idea: Idea, codebase: Path, failed: FailedRun) -> list[PatchAttempt]:
        arm = self.portfolio.choose(f"implement:{idea.id}", epoch=idea.epoch, idea_id=idea.id)
        return [replace(a, implementer=arm) for a in self.arms[arm].repair(idea, codebase, failed)]
