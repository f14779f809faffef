"""The publication gate, end to end: `routing learn` on simulated homes (synthetic ground truth).

* The poisoned evaluator (issue 10): outcome rows not tied to decisions report 0.99 for a model
  whose decision-tied outcomes average 0.5; without the gate the next rules send general/quality
  and general/balanced to it. The gate holds it to its share in force and names the cells.
* A candidate worse than the logged policy with confidence, against the learner's forecast, is
  blocked: exit 1, status ``blocked``, the cells and figures named, the rules in force stay.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from routing_pipelines.learn import learn
from routing_pipelines.simulation.scenarios import load_scenario
from routing_pipelines.simulation.simulator import simulate
from routing_runtime import ModelRouter, RoutingPreference, TaskType
from routing_runtime.store import Store

POISONED = "qwen2.5-math-72b-instruct"  # true quality on general 0.50 (stationary.toml), ~1% of general's traffic
ROUTING = [sys.executable, "-m", "routing_runtime.cli"]


def routing(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ROUTING, *args], capture_output=True, text=True, env={**os.environ, "ROUTING_PROGRESS": ""})


def shares(home: Path, task: str, model: str) -> dict[str, float]:
    with ModelRouter.open(home) as router:
        return {r.preference.value: r.selection_probability for r in router.rule_set.rows
                if r.task_type.value == task and r.model_id == model}


def poison(home: Path, day: dt.date, rows: int) -> None:
    """An evaluator that reports 0.99 (and a low cost) for the model, outside any decision."""
    with ModelRouter.open(home) as router:
        for i in range(rows):
            at = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=86_000 * i / rows)
            router.record_performance(None, "success", 0.99, 1800, 1200, 0.0001, model_id=POISONED, task_type="general", at=at)


def poisoned_nights(rows_per_day: int, verdicts: list[dict]):
    """The simulator's nightly learn, after the day's poisoned rows (the evaluator inflates every
    day, so no change point marks it), keeping every night's result."""
    def learn_night(home: Path, day: dt.date) -> None:
        poison(home, day, rows_per_day)
        result = learn(home, day, quiet=True)
        verdicts.append({"day": day, "status": result.status, "gate": result.gate})
    return learn_night


@pytest.fixture(scope="module")
def poisoned_home(tmp_path_factory) -> tuple[Path, dt.date, list[dict]]:
    scenario = dataclasses.replace(load_scenario("stationary"), days=4, requests_per_day=1600)
    home = tmp_path_factory.mktemp("poisoned") / "home"
    nights: list[dict] = []
    simulate(scenario, home, seed=3, learn=poisoned_nights(1000, nights))  # 4,000 rows in all
    return home, scenario.start + dt.timedelta(days=scenario.days - 1), nights


def test_poisoned_evaluator_is_held_off_general_quality_and_balanced(poisoned_home, tmp_path):
    source, day, nights = poisoned_home
    home = tmp_path / "home"
    shutil.copytree(source, home, symlinks=True)
    # Every night was published with the poisoned model held.
    assert [n["status"] for n in nights] == ["published"] * 4 and [n["gate"]["status"] for n in nights] == ["held"] * 4
    with Store.open_home(home) as db:
        registry_rules = db.load_rule_set(1)
    before = {r.preference.value: r.selection_probability for r in registry_rules.rows
              if r.task_type is TaskType.GENERAL and r.model_id == POISONED}
    assert before["quality"] < 0.05 and before["balanced"] < 0.05

    gated = routing("learn", "--home", str(home), "--as-of", str(day), "--json")
    assert gated.returncode == 0, gated.stderr
    result = json.loads(gated.stdout)
    assert result["status"] == "published" and result["gate"]["status"] == "held"
    held = {(h["task_type"], h["preference"]) for h in result["gate"]["held"] if h["model_id"] == POISONED}
    assert {("general", "quality"), ("general", "balanced")} <= held
    assert all(h["untied_share"] > 0.9 for h in result["gate"]["held"])
    after = shares(home, "general", POISONED)
    for preference in ("quality", "balanced"):  # never more than its share in force (to the floor's rounding)
        assert after[preference] <= before[preference] + 1e-3
    # The rest of the set learned: the cells' other models took the traffic.
    with ModelRouter.open(home) as router:
        assert router.rule_set.version == result["rule_set_version"]
        quality = {r.model_id: r.selection_probability for r in router.rule_set.rows
                   if r.task_type is TaskType.GENERAL and r.preference is RoutingPreference.QUALITY}
    assert max(quality, key=quality.get) != POISONED and abs(sum(quality.values()) - 1) < 1e-3

    # The human summary names the held cells and why.
    again = routing("learn", "--home", str(home), "--as-of", str(day))
    assert again.returncode == 0
    assert f"general/quality: {POISONED} held at" in again.stderr and "not tied to decisions" in again.stderr

    # --no-gate publishes the candidate as learned (the failure the gate prevents) and says so.
    forced = routing("learn", "--home", str(home), "--as-of", str(day), "--no-gate", "--json")
    assert forced.returncode == 0, forced.stderr
    document = json.loads(forced.stdout)
    assert document["gate"]["status"] == "overridden" and document["gate"]["enforced"] is False
    taken = shares(home, "general", POISONED)
    assert taken["quality"] > 0.9 and taken["balanced"] > 0.9
    history = json.loads(routing("history", "--home", str(home), "--json").stdout)
    newest = history[0]
    assert newest["rule_set_version"] == document["rule_set_version"] and newest["gate"]["status"] == "overridden"
    assert [h["gate"]["status"] for h in history[:3]] == ["overridden", "held", "held"]
    text = routing("history", "--home", str(home)).stdout
    assert "overridden" in text and "held" in text


