"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed).

Every function takes one or more runs' details and always returns a figure: where a run
has nothing to show, the figure says so rather than disappearing from the report."""

from __future__ import annotations

import io
import random
import textwrap
from collections import Counter

from groundwork.analysis.details import RunDetails
from groundwork.analysis.summary import RowStatus
from groundwork.curves import curve_series
from groundwork.idea_categories import CATEGORIES
from groundwork.records import FailureCategory

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("reports need matplotlib: pip install 'groundwork[report]' (or pip install matplotlib)") from exc

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
OUTCOME_COLORS = {"beats baseline": "#2ca02c", "valid": "#9ecae1", "failed": "#d62728"}
DPI = 110


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")  # a legend outside the axes stays in
    plt.close(fig)
    return buf.getvalue()


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, textwrap.fill(message, 40), ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def _label(run: RunDetails, runs: list[RunDetails]) -> str:
    return run.summary.run_id if len(runs) > 1 else "best so far"


def _better(run: RunDetails):
    return run.summary.objective.best


def _metric_axis(ax, run: RunDetails) -> None:
    ax.set_ylabel(f"{run.summary.metric} ({run.summary.objective.sense})")


def _baseline_band(ax, run: RunDetails, color: str = "#555555", label: bool = True) -> None:
    base = run.summary.baseline.metric if run.summary.baseline else None
    if base is None:
        return
    ax.axhline(base, color=color, linestyle="--", linewidth=1, label="baseline" if label else None)
    std = run.summary.noise_std
    if std:
        ax.axhspan(base - 2 * std, base + 2 * std, color=color, alpha=0.12, label="baseline ± 2 sd" if label else None)


def best_so_far_by_epoch(runs: list[RunDetails]) -> bytes:
    fig, ax = plt.subplots(figsize=(7.5, 4))
    drawn = False
    for n, run in enumerate(runs):
        better = _better(run)
        base = run.summary.baseline.metric if run.summary.baseline else None
        epochs = sorted({d.idea.epoch for d in run.ideas})
        best, xs, ys = base, [0] if base is not None else [], [base] if base is not None else []
        for epoch in epochs:
            values = [d.result.metric for d in run.ideas if d.idea.epoch == epoch and d.valid]
            if values:
                best = better(values) if best is None else better([best, *values])
            if best is not None:
                xs.append(epoch)
                ys.append(best)
        if xs:
            ax.plot(xs, ys, marker="o", color=COLORS[n % len(COLORS)], label=_label(run, runs))
            drawn = True
        _baseline_band(ax, run, COLORS[n % len(COLORS)] if len(runs) > 1 else "#555555", label=n == 0)
    if not drawn:
        _empty(ax, "no valid result yet")
    else:
        ax.set_xlabel("epoch (0 = baseline)")
        _metric_axis(ax, runs[0])
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    ax.set_title("Best so far, per epoch")
    return _png(fig)


def best_so_far_by_idea(runs: list[RunDetails]) -> bytes:
    fig, ax = plt.subplots(figsize=(7.5, 4))
    drawn = False
    for n, run in enumerate(runs):
        color = COLORS[n % len(COLORS)]
        better = _better(run)
        executed = sorted((d for d in run.ideas if d.settled and d.row.status != RowStatus.PATCH_FAILED), key=_order)
        best = run.summary.baseline.metric if run.summary.baseline else None
        xs, ys, px, py = ([0], [best], [], []) if best is not None else ([], [], [], [])
        fx = []  # executed but no valid metric: marked on the best-so-far line
        for i, d in enumerate(executed, start=1):
            if d.valid:
                px.append(i)
                py.append(d.result.metric)
                best = d.result.metric if best is None else better([best, d.result.metric])
            else:
                fx.append(i)
            if best is not None:
                xs.append(i)
                ys.append(best)
        if xs:
            ax.step(xs, ys, where="post", color=color, label=_label(run, runs))
            ax.scatter(px, py, s=14, color=color, alpha=0.45, label="each idea" if n == 0 else None)
            fy = [ys[xs.index(x)] for x in fx if x in xs]
            ax.scatter(fx[: len(fy)], fy, s=22, marker="x", color="#d62728", label="failed" if n == 0 else None)
            drawn = True
        _baseline_band(ax, run, color if len(runs) > 1 else "#555555", label=n == 0)
    if not drawn:
        _empty(ax, "no executed idea with a valid result yet")
    else:
        ax.set_xlabel("executed ideas, in the order results arrived (0 = baseline)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        _metric_axis(ax, runs[0])
        ax.legend(fontsize=8)
    ax.set_title("Best so far, per executed idea")
    return _png(fig)


def _order(d) -> int:
    return d.order if d.order is not None else 10**9


def distribution_by_epoch(runs: list[RunDetails]) -> bytes:
    fig, axes = plt.subplots(1, len(runs), figsize=(7.5 if len(runs) == 1 else 4.2 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=False):
        epochs = sorted({d.idea.epoch for d in run.ideas})
        data = [[d.result.metric for d in run.ideas if d.idea.epoch == e and d.valid] for e in epochs]
        if not any(data):
            _empty(ax, "no valid result yet")
            ax.set_title(run.summary.run_id, fontsize=9)
            continue
        shown = [(e, v) for e, v in zip(epochs, data, strict=False) if v]
        ax.boxplot([v for _, v in shown], positions=[e for e, _ in shown], widths=0.5, showfliers=False)
        jitter = random.Random(0)
        for e, values in shown:
            ax.scatter([e + jitter.uniform(-0.12, 0.12) for _ in values], values, s=14, alpha=0.6, color="#1f77b4")
        _baseline_band(ax, run)
        ax.set_xlabel("epoch")
        _metric_axis(ax, run)
        ax.set_xticks(epochs)
        noise = "" if run.summary.noise_std else " (noise not measured)"
        ax.set_title(
            (run.summary.run_id + "\n" if len(runs) > 1 else "") + "valid results per epoch" + noise, fontsize=9
        )
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("Metric distribution per epoch, with the baseline and its noise band", fontsize=11)
    return _png(fig)


def execution_funnel(runs: list[RunDetails]) -> bytes:
    stages = ("proposed", "applied", "preflight_passed", "ran", "valid")
    labels = {"preflight_passed": "pre-flight passed"}
    groups = [
        (f"{run.summary.run_id}\n{pair}" if len(runs) > 1 else pair, funnel)
        for run in runs
        for pair, funnel in sorted(run.summary.funnels.items())
    ]
    fig, ax = plt.subplots(figsize=(8.5, 1.4 + 1.0 * max(1, len(groups))))
    if not groups:
        _empty(ax, "no idea has finished yet")
    else:
        height = 0.8 / len(stages)
        for s, stage in enumerate(stages):
            ys = [g - 0.4 + height * (s + 0.5) for g in range(len(groups))]
            values = [getattr(f, stage) for _, f in groups]
            ax.barh(
                ys, values, height=height * 0.95, color=plt.cm.Blues(0.3 + 0.15 * s), label=labels.get(stage, stage)
            )
            for y, v, (_, f) in zip(ys, values, groups, strict=False):
                share = f" ({v / f.proposed:.0%})" if f.proposed and stage != "proposed" else ""
                saved = f", {f.repaired} saved by repair" if stage == "valid" and f.repaired else ""
                caught = (
                    f", {f.preflight_caught} caught there" if stage == "preflight_passed" and f.preflight_caught else ""
                )
                ax.text(v, y, f" {v}{share}{caught}{saved}", va="center", fontsize=8)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([g for g, _ in groups], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ideas")
        ax.set_xlim(0, max(f.proposed for _, f in groups) * 1.25 + 0.5)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Execution funnel per model (ideator -> implementer)")
    return _png(fig)


def curve_label(idea_id: str, title: str, width: int = 48) -> str:
    """The idea's id and its title, shortened at a word with an ellipsis: never cut mid-word."""
    return f"{idea_id}: {textwrap.shorten(title, width=width, placeholder='…')}"


