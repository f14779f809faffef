"""The demo's report: what the router converged to against the truth, what it cost, how fast it
reacted to each event, as a printed table, ``report.md`` and PNG plots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from routing_pipelines.simulation.simulator import SimulationResult, true_best, true_cost
from routing_runtime.registry import ModelRegistry
from routing_runtime.rules import build_rules, registry_estimates
from routing_runtime.types import Cell, RoutingPreference, all_cells

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


#: What each plot of the report shows, by its file name.
PLOT_CAPTIONS: dict[str, tuple[str, str]] = {
    "traffic_share.png": (
        "Traffic share per cell",
        "One panel per task type (rows) and preference (columns): each model's share of the cell's requests"
        " day by day; the black line is the share its true best got, which should rise towards 1.",
    ),
    "regret.png": (
        "Regret and spend against the oracle",
        "Cumulative requests not sent to the true best, quality points short of the oracle, and spend in USD,"
        " for this router and for static rules built from the registry alone.",
    ),
}


@dataclass(frozen=True)
class PolicyTotals:
    """One policy's figures over the whole run; the router's are measured, the others expected."""

    name: str
    mean_quality: float
    cost_usd: float
    to_best: float  # share of the requests sent to the true best
    measured: bool


def policy_totals(figures: list[DayFigures]) -> tuple[PolicyTotals, PolicyTotals, PolicyTotals]:
    """The router, static registry rules and the oracle over the whole run, in that order."""
    requests = sum(f.requests for f in figures) or 1

    def total(attr: str) -> float:
        return sum(getattr(f, attr) for f in figures)

    return (
        PolicyTotals("this router", total("router_quality") / requests, total("router_cost"), total("router_to_best") / requests, True),
        PolicyTotals("static rules from the registry", total("static_quality") / requests, total("static_cost"),
                     total("static_to_best") / requests, False),
        PolicyTotals("oracle that knows the truth", total("oracle_quality") / requests, total("oracle_cost"), 1.0, False),
    )


def _policy_table(figures: list[DayFigures]) -> list[str]:
    """Markdown rows: quality, spend and routing of each policy, spend also against the oracle."""
    requests = sum(f.requests for f in figures) or 1
    policies = policy_totals(figures)
    oracle = policies[-1]
    rows = ["| policy | mean quality | total cost (USD) | cost per request (USD) | cost against the oracle | requests to the true best |",
            "|---|--:|--:|--:|--:|--:|"]
    for p in policies:
        against = f"{p.cost_usd / oracle.cost_usd - 1:+.1%}" if oracle.cost_usd and p is not oracle else "—"
        rows.append(f"| {p.name} ({'measured' if p.measured else 'expected'}) | {p.mean_quality:.4f} | {p.cost_usd:,.2f} |"
                    f" {p.cost_usd / requests:.5f} | {against} | {p.to_best:.1%} |")
    return rows


def _convergence_table(conv: list[dict]) -> list[str]:
    """Markdown rows: a task type per row, a preference per column, the router's top model in each
    cell with its share, and the true best where the router's top model is another."""
    prefs = [p.value for p in RoutingPreference]
    by_cell = {(r["task"], r["preference"]): r for r in conv}
    rows = ["| task type | " + " | ".join(prefs) + " |", "|---|" + "---|" * len(prefs)]
    for task in dict.fromkeys(r["task"] for r in conv):
        cells = []
        for pref in prefs:
            r = by_cell[(task, pref)]
            cells.append(f"✓ {r['router']} ({r['share']:.0%})" if r["match"]
                         else f"✗ {r['router']} ({r['share']:.0%}); true best **{r['true_best']}**")
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    return rows


def _reaction_lines(result: SimulationResult) -> list[str]:
    """Markdown: a heading per event, then a table of the cells whose true best it moved."""
    events = reactions(result)
    if not events:
        return [f"No events in the {len(result.days)} simulated days.", ""]
    lines = []
    for event in events:
        lines += [f"### Day {event['day']}: {event['event']}", "", f"Router: {_reacted(event)}.", ""]
        if event["cells"]:
            lines += ["| cell | true best before → after | router followed after |", "|---|---|---|"]
        for cell in event["cells"]:
            nights = f"{cell['nights']} nightly run(s)" if cell["nights"] is not None else "**not within the run**"
            lines.append(f"| {cell['cell']} | {cell['old']} → {cell['new']} | {nights} |")
        lines.append("")
    return lines


