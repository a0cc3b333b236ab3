"""Every idea of one or more runs (evolutionary search, best-of-N or RL) with its diff,
result and reward, as a dataset: JSON Lines or Parquet, one row per idea, loadable with
Hugging Face `datasets` (`load_dataset("parquet", data_files=...)`). Search runs can so
seed RL training (prompt/completion/reward rows), and RL runs be studied like any other.

Rewards are computed as RL computes them: improvement over the run's baseline in units
of its noise floor when known (else in metric units), `failure_reward` for an idea that
failed to implement or to run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from groundwork.analysis.summary import summarize
from groundwork.records import PatchStatus, PromptKind
from groundwork.rl.config import is_rl_run, load_rl_config
from groundwork.rl.reward import RewardScale
from groundwork.runs import run_environment
from groundwork.store import ArtifactStore, RunStore

FIELDS: dict[str, str] = {  # column -> Arrow type
    "run_id": "string",
    "environment": "string",
    "profile": "string",
    "idea_id": "string",
    "epoch": "int64",
    "prompt_kind": "string",
    "origin": "string",
    "title": "string",
    "text": "string",
    "thinking": "string",
    "parents": "list<string>",
    "prompt": "string",  # what the RL policy was prompted with ("" for other ideators)
    "completion": "string",  # the policy's raw completion ("" for other ideators)
    "implementer": "string",
    "patch_applied": "bool",
    "patch_error": "string",
    "diff": "string",  # the patch that applied, else the last attempt
    "failure": "string",  # "" when the idea produced a valid metric
    "metric_name": "string",
    "metric": "float64",
    "baseline_metric": "float64",
    "improvement": "float64",  # positive = better than the baseline, whatever the direction
    "reward": "float64",
    "reward_unit": "string",
    "seconds": "float64",
}


def idea_rows(run_dir: Path, failure_reward: float | None = None) -> list[dict[str, Any]]:
    run_dir = Path(run_dir)
    if failure_reward is None:
        failure_reward = load_rl_config(run_dir).failure_reward if is_rl_run(run_dir) else -1.0
    store = RunStore(run_dir)
    try:
        summary = summarize(store)
        info = store.run_info()
        metric = run_environment(store).manifest.metric
        results = store.results()
        baseline = results.get("baseline")
        scale = None
        if baseline is not None and baseline.valid:
            scale = RewardScale(metric, float(baseline.metric), summary.noise_std, failure_reward)  # type: ignore[arg-type]
        artifacts = ArtifactStore(run_dir)
        rows = []
        for idea in store.ideas():
            if idea.prompt_kind == PromptKind.BASELINE:
                continue
            result = results.get(idea.id)
            patches = store.patches(idea.id)
            applied = [p for p in patches if p.status == PatchStatus.APPLIED]
            patch = applied[-1] if applied else (patches[-1] if patches else None)  # the last ran (repairs)
            rl = idea.payload.get("rl", {})
            valid = result is not None and result.valid
            rows.append(
                {
                    "run_id": info.id,
                    "environment": info.info["environment"],
                    "profile": info.info["profile"],
                    "idea_id": idea.id,
                    "epoch": idea.epoch,
                    "prompt_kind": str(idea.prompt_kind),
                    "origin": idea.origin,
                    "title": idea.title,
                    "text": idea.text,
                    "thinking": idea.thinking,
                    "parents": list(idea.parents),
                    "prompt": rl.get("prompt", ""),
                    "completion": rl.get("completion", ""),
                    "implementer": patch.implementer if patch else "",
                    "patch_applied": bool(applied),
                    "patch_error": patch.error if patch and not applied else "",
                    "diff": (artifacts.get_text(patch.diff_path) or "") if patch else "",
                    "failure": "" if valid else (str(result.failure) if result and result.failure else "no result"),
                    "metric_name": metric.name,
                    "metric": float(result.metric) if valid else None,  # type: ignore[arg-type]
                    "baseline_metric": scale.baseline if scale else None,
                    "improvement": scale.improvement(float(result.metric)) if valid and scale else None,  # type: ignore[arg-type]
                    "reward": scale.reward(result) if scale and result is not None else None,
                    "reward_unit": scale.unit if scale else "",
                    "seconds": result.seconds if result else None,
                }
            )
        return rows
    finally:
        store.close()


def arrow_schema():
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
        "float64": pa.float64(),
        "list<string>": pa.list_(pa.string()),
    }
    return pa.schema([(name, types[kind]) for name, kind in FIELDS.items()])


def write_dataset(rows: list[dict[str, Any]], out: Path) -> Path:
    """Write rows as .jsonl or .parquet (by the file's suffix), atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".jsonl":
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError("Parquet needs pyarrow: pip install 'groundwork[rl]' (or write .jsonl)") from None
        pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), tmp)
    else:
        raise ValueError(f"{out}: write a .jsonl or a .parquet file")
    tmp.replace(out)
    return out


def export_runs(run_dirs: list[Path], outs: list[Path], failure_reward: float | None = None) -> int:
    rows = [row for run_dir in run_dirs for row in idea_rows(run_dir, failure_reward)]
    for out in outs:
        write_dataset(rows, out)
    return len(rows)