@pytest.fixture(scope="module")
def judged_home(tmp_path_factory) -> tuple[Path, dt.date]:
    """General/quality traffic only. The registry overrates the poisoned model (prior 0.95 on
    general), so day one sends it most traffic and its decisions come back at 0.5: the logs know
    it well. The learner then drops it; on day four the evaluator's inflated rows arrive. Holds
    are off (``gate_max_untied_share`` 1) and no change point discounts either side
    (``change_z_threshold`` out of reach), so the worse-with-confidence guard alone judges."""
    base = load_scenario("stationary")
    learning = dataclasses.replace(base.registry.learning, gate_max_untied_share=1.0, change_z_threshold=1e9)
    overrated = dataclasses.replace(base.registry.get(POISONED), off_specialty_prior_quality=0.95)
    registry = dataclasses.replace(base.registry.replace_model(overrated), learning=learning)
    scenario = dataclasses.replace(
        base, days=4, requests_per_day=1200, registry=registry,
        task_mix={TaskType.GENERAL: 1.0}, preference_mix={RoutingPreference.QUALITY: 1.0},
    )
    home = tmp_path_factory.mktemp("judged") / "home"
    last = scenario.start + dt.timedelta(days=scenario.days - 1)

    def learn_night(home: Path, day: dt.date) -> None:
        if day == last:
            poison(home, day, 20_000)
            return  # the test runs this night's learn through the CLI
        assert learn(home, day, quiet=True).status == "published"
    simulate(scenario, home, seed=5, learn=learn_night)
    return home, last


def test_a_candidate_worse_than_the_logged_policy_with_confidence_is_blocked(judged_home, tmp_path):
    source, day = judged_home
    home = tmp_path / "home"
    shutil.copytree(source, home, symlinks=True)
    with ModelRouter.open(home) as router:
        in_force = router.rule_set.version

    blocked = routing("learn", "--home", str(home), "--as-of", str(day), "--json")
    assert blocked.returncode == 1
    result = json.loads(blocked.stdout)
    assert result["status"] == "blocked" and result["gate"]["status"] == "blocked"
    assert result["rule_set_version"] == in_force
    cells = {(b["task_type"], b["preference"]) for b in result["gate"]["blocked"]}
    assert ("general", "quality") in cells
    worst = next(b for b in result["gate"]["blocked"] if (b["task_type"], b["preference"]) == ("general", "quality"))
    assert worst["improvement_high"] < -0.05 and worst["effective_sample_size"] >= 50
    assert worst["forecast_improvement"] - 0.05 > worst["improvement_high"]
    assert any("general/quality: candidate quality" in p for p in result["problems"])
    with ModelRouter.open(home) as router:
        assert router.rule_set.version == in_force  # the previous rules stay

    text = routing("learn", "--home", str(home), "--as-of", str(day))
    assert text.returncode == 1
    assert "gate blocked" in text.stderr and "general/quality: candidate quality" in text.stderr
    # A block is an outcome, not a crash: no stack trace, no "step failed" line.
    assert "Stack Trace" not in text.stderr and "Traceback" not in text.stderr
    assert not any(p.startswith("step ") for p in result["problems"]), result["problems"]

    forced = routing("learn", "--home", str(home), "--as-of", str(day), "--no-gate", "--json")
    assert forced.returncode == 0, forced.stderr
    document = json.loads(forced.stdout)
    assert document["status"] == "published" and document["gate"]["status"] == "overridden"
    assert document["gate"]["blocked"]  # what the gate found is recorded with the set it did not stop
    assert shares(home, "general", POISONED)["quality"] > 0.5
