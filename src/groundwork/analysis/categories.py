"""What kind of change an idea is (idea_categories.py's six). Labelled by a language
model when the run has one configured, by keywords otherwise; the model's answers are
recorded in the run like every other call, so a second report pays nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from groundwork.idea_categories import CATEGORIES, fold, keyword_category
from groundwork.llm.base import LLM, LLMError, LLMRequest


@dataclass(frozen=True)
class IdeaText:
    id: str
    title: str
    text: str


def label_ideas(ideas: Sequence[IdeaText], llm: LLM | None = None) -> tuple[dict[str, str], str]:
    """A category per idea id, and who labelled them ("model provider:name" or "keywords").

    With a model, ideas it leaves unlabelled (or a failed call) fall back to keywords;
    the returned source says so."""
    labels = {i.id: keyword_category(i.title, i.text) for i in ideas}
    if llm is None or not ideas:
        return labels, "keywords"
    try:
        answered = _ask_model(llm, ideas)
    except (LLMError, ValueError, KeyError) as exc:  # the report still gets keyword labels
        return labels, f"keywords (the model {llm.provider}:{llm.model} failed: {str(exc).splitlines()[0][:120]})"
    labels.update({k: fold(v) for k, v in answered.items() if k in labels})
    missing = len(ideas) - sum(1 for i in ideas if i.id in answered)
    source = f"{llm.provider}:{llm.model}"
    return labels, source + (f" ({missing} by keywords)" if missing else "")


def _ask_model(llm: LLM, ideas: Sequence[IdeaText]) -> dict[str, str]:
    listing = "\n\n".join(f"[{i.id}] {i.title}\n{i.text[:600]}" for i in ideas)
    response = llm.complete(
        LLMRequest(
            role="labeller",
            call_key=f"categorize:{len(ideas)}",
            system="You label machine-learning research ideas by the kind of change they make.",
            context="",
            messages=[
                {
                    "role": "user",
                    "content": (
                        "Label each idea below with exactly one category from: "
                        + ", ".join(CATEGORIES)
                        + ". hyperparameter: learning rates, schedules, sizes of steps or batches; architecture: the "
                        "network's structure, normalization, initialization; optimizer: the update rule and its "
                        "state; loss: the objective, rewards, regularization terms; data: what is trained on, "
                        "sequence lengths, sampling of examples. Answer with a JSON object mapping each idea id to "
                        'its category, e.g. {"e1-01": "optimizer"}, and nothing else.\n\n' + listing
                    ),
                }
            ],
            max_tokens=max(400, 30 * len(ideas)),
            temperature=0.0,
        )
    )
    match = re.search(r"\{.*\}", response.text, re.DOTALL)
    if match is None:
        raise ValueError("the answer held no JSON object")
    answer = json.loads(match.group(0))
    if not isinstance(answer, dict):
        raise ValueError("the answer was not a JSON object")
    return {str(k): str(v) for k, v in answer.items()}


def run_labeller(run_dir, ideator_spec: str, choice: str = "auto") -> tuple[LLM | None, str]:
    """The model that labels a run's ideas, and a note when none does.

    "auto": the run's own ideator model, when it is a provider model whose key is set
    (never the offline catalog or a replay, which cannot answer new questions);
    "keywords": no model; anything else: a model spec. Calls are recorded in the run
    (role "labeller"), so their cost shows with the run's and a second report is free."""
    from groundwork.llm.factory import make_llm
    from groundwork.llm.pricing import PriceTable
    from groundwork.llm.recording import RecordingLLM

    if choice == "keywords":
        return None, ""
    spec = ideator_spec if choice == "auto" else choice
    if choice == "auto" and (spec == "catalog" or spec.startswith("replay:")):
        return None, ""
    try:
        inner = make_llm(spec, "labeller")
    except LLMError as exc:
        if choice != "auto":
            raise
        return None, f"categories by keywords: the run's model {spec} is not usable here ({str(exc).splitlines()[0]})"
    return RecordingLLM(inner, run_dir, PriceTable.load()), ""
