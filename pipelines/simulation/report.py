"""The demo's report: what the router converged to against the truth, what it cost, how fast it
reacted to each event, as a printed table, ``report.md`` and PNG plots."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from routing_pipelines.simulation.simulator import SimulationResult, true_best, true_cost
from routing_runtime.registry import ModelRegistry
from routing_runtime.rules import build_rules, registry_estimates
from routing_runtime.types import Cell, all_cells

CELLS: list[Cell] = all_cells()


@dataclass
class DayFigures:
    """Per-day outcomes of three policies on the same requests."""

    requests: int
    router_quality: float
    router_cost: float
    router_to_best: int
    static_quality: float
    static_cost: float
    static_to_best: float
    oracle_quality: float
    oracle_cost: float


def static_policy(registry: ModelRegistry) -> dict[Cell, dict[str, float]]:
    """The rules a router that never learns would use: built from the registry alone."""
    policy: dict[Cell, dict[str, float]] = {}
    for row in build_rules(registry_estimates(registry), registry):
        if row.selection_probability > 0:
            policy.setdefault(Cell(row.task_type, row.preference), {})[row.model_id] = row.selection_probability
    return policy


def day_figures(result: SimulationResult) -> list[DayFigures]:
    figures = []
    for index, day in enumerate(result.days):
        registry, truth = result.registry_by_day[index], result.truth_by_day[index]
        static = static_policy(registry)
        by_id = {m.id: m for m in registry.models}
        cell_requests = Counter()
        for (task, pref, _), n in day.traffic.items():
            cell_requests[Cell(task, pref)] += n
        router_to_best = static_q = static_c = static_best = oracle_q = oracle_c = 0.0
        for (task, pref), n in cell_requests.items():
            best = true_best(registry, truth, task, pref)
            router_to_best += day.traffic[(task, pref, best)]
            for model, p in static[(task, pref)].items():
                static_q += n * p * truth[model].quality[task]
                static_c += n * p * true_cost(registry, truth[model], by_id[model], task)
            static_best += n * static[(task, pref)].get(best, 0.0)
            oracle_q += n * truth[best].quality[task]
            oracle_c += n * true_cost(registry, truth[best], by_id[best], task)
        total = sum(cell_requests.values())
        figures.append(DayFigures(total, day.quality * total, day.cost_usd, int(router_to_best),
                                  static_q, static_c, static_best, oracle_q, oracle_c))
    return figures


def reactions(result: SimulationResult) -> list[dict]:
    """For each event: the cells whose true best it changed, and the nights until the router's
    top model there was the new true best (None: not within the run)."""
    rows = []
    for event in result.scenario.events:
        before, at = event.day - 2, event.day - 1
        if before < 0 or at >= len(result.days):
            continue
        affected = []
        for task, pref in CELLS:
            old = true_best(result.registry_by_day[before], result.truth_by_day[before], task, pref)
            new = true_best(result.registry_by_day[at], result.truth_by_day[at], task, pref)
            if old != new:
                nights = next((d - at for d in range(at, len(result.days))
                               if result.top_model(d, task, pref) == new and result.share(d, task, pref, new) > 0.5), None)
                affected.append({"cell": f"{task.value}/{pref.value}", "old": old, "new": new, "nights": nights})
        rows.append({"day": event.day, "event": describe(event), "cells": affected})
    return rows


def describe(event) -> str:
    if event.kind == "quality_drop":
        tasks = ", ".join(t.value for t in event.task_types) or "all tasks"
        return f"{event.model_id} quality drops to {event.value} on {tasks}"
    if event.kind == "add_model":
        return f"{event.model_id} added to the registry"
    if event.kind == "price_change":
        return f"{event.model_id} price × {event.value}"
    return f"{event.model_id} disabled"


def convergence(result: SimulationResult) -> list[dict]:
    last = len(result.days) - 1
    rows = []
    for task, pref in CELLS:
        best = true_best(result.registry_by_day[last], result.truth_by_day[last], task, pref)
        top = result.top_model(last, task, pref)
        rows.append({"task": task.value, "preference": pref.value, "router": top,
                     "share": result.share(last, task, pref, top) if top else 0.0, "true_best": best, "match": top == best})
    return rows


def render_markdown(result: SimulationResult, figures: list[DayFigures], plots: list[str]) -> str:
    scenario = result.scenario
    conv = convergence(result)
    matched = sum(r["match"] for r in conv)
    total = lambda attr: sum(getattr(f, attr) for f in figures)  # noqa: E731
    requests = total("requests")
    lines = [
        f"# Routing demo: `{scenario.name}`", "",
        f"{scenario.description}", "",
        f"{scenario.days} simulated days × {scenario.requests_per_day} requests, one `routing learn` per night. "
        "The ground truth (true qualities, latencies, costs) is **synthetic**, defined by the scenario file.", "",
        f"## Convergence on the last day: {matched} of {len(conv)} cells route most traffic to the true best", "",
        "| task type | preference | router's top model (share) | true best | |", "|---|---|---|---|---|",
        *[f"| {r['task']} | {r['preference']} | {r['router']} ({r['share']:.0%}) | {r['true_best']} | {'✓' if r['match'] else '✗'} |"
          for r in conv],
        "", "## Realised quality and cost over the whole run", "",
        "| policy | mean quality | total cost (USD) | requests to the true best |", "|---|--:|--:|--:|",
        f"| this router (measured) | {total('router_quality') / requests:.4f} | {total('router_cost'):.2f} "
        f"| {total('router_to_best') / requests:.1%} |",
        f"| static rules from the registry (expected) | {total('static_quality') / requests:.4f} | {total('static_cost'):.2f} "
        f"| {total('static_to_best') / requests:.1%} |",
        f"| oracle that knows the truth (expected) | {total('oracle_quality') / requests:.4f} | {total('oracle_cost'):.2f} | 100.0% |",
        "",
        "The oracle picks each preference's true best, so it is not the highest-quality policy for cost or latency preferences.",
        "", "## Events and reactions", "",
    ]
    events = reactions(result)
    if not events:
        lines.append("No events in this scenario.")
    for event in events:
        lines.append(f"* **day {event['day']}: {event['event']}**")
        if not event["cells"]:
            lines.append("  * the true best of no cell changed")
        for cell in event["cells"]:
            nights = f"{cell['nights']} nightly run(s)" if cell["nights"] is not None else "not within the run"
            lines.append(f"  * {cell['cell']}: true best {cell['old']} → {cell['new']}; router followed after {nights}")
    lines += ["", "## Plots", "", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots], ""]
    return "\n".join(lines)


def print_summary(result: SimulationResult, figures: list[DayFigures]) -> str:
    conv = convergence(result)
    lines = [f"{'task type':<16} {'preference':<15} {'router (share)':<36} {'true best':<28}"]
    for r in conv:
        mark = "ok" if r["match"] else "MISS"
        router = f"{r['router']} ({r['share']:.0%})"
        lines.append(f"{r['task']:<16} {r['preference']:<15} {router:<36} {r['true_best']:<28} {mark}")
    requests = sum(f.requests for f in figures)
    lines += [
        "",
        f"converged: {sum(r['match'] for r in conv)} of {len(conv)} cells",
        f"mean quality: router {sum(f.router_quality for f in figures) / requests:.4f}, static rules "
        f"{sum(f.static_quality for f in figures) / requests:.4f}, oracle {sum(f.oracle_quality for f in figures) / requests:.4f}",
        f"total cost:   router ${sum(f.router_cost for f in figures):.2f}, static rules ${sum(f.static_cost for f in figures):.2f}, "
        f"oracle ${sum(f.oracle_cost for f in figures):.2f}",
    ]
    for event in reactions(result):
        worst = [c["nights"] for c in event["cells"]]
        reacted = "no cell affected" if not worst else (
            f"followed in {max(worst)} nightly run(s) in all {len(worst)} affected cells" if None not in worst
            else f"{worst.count(None)} of {len(worst)} affected cells not followed within the run")
        lines.append(f"day {event['day']}: {event['event']}: {reacted}")
    return "\n".join(lines)