def training_curves_figure(run: RunDetails, k: int = 5):
    fig, ax = plt.subplots(figsize=(7.5, 4))
    shown = ([run.baseline] if run.baseline else []) + run.top(k)
    name = ""
    for n, d in enumerate(shown):
        key, xs, ys = curve_series(d.result)
        if not xs:
            continue
        name = name or key
        if key != name:
            continue
        style = {"color": "#333333", "linestyle": "--"} if d is run.baseline else {"color": COLORS[n % len(COLORS)]}
        ax.plot(xs, ys, linewidth=1.2, label=curve_label(d.idea.id, d.idea.title), **style)
    if not name:
        _empty(ax, "no training curves were logged (out/train_log.jsonl)")
    else:
        ax.set_xlabel("step")
        ax.set_ylabel(f"training {name}")
        # below the axes, where no curve hides it and a long title has the figure's width
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    ax.set_title(f"Training curves: baseline and top ideas ({run.summary.run_id})", fontsize=10)
    return fig


def training_curves(run: RunDetails, k: int = 5) -> bytes:
    return _png(training_curves_figure(run, k))


def _outcome(run: RunDetails, d) -> str:
    if not d.valid:
        return "failed"
    gain = run.summary.improvement(d.row)
    return "beats baseline" if gain is not None and gain > 0 else "valid"


