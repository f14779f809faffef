"""An agent host of a simulated fleet, as its own process: traffic through the public API of its
own home, outcomes drawn from a scenario's ground truth (what the fleet test and the fleet
benchmark run on each host).

``python -m routing_pipelines.simulation.fleet traffic --home H --day 2026-05-01 --requests 200 --seed 1``
sends one day of requests; ``... select-loop --home H --seconds 10 --out result.json`` selects and
records as fast as it can for that long and writes each ``select_model`` call's latency and, every
time it changes, the rule-set version the host served (with the wall-clock time it saw it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

from routing_pipelines.simulation.scenarios import load_scenario
from routing_pipelines.simulation.simulator import Scenario, draw_outcome
from routing_runtime import ModelRouter

DEFAULT_SCENARIO = "stationary"


def day_of_traffic(home: Path, day: dt.date, requests: int, seed: int, scenario: Scenario) -> int:
    """``requests`` decisions with their outcomes on ``day`` (spread over the UTC day); returns
    how many were recorded."""
    rng = random.Random(seed)
    tasks, task_weights = zip(*scenario.task_mix.items())
    preferences, preference_weights = zip(*scenario.preference_mix.items())
    models = {m.id: m for m in scenario.registry.models}
    with ModelRouter.open(home, seed=seed) as router:
        for i in range(requests):
            at = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=86_399 * i / requests)
            decision = router.select_model(rng.choices(tasks, task_weights)[0], rng.choices(preferences, preference_weights)[0], at=at)
            drawn = draw_outcome(rng, scenario.registry, scenario.truth, models[decision.model_id], decision.task_type)
            _, latency, cost, tokens, outcome = drawn
            router.record_performance(decision.decision_id, outcome, None, latency, tokens, cost, at=at)
    return requests


def select_loop(home: Path, seconds: float, seed: int, scenario: Scenario) -> dict:
    """Select and record for ``seconds``; the latency of every ``select_model`` call (µs) and the
    rule-set versions served, each with the wall-clock time it was first seen."""
    rng = random.Random(seed)
    tasks, task_weights = zip(*scenario.task_mix.items())
    models = {m.id: m for m in scenario.registry.models}
    latencies: list[float] = []
    versions: list[tuple[int | None, float]] = []
    with ModelRouter.open(home, seed=seed) as router:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            task = rng.choices(tasks, task_weights)[0]
            started = time.perf_counter()
            decision = router.select_model(task, "balanced")
            latencies.append((time.perf_counter() - started) * 1e6)
            if not versions or versions[-1][0] != decision.rule_set_version:
                versions.append((decision.rule_set_version, time.time()))
            drawn = draw_outcome(rng, scenario.registry, scenario.truth, models[decision.model_id], decision.task_type)
            _, latency, cost, tokens, outcome = drawn
            router.record_performance(decision.decision_id, outcome, None, latency, tokens, cost)
    return {"select_us": latencies, "versions": versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routing_pipelines.simulation.fleet", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    traffic = commands.add_parser("traffic", help="one day of requests")
    traffic.add_argument("--day", required=True, type=dt.date.fromisoformat)
    traffic.add_argument("--requests", type=int, default=200)
    loop = commands.add_parser("select-loop", help="select as fast as possible for a while, timing each call")
    loop.add_argument("--seconds", type=float, default=10.0)
    loop.add_argument("--out", required=True, type=Path)
    for command in (traffic, loop):
        command.add_argument("--home", required=True, type=Path)
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--scenario", default=DEFAULT_SCENARIO)
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    if args.command == "traffic":
        print(day_of_traffic(args.home, args.day, args.requests, args.seed, scenario))
    else:
        args.out.write_text(json.dumps(select_loop(args.home, args.seconds, args.seed, scenario)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
