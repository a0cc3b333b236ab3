"""The offline catalog ideator and implementer on the real nanogpt environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from groundwork.environments import builtin_names, load_environment
from groundwork.environments.manifest import Metric
from groundwork.ideation.catalog import LABEL, CatalogIdeator, load_catalog
from groundwork.implementation.catalog_implementer import CatalogImplementer
from groundwork.implementation.knob_implementer import preset_knobs
from groundwork.patch.patching import PatchPolicy
from groundwork.protocols import IdeationRequest, Scored, SearchHistory
from groundwork.records import Idea, PromptKind, Result
from groundwork.search.evolution import EvolutionStrategy, exploit_share

NANOGPT = load_environment("nanogpt")
POLICY = PatchPolicy.from_files(NANOGPT.manifest.files)
METRIC = Metric(name="val_bpb", direction="minimize", plausible_range=(0.3, 8.5))


def _idea(i: int, draft, epoch: int = 1) -> Idea:
    return Idea(
        id=f"e{epoch}-{i:02d}",
        epoch=epoch,
        index=i,
        title=draft.title,
        text=draft.text,
        category=draft.category,
        prompt_kind=PromptKind.SIMPLE,
        origin=LABEL,
        parents=draft.parents,
        payload=draft.payload,
    )


def test_every_catalog_idea_becomes_a_diff_that_applies_to_train_py_only():
    catalog = load_catalog(NANOGPT.catalog_path)
    assert len(catalog) >= 16
    assert len({c.category for c in catalog}) >= 5
    implementer = CatalogImplementer(POLICY)
    for entry in catalog:
        idea = Idea(
            id=entry.id,
            epoch=1,
            index=1,
            title=entry.title,
            text=entry.description,
            prompt_kind=PromptKind.SIMPLE,
            origin=LABEL,
            payload={"edits": [e.model_dump(exclude_none=True) for e in entry.edit]},
        )
        [attempt] = implementer.implement(idea, NANOGPT.codebase_dir)
        assert attempt.applied, (entry.id, attempt.error)
        assert attempt.files == ["train.py"] and attempt.diff.startswith("diff --git a/train.py b/train.py")


def test_a_catalog_edit_that_no_longer_matches_fails_with_its_reason():
    idea = Idea(
        id="x",
        epoch=1,
        index=1,
        title="t",
        text="t",
        prompt_kind=PromptKind.SIMPLE,
        origin=LABEL,
        payload={"edits": [{"file": "train.py", "find": "this text is not there", "replace": "x"}]},
    )
    [attempt] = CatalogImplementer(POLICY).implement(idea, NANOGPT.codebase_dir)
    assert not attempt.applied and "found it 0 times" in attempt.error


def test_explore_proposes_untried_ideas_and_exploit_refines_or_combines_winners():
    ideator = CatalogIdeator.from_file(NANOGPT.catalog_path, seed=1)
    empty = SearchHistory(metric=METRIC, baseline=None, scored=[])
    first = ideator.propose(IdeationRequest(PromptKind.SIMPLE, 4, epoch=1), empty)
    assert len(first) == 4 and len({d.title for d in first}) == 4
    ideas = [_idea(i, d) for i, d in enumerate(first, start=1)]
    baseline = Result(idea_id="baseline", metric=3.0)
    metrics = (2.9, 2.8, 3.1, 3.2)
    scored = [Scored(idea, Result(idea_id=idea.id, metric=m)) for idea, m in zip(ideas, metrics, strict=True)]
    history = SearchHistory(metric=METRIC, baseline=baseline, scored=scored, proposed=ideas)
    assert [s.idea.id for s in history.beating_baseline()] == ["e1-02", "e1-01"]

    requests = EvolutionStrategy(epochs=2, ideas_per_epoch=4).plan_epoch(2, history)
    assert [(r.kind, r.count) for r in requests] == [(PromptKind.EXPLOIT, 2), (PromptKind.EXPLORE, 2)]
    exploit = ideator.propose(requests[0], history)
    assert len(exploit) == 2
    for draft in exploit:
        assert set(draft.parents) <= {"e1-01", "e1-02"} and draft.parents
        assert "beat" in draft.text or "Refine" in draft.text
    explore = ideator.propose(requests[1], history)
    tried = {cid for i in ideas for cid in i.payload["catalog_ids"]}
    assert all(not set(d.payload["catalog_ids"]) & tried for d in explore)


def test_exploit_share_follows_the_paper_schedule():
    assert [exploit_share(e) for e in (0, 1, 2, 3, 4, 6, 8, 10)] == [0.5, 0.5, 0.6, 0.6, 0.7, 0.8, 0.8, 0.8]


def test_no_winners_means_all_explore():
    history = SearchHistory(metric=METRIC, baseline=Result(idea_id="baseline", metric=3.0), scored=[])
    requests = EvolutionStrategy(epochs=3, ideas_per_epoch=4).plan_epoch(3, history)
    assert [(r.kind, r.count) for r in requests] == [(PromptKind.SIMPLE, 4)]


def test_catalog_file_is_part_of_the_package():
    assert Path(NANOGPT.catalog_path).is_file()


def test_best_of_n_never_shows_results():
    from groundwork.search.evolution import BestOfNStrategy

    history = SearchHistory(metric=METRIC, baseline=Result(idea_id="baseline", metric=3.0), scored=[])
    requests = BestOfNStrategy(epochs=3, ideas_per_epoch=5).plan_epoch(2, history)
    assert [(r.kind, r.count, r.parents, r.tried) for r in requests] == [(PromptKind.SIMPLE, 5, [], [])]


def _deeper_won() -> tuple[SearchHistory, IdeationRequest]:
    """A history where "Deeper" (n_layer 2 -> 4) beat the baseline, and the exploit request refining it."""
    winner = Idea(
        id="e1-01", epoch=1, index=1, title="Deeper", text="Four blocks.", prompt_kind=PromptKind.SIMPLE, origin=LABEL,
        payload={"catalog_ids": ["deeper"], "edits": [{"file": "train.py", "knob": "n_layer", "value": "4"}]},
    )  # fmt: skip
    history = SearchHistory(
        metric=METRIC,
        baseline=Result(idea_id="baseline", metric=3.0),
        scored=[Scored(winner, Result(idea_id="e1-01", metric=2.9))],
        proposed=[winner],
    )
    return history, IdeationRequest(PromptKind.EXPLOIT, 3, epoch=2, parents=list(history.beating_baseline()))


def test_exploit_never_scales_a_knob_back_to_its_baseline_value():
    """A winner that set n_layer = 4 (the baseline has 2) is refined, never into n_layer = 2:
    that patch would change nothing."""
    editable = {"train.py": (NANOGPT.codebase_dir / "train.py").read_text()}
    assert "\nn_layer = 2  #" in editable["train.py"]
    history, request = _deeper_won()

    def mutated_values(baseline_files) -> set[str]:
        values = set()
        for seed in range(20):
            ideator = CatalogIdeator.from_file(NANOGPT.catalog_path, seed=seed, baseline_files=baseline_files)
            values |= {d.payload["edits"][0]["value"] for d in ideator.propose(request, history) if d.parents}
        return values

    informed = mutated_values(editable)
    assert informed and "2" not in informed  # 4 x 0.5 = 2 is the baseline's value
    assert "2" in mutated_values(None)  # the control: without the baseline's files it is proposed


@pytest.mark.parametrize(
    "name, profile",
    [(name, profile) for name in builtin_names() for profile in load_environment(name).manifest.profiles],
)
def test_each_profiles_catalog_applies_to_that_profiles_codebase(name, profile):
    """Every idea a profile's catalog offers it applies to that profile's codebase, and
    edits no knob that the profile's scale preset sets again (which would change nothing)."""
    env = load_environment(name, profile=profile)
    implementer = CatalogImplementer(PatchPolicy.from_files(env.manifest.files))  # the run's own rules
    catalog = load_catalog(env.catalog_path, profile)
    assert len(catalog) >= 8
    preset = _preset_knobs(env.codebase_dir / "train.py", env.profile().env.get("GROUNDWORK_SCALE"))
    for entry in catalog:
        idea = Idea(
            id=entry.id, epoch=1, index=1, title=entry.title, text=entry.description, prompt_kind=PromptKind.SIMPLE,
            origin=LABEL, payload={"edits": [e.model_dump(exclude_none=True) for e in entry.edit]},
        )  # fmt: skip
        [attempt] = implementer.implement(idea, env.codebase_dir)
        assert attempt.applied, (profile, entry.id, attempt.error)
        assert not {e.knob for e in entry.edit} & preset, (profile, entry.id, preset)