def categories(runs: list[RunDetails]) -> bytes:
    fig, axes = plt.subplots(1, len(runs), figsize=(7.5 if len(runs) == 1 else 4.2 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=False):
        settled = [d for d in run.ideas if d.settled]
        if not settled:
            _empty(ax, "no idea has finished yet")
        else:
            left = [0] * len(CATEGORIES)
            for outcome, color in OUTCOME_COLORS.items():
                counts = [
                    sum(1 for d in settled if d.category == c and _outcome(run, d) == outcome) for c in CATEGORIES
                ]
                ax.barh(CATEGORIES, counts, left=left, color=color, label=outcome)
                left = [a + b for a, b in zip(left, counts, strict=False)]
            ax.invert_yaxis()
            ax.set_xlabel("ideas")
            ax.set_xlim(0, max(left) * 1.15)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend(fontsize=8, loc="lower right")
        ax.set_title(
            (run.summary.run_id + "\n" if len(runs) > 1 else "") + f"labelled by {run.categories_by}", fontsize=9
        )
    fig.suptitle("Idea categories and how they fared", fontsize=11)
    return _png(fig)


def failure_taxonomy(runs: list[RunDetails]) -> bytes:
    kinds = [str(c) for c in FailureCategory]
    counts = [Counter(str(d.result.failure) for d in run.ideas if d.result and d.result.failure) for run in runs]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    if not any(counts):
        _empty(ax, "no idea failed")
    else:
        height = 0.8 / len(runs)
        for n, (run, count) in enumerate(zip(runs, counts, strict=False)):
            ys = [k - 0.4 + height * (n + 0.5) for k in range(len(kinds))]
            ax.barh(
                ys,
                [count.get(k, 0) for k in kinds],
                height=height * 0.95,
                color=COLORS[n % len(COLORS)],
                label=run.summary.run_id,
            )
        ax.set_yticks(range(len(kinds)))
        ax.set_yticklabels(kinds)
        ax.invert_yaxis()
        ax.set_xlabel("ideas")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(runs) > 1:
            ax.legend(fontsize=8)
    ax.set_title("Failure taxonomy: why ideas did not produce a valid metric")
    return _png(fig)


def length_vs_success(runs: list[RunDetails]) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.8))
    settled = [d for run in runs for d in run.ideas if d.settled]
    jitter = random.Random(0)
    # Thinking as words where the model returned its text, else as the tokens it billed.
    thinking = ("thinking_words", "thinking length (words)", "words")
    if not any(d.thinking_words for d in settled) and any(d.thinking_tokens for d in settled):
        thinking = ("thinking_tokens", "thinking length (tokens)", "tokens")
    panels = ((axes[0], "idea_words", "idea length (words)", "words"), (axes[1], *thinking))
    for ax, attr, what, unit in panels:
        values = [(getattr(d, attr), d.valid) for d in settled]
        if not values or not any(v for v, _ in values):
            note = " (the ideator returned no thinking)" if attr.startswith("thinking") else ""
            _empty(ax, f"no {what.split(' (')[0]} recorded{note}")
            ax.set_title(what, fontsize=10)
            continue
        groups = {
            "executed\n(valid metric)": [v for v, ok in values if ok],
            "failed": [v for v, ok in values if not ok],
        }
        for x, vs in enumerate(groups.values()):
            if vs:
                ax.boxplot([vs], positions=[x], widths=0.5, showfliers=False)
                color = OUTCOME_COLORS["beats baseline" if x == 0 else "failed"]
                ax.scatter([x + jitter.uniform(-0.15, 0.15) for _ in vs], vs, s=14, alpha=0.6, color=color)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{label}\nn={len(vs)}" for label, vs in groups.items()], fontsize=8)
        ax.set_ylabel(unit)
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(f"{what} vs execution success", fontsize=10)
    return _png(fig)