def render_markdown(result: SimulationResult, figures: list[DayFigures], images: Mapping[str, str]) -> str:
    """The whole report. ``images``: plot file name (a key of :data:`PLOT_CAPTIONS`) -> the link
    to it: its name beside ``report.md``, or a ``data:`` URL where the report travels alone (Dagster)."""
    scenario = result.scenario
    conv = convergence(result)
    matched = sum(r["match"] for r in conv)
    lines = [
        f"# Routing demo: `{scenario.name}`", "",
        f"{scenario.description}", "",
        f"{scenario.days} simulated days × {scenario.requests_per_day} requests, one `routing learn` per night. "
        "The ground truth (true qualities, latencies, costs) is **synthetic**, defined by the scenario file.", "",
        f"## Convergence on the last day: {matched} of {len(conv)} cells route most traffic to the true best", "",
        "The router's top model in each cell, with its share of the cell's requests on the last day.", "",
        *_convergence_table(conv),
        "", "## Realised quality and cost over the whole run", "",
        *_policy_table(figures), "",
        "The oracle picks each preference's true best, so it is not the highest-quality policy for cost or latency preferences.",
        "", "## Events and reactions", "",
        *_reaction_lines(result),
        "## Plots", "",
    ]
    for name, src in images.items():
        title, caption = PLOT_CAPTIONS[name]
        lines += [f"### {title}", "", caption, "", f"![{title}]({src})", ""]
    return "\n".join(lines)


def headline(result: SimulationResult, figures: list[DayFigures]) -> dict[str, str]:
    """The run's figures in a few words each, by name: what the Dagster UI shows inline."""
    conv = convergence(result)
    router, static, oracle = policy_totals(figures)
    against = f" ({router.cost_usd / oracle.cost_usd - 1:+.1%} against the oracle)" if oracle.cost_usd else ""
    return {
        "cells_converged": f"{sum(r['match'] for r in conv)} of {len(conv)}",
        "mean_quality": f"router {router.mean_quality:.4f}, static rules {static.mean_quality:.4f}, oracle {oracle.mean_quality:.4f}",
        "spend_usd": f"router {router.cost_usd:,.2f}{against}, static rules {static.cost_usd:,.2f}, oracle {oracle.cost_usd:,.2f}",
    }


def render_summary(result: SimulationResult, figures: list[DayFigures]) -> str:
    """The headline of the report as Markdown (for the Dagster UI): convergence, quality and
    spend against the oracle, and how each event was followed."""
    conv = convergence(result)
    lines = [f"**Scenario `{result.scenario.name}`**: {sum(r['match'] for r in conv)} of {len(conv)} cells route most"
             " traffic to the true best on the last day.", "", *_policy_table(figures), ""]
    for event in reactions(result):
        lines.append(f"* day {event['day']}: {event['event']}: {_reacted(event)}")
    return "\n".join(lines)


def _reacted(event: dict) -> str:
    worst = [c["nights"] for c in event["cells"]]
    if not worst:
        return "no cell affected"
    if None in worst:
        return f"{worst.count(None)} of {len(worst)} affected cells not followed within the run"
    return f"followed in {max(worst)} nightly run(s) in all {len(worst)} affected cells"


def print_summary(result: SimulationResult, figures: list[DayFigures]) -> str:
    """The report for a terminal: one line per cell, then the totals and the events."""
    conv = convergence(result)
    lines = [f"{'task type':<16} {'preference':<15} {'router (share)':<36} {'true best':<28}"]
    for r in conv:
        mark = "ok" if r["match"] else "MISS"
        router = f"{r['router']} ({r['share']:.0%})"
        lines.append(f"{r['task']:<16} {r['preference']:<15} {router:<36} {r['true_best']:<28} {mark}")
    router, static, oracle = policy_totals(figures)
    lines += [
        "",
        f"converged: {sum(r['match'] for r in conv)} of {len(conv)} cells",
        f"mean quality: router {router.mean_quality:.4f}, static rules {static.mean_quality:.4f}, oracle {oracle.mean_quality:.4f}",
        f"total cost:   router ${router.cost_usd:.2f}, static rules ${static.cost_usd:.2f}, oracle ${oracle.cost_usd:.2f}",
    ]
    for event in reactions(result):
        lines.append(f"day {event['day']}: {event['event']}: {_reacted(event)}")
    return "\n".join(lines)