def _preset_knobs(train_py: Path, scale: str | None) -> set[str]:
    # only the training environments have a train.py with scale presets (circle_packing has neither)
    return preset_knobs(train_py.read_text(), scale) if scale else set()


def test_the_preset_check_sees_the_small_presets_knobs():
    knobs = _preset_knobs(NANOGPT.codebase_dir / "train.py", "small")
    assert {"n_layer", "block_size", "learning_rate"} <= knobs and "beta2" not in knobs
    assert _preset_knobs(NANOGPT.codebase_dir / "train.py", None) == set()


def test_an_exploit_ideas_title_states_the_change_its_diff_makes():
    """A refinement of "Deeper" (n_layer 2 -> 4) is applied to the baseline, so its title
    names the baseline's value as the start (the diff's), not the parent's 4."""
    editable = {"train.py": (NANOGPT.codebase_dir / "train.py").read_text()}
    history, request = _deeper_won()
    drafts = CatalogIdeator.from_file(NANOGPT.catalog_path, seed=1, baseline_files=editable).propose(request, history)
    mutated = [d for d in drafts if d.parents and d.payload.get("mutation")]
    assert mutated
    for draft in mutated:
        value = draft.payload["edits"][0]["value"]
        assert draft.title == f"Deeper: n_layer 2 -> {value}", draft.title
        assert draft.payload["title_root"] == "Deeper"