def costs(runs: list[RunDetails]) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 1.6 + 0.6 * len(runs)))
    names = [run.summary.run_id if len(runs) > 1 else "this run" for run in runs]
    dollars = [run.summary.llm_spent_usd for run in runs]
    replayed = [run.summary.llm_replayed_usd for run in runs]
    unpriced = sum(run.summary.unpriced_calls for run in runs)
    replays = sum(run.summary.replayed_calls for run in runs)
    if not any(dollars) and not any(replayed):
        if unpriced:
            reason = f"{unpriced} calls to models with no price (GROUNDWORK_PRICES adds prices)"
        elif replays:
            reason = f"{replays} calls replayed from a recording, free"
        else:
            reason = "no paid model calls (the offline catalog, or no calls yet)"
        _empty(axes[0], "$0.00: " + reason)
    else:
        axes[0].barh(names, dollars, height=0.5, color="#1f77b4", label="paid")
        axes[0].barh(names, replayed, height=0.5, left=dollars, color="#c6dbef", label="recorded, replayed free")
        for y, (paid, free) in enumerate(zip(dollars, replayed, strict=True)):
            text = f" ${paid:.2f}" + (f" (+${free:.2f} replayed)" if free else "")
            axes[0].text(paid + free, y, text, va="center", fontsize=8)
        axes[0].set_xlim(0, max(a + b for a, b in zip(dollars, replayed, strict=True)) * 1.6)
        axes[0].set_xlabel("US dollars")
    axes[0].set_title("Language-model cost", fontsize=10)
    gpu = [run.gpu_hours for run in runs]
    cpu = [run.cpu_hours for run in runs]
    axes[1].barh(names, gpu, height=0.5, color="#2ca02c")
    axes[1].barh(names, cpu, height=0.5, left=gpu, color="#bcbd22")
    for y, (g, c) in enumerate(zip(gpu, cpu, strict=True)):
        axes[1].text(g + c, y, f" {g:.3g} GPU-h, {c:.3g} CPU-h", va="center", fontsize=8)
    axes[1].set_xlim(0, max([a + b for a, b in zip(gpu, cpu, strict=True)] + [0.001]) * 1.8)
    axes[1].set_xlabel("hours (job wall time x devices requested)")
    axes[1].set_title("Compute: GPU-hours (green), CPU-hours (olive)", fontsize=10)
    for ax in axes:
        ax.tick_params(axis="y", labelsize=8)
        ax.invert_yaxis()  # the first run on top, as in the tables
    return _png(fig)


def integrity(runs: list[RunDetails]) -> bytes:
    fig, ax = plt.subplots(figsize=(7.5, 3))
    counts = Counter()
    for run in runs:
        for d in run.all:
            for flag in d.flags:
                counts[flag.split(":")[0].split(" (")[0]] += 1
    if not counts:
        _empty(ax, "no result was flagged by the integrity checks")
    else:
        labels = sorted(counts, key=lambda k: -counts[k])
        ax.barh(labels, [counts[k] for k in labels], color="#d62728")
        ax.invert_yaxis()
        ax.set_xlabel("results flagged")
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Reward-hacking flags")
    return _png(fig)


def rl_steps(runs: list[RunDetails], tables: list[list[dict]]) -> bytes:
    """RL runs: reward and execution rate per step (left), and the diversity of each step's
    ideas (right), where a collapse onto a few ideas shows as falling distinct n-grams and
    rising similarity."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    rate_axis = left.twinx()
    for k, (run, rows) in enumerate(zip(runs, tables, strict=True)):
        if not rows:
            continue
        color = COLORS[k % len(COLORS)]
        name = f"{run.summary.run_id}: " if len(runs) > 1 else ""
        steps = [r["step"] for r in rows]
        left.plot(steps, [r["mean_reward"] for r in rows], "-o", color=color, markersize=3, label=f"{name}mean reward")
        left.plot(steps, [r["max_reward"] for r in rows], ":", color=color, label=f"{name}max reward")
        rates = [r["execution_rate"] for r in rows]
        rate_axis.plot(steps, rates, "--", color=color, alpha=0.4, label=f"{name}execution rate")
        for column, style in (
            ("distinct_1", "-"),
            ("distinct_2", "--"),
            ("pairwise_similarity", ":"),
            ("embedding_spread", "-."),
        ):
            values = [(r["step"], r[column]) for r in rows if r.get(column) is not None]
            if values:
                right.plot(*zip(*values, strict=True), style, color=color, label=f"{name}{column.replace('_', ' ')}")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("RL step")
    left.set_ylabel("reward")
    rate_axis.set_ylabel("execution rate")
    rate_axis.set_ylim(0, 1.05)
    left.set_title("Reward and execution rate", fontsize=10)
    right.set_xlabel("RL step")
    right.set_title("Diversity of each step's ideas", fontsize=10)
    handles, labels = left.get_legend_handles_labels()
    more, more_labels = rate_axis.get_legend_handles_labels()
    left.legend(handles + more, labels + more_labels, fontsize=7)
    if right.lines:
        right.legend(fontsize=7)
    else:
        _empty(right, "no diversity figures recorded")
    return _png(fig)
