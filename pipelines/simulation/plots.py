"""The demo report's PNG plots (matplotlib, no display needed).

Each plot has a ``*_figure`` function that builds it (what tests inspect) and a ``*_plot``
function that writes it as a PNG.
"""

from __future__ import annotations

from itertools import accumulate
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from routing_pipelines.simulation.report import DayFigures, policy_totals
from routing_pipelines.simulation.simulator import SimulationResult, true_best
from routing_runtime.types import RoutingPreference, TaskType

#: Label of the line, in every traffic panel, that marks the share sent to the true best.
TRUE_BEST_LABEL = "share sent to the true best"
DPI = 90


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, pil_kwargs={"optimize": True})
    plt.close(fig)
    return path


def _mark_events(ax, result: SimulationResult) -> None:
    for event in result.scenario.events:
        ax.axvline(event.day - 0.5, color="black", linestyle="--", linewidth=1)


def traffic_share_figure(result: SimulationResult) -> Figure:
    """One panel per cell, task types down and preferences across: each model's share of the
    cell's requests day by day, and a black line for the share its true best got that day.

    The grid has a row per :class:`TaskType` and a column per :class:`RoutingPreference`, so a
    new task type or preference gets its own panels. Per cell (not per task type) because the
    four preferences of a task have different true best models: summed, convergence cannot be
    seen.
    """
    tasks, prefs = list(TaskType), list(RoutingPreference)
    models = sorted({m for day in result.days for (_, _, m) in day.traffic})
    palette = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    colours = {m: palette(i % palette.N) for i, m in enumerate(models)}
    days = [d.day for d in result.days]
    fig, axes = plt.subplots(len(tasks), len(prefs), figsize=(4.4 * len(prefs), 1.95 * len(tasks) + 1.6),
                             sharex=True, sharey=True, squeeze=False)
    for row, task in enumerate(tasks):
        for col, pref in enumerate(prefs):
            ax = axes[row][col]
            shares = {m: [result.share(i, task, pref, m) for i in range(len(days))] for m in models}
            bottom = [0.0] * len(days)
            for model in models:
                ax.bar(days, shares[model], bottom=bottom, color=colours[model], width=0.85, label=model)
                bottom = [b + s for b, s in zip(bottom, shares[model])]
            best = [true_best(result.registry_by_day[i], result.truth_by_day[i], task, pref) for i in range(len(days))]
            ax.plot(days, [shares[b][i] if b in shares else 0.0 for i, b in enumerate(best)], color="black",
                    marker="o", markersize=3, linewidth=1.6, markeredgecolor="white", label=TRUE_BEST_LABEL)
            changes = [b for i, b in enumerate(best) if i == 0 or b != best[i - 1]]
            ax.set_title("true best: " + " → ".join(changes), fontsize=9, loc="left")
            _mark_events(ax, result)
            ax.set_ylim(0, 1.05)
            ax.tick_params(labelsize=8)
            if row == 0:
                ax.annotate(pref.value, xy=(0.5, 1.32), xycoords="axes fraction", ha="center", fontsize=13, weight="bold")
            if col == 0:
                ax.set_ylabel(task.value, fontsize=12, weight="bold")
            if row == len(tasks) - 1:
                ax.set_xlabel("simulated day", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[m]) for m in models]
    handles += [Line2D([], [], color="black", marker="o", markersize=4, markeredgecolor="white"),
                Line2D([], [], color="black", linestyle="--", linewidth=1)]
    labels = [*models, TRUE_BEST_LABEL, "event"]
    height = fig.get_figheight()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.45 / height),
               ncol=min(len(labels), 5), frameon=False, fontsize=11)
    fig.suptitle(f"Share of each cell's requests per model, day by day, scenario '{result.scenario.name}'",
                 fontsize=15, y=1 - 0.12 / height)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 / height))
    return fig


def traffic_share_plot(result: SimulationResult, path: Path) -> Path:
    """Write :func:`traffic_share_figure` to ``path`` as a PNG."""
    return _save(traffic_share_figure(result), path)


def regret_figure(result: SimulationResult, figures: list[DayFigures]) -> Figure:
    """Cumulative routing regret, quality regret and spend of the router and of static registry
    rules against the oracle: the router buys its quality, and the spend panel shows at what cost."""
    days = [d.day for d in result.days]
    router, static, oracle = policy_totals(figures)
    fig, (routing, quality, spend) = plt.subplots(1, 3, figsize=(20, 5.6))
    routing.plot(days, list(accumulate(f.requests - f.router_to_best for f in figures)), marker="o", label=router.name)
    routing.plot(days, list(accumulate(f.requests - f.static_to_best for f in figures)), marker="s", label=static.name)
    routing.set_ylabel("requests not sent to the true best (cumulative)")
    routing.set_title("Routing regret against the oracle (lower is better)")
    quality.plot(days, list(accumulate(f.oracle_quality - f.router_quality for f in figures)), marker="o", label=router.name)
    quality.plot(days, list(accumulate(f.oracle_quality - f.static_quality for f in figures)), marker="s", label=static.name)
    quality.set_ylabel("quality points short of the oracle (cumulative)")
    quality.set_title("Quality regret against the oracle (lower is better)")
    spend.plot(days, list(accumulate(f.router_cost for f in figures)), marker="o", label=f"{router.name} (measured)")
    spend.plot(days, list(accumulate(f.static_cost for f in figures)), marker="s", label=f"{static.name} (expected)")
    spend.plot(days, list(accumulate(f.oracle_cost for f in figures)), marker="^", color="black", label=f"{oracle.name} (expected)")
    spend.set_ylabel("spend, USD (cumulative)")
    spend.set_title(f"Spend: router ${router.cost_usd:,.2f}, {router.cost_usd / oracle.cost_usd - 1:+.1%} against the oracle"
                    if oracle.cost_usd else "Spend")
    for ax in (routing, quality, spend):
        _mark_events(ax, result)
        ax.set_xlabel("simulated day")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    fig.suptitle(f"Scenario '{result.scenario.name}': the router and static registry rules against an oracle that knows"
                 " the truth" + (" (dashed: events)" if result.scenario.events else ""), fontsize=13)
    fig.tight_layout()
    return fig


def regret_plot(result: SimulationResult, figures: list[DayFigures], path: Path) -> Path:
    """Write :func:`regret_figure` to ``path`` as a PNG."""
    return _save(regret_figure(result, figures), path)
