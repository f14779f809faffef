"""The demo report's PNG plots (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from routing_pipelines.simulation.report import DayFigures
from routing_pipelines.simulation.simulator import SimulationResult
from routing_runtime.types import TaskType


def traffic_share_plot(result: SimulationResult, path: Path) -> Path:
    """One panel per task type: each model's share of that task's requests, day by day."""
    models = sorted({m for day in result.days for (_, _, m) in day.traffic})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    days = [d.day for d in result.days]
    rows = -(-len(TaskType) // 4)  # four panels a row, as many rows as the task types need
    fig, axes = plt.subplots(rows, 4, figsize=(18, 4 * rows), sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat[len(TaskType):]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, TaskType):
        totals = [sum(n for (t, _, _), n in d.traffic.items() if t is task) or 1 for d in result.days]
        bottom = [0.0] * len(days)
        for model in models:
            share = [sum(n for (t, _, m), n in d.traffic.items() if t is task and m == model) / total
                     for d, total in zip(result.days, totals)]
            ax.bar(days, share, bottom=bottom, color=colours[model], width=0.85, label=model)
            bottom = [b + s for b, s in zip(bottom, share)]
        for event in result.scenario.events:
            ax.axvline(event.day - 0.5, color="black", linestyle="--", linewidth=1)
        ax.set_title(task.value)
        ax.set_ylim(0, 1)
    for ax in axes[-1]:
        ax.set_xlabel("simulated day")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of the task's requests")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(models), 8), frameon=False)
    fig.suptitle(f"Traffic share per model, scenario '{result.scenario.name}' (all preferences; dashed: events)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def regret_plot(result: SimulationResult, figures: list[DayFigures], path: Path) -> Path:
    """Cumulative regret of the router and of static registry rules against the oracle."""
    days = [d.day for d in result.days]

    def cumulative(values):
        out, total = [], 0.0
        for v in values:
            total += v
            out.append(total)
        return out

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    left.plot(days, cumulative(f.requests - f.router_to_best for f in figures), marker="o", label="this router")
    left.plot(days, cumulative(f.requests - f.static_to_best for f in figures), marker="s", label="static registry rules")
    left.set_xlabel("simulated day")
    left.set_ylabel("requests not sent to the true best (cumulative)")
    left.set_title("Routing regret against the oracle")
    right.plot(days, cumulative(f.oracle_quality - f.router_quality for f in figures), marker="o", label="this router")
    right.plot(days, cumulative(f.oracle_quality - f.static_quality for f in figures), marker="s", label="static registry rules")
    right.set_xlabel("simulated day")
    right.set_ylabel("quality points short of the oracle (cumulative)")
    right.set_title("Quality regret against the oracle")
    for ax in (left, right):
        for event in result.scenario.events:
            ax.axvline(event.day - 0.5, color="black", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Scenario '{result.scenario.name}': lower is better (dashed: events)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
