"""``select_model(within=...)`` and ``fallback(within=...)``: routing among the models a gateway
(LiteLLM's model group) can reach, with the propensity that restricted draw really had."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from conftest import BASE_MODELS_TOML, count_rows, db_connect
from routing_runtime import ModelRouter, RoutingPreference, TaskType
from routing_runtime.admin import initialise

SPREAD_REGISTRY = "[learning]\nexploration_floor = 0.5\n" + BASE_MODELS_TOML


@pytest.fixture
def spread_router(tmp_path, write_registry):
    home = tmp_path / "spread"
    initialise(home, registry_path=write_registry(SPREAD_REGISTRY))
    with ModelRouter.open(home, seed=7) as router:
        yield router


def probabilities(router, task="general", preference="balanced") -> dict[str, float]:
    rows = router.rule_set.models_for(TaskType(task), RoutingPreference(preference))
    return {r.model_id: r.selection_probability for r in rows if r.is_enabled and r.selection_probability > 0}


def stored(router, decision_id: str):
    conn = db_connect(router.home)
    try:
        return conn.execute("SELECT * FROM routing_decisions WHERE id = ?", (decision_id,)).fetchone()
    finally:
        conn.close()


def test_within_renormalises_the_rules_over_the_allowed_models(spread_router):
    p = probabilities(spread_router)
    assert len(p) >= 3, p
    allowed = sorted(p, key=p.get)[-2:]
    total = sum(p[m] for m in allowed)
    n = 3000
    counts = Counter()
    for _ in range(n):
        d = spread_router.select_model("general", "balanced", within=allowed)
        assert d.model_id in allowed
        assert d.propensity == pytest.approx(p[d.model_id] / total, abs=1e-5)
        counts[d.model_id] += 1
    for model_id in allowed:
        expected = p[model_id] / total
        assert abs(counts[model_id] / n - expected) <= 4.5 * math.sqrt(expected * (1 - expected) / n)
    row = stored(spread_router, d.decision_id)
    # The drawable models it left out are recorded: off-policy evaluation leaves the row out.
    assert set(json.loads(row["excluded"])) == set(p) - set(allowed)
    assert "allowed candidates" in row["selection_reason"]
    assert not set(d.alternatives) - set(allowed)


def test_within_every_drawable_model_keeps_the_rules_own_draw(spread_router):
    p = probabilities(spread_router)
    registered = sorted(spread_router.registered_models)
    d = spread_router.select_model("general", "balanced", within=registered)
    assert d.propensity == pytest.approx(p[d.model_id], abs=1e-5)
    assert stored(spread_router, d.decision_id)["excluded"] is None
    d = spread_router.select_model("general", "balanced", within=list(p))
    assert stored(spread_router, d.decision_id)["excluded"] is None


def test_within_one_model_takes_it_with_certainty(router):
    p = probabilities(router, "math", "quality")
    rare = min(p, key=p.get)
    d = router.select_model("math", "quality", within=[rare])
    assert (d.model_id, d.propensity) == (rare, 1.0)
    assert json.loads(stored(router, d.decision_id)["excluded"]) == sorted(set(p) - {rare})


@pytest.mark.parametrize("within, message", [
    ([], "within is empty"),
    ("gpt-4o", "not one string"),
    (["no-such-model"], "within has 'no-such-model', not a registered model"),
    ([3], "model ids are strings"),
])
def test_bad_within_is_refused_and_nothing_written(router, within, message):
    before = count_rows(router.home, "routing_decisions")
    with pytest.raises(ValueError, match=message):
        router.select_model("math", within=within)
    assert count_rows(router.home, "routing_decisions") == before


def test_fallback_keeps_to_within_and_excludes_the_failed_model(spread_router):
    p = probabilities(spread_router)
    allowed = sorted(p)[:3]
    first = spread_router.select_model("general", "balanced", within=allowed)
    second = spread_router.fallback(first, error="429 rate limited", within=allowed)
    assert second.model_id in allowed and second.model_id != first.model_id
    assert second.propensity == 1.0
    third = spread_router.fallback(second, error="503", within=allowed)
    assert third.model_id in allowed and third.model_id not in (first.model_id, second.model_id)
    with pytest.raises(ValueError, match="leaves no enabled model"):
        spread_router.fallback(third, error="503", within=allowed)
    row = stored(spread_router, third.decision_id)
    assert f"fallback of {second.decision_id}" in row["selection_reason"]
    assert {first.model_id, second.model_id} <= set(json.loads(row["excluded"]))
    # A fallback may move to models outside the first decision's within (another LiteLLM group).
    elsewhere = sorted(set(spread_router.registered_models) - set(allowed))[:1]
    moved = spread_router.fallback(third, error="503", within=elsewhere)
    assert moved.model_id == elsewhere[0]


def test_fallback_to_another_group_may_take_a_model_the_first_within_left_out(spread_router):
    # Regression: a LiteLLM fallback to a backup group got a fresh, unlinked decision, because
    # the fallback inherited the drawable models the first decision's within had left out.
    p = probabilities(spread_router)
    group, backup = sorted(p)[:2], sorted(p)[2]
    first = spread_router.select_model("general", "balanced", within=group)
    assert backup in json.loads(stored(spread_router, first.decision_id)["excluded"])
    second = spread_router.fallback(first, error="429", within=group)
    moved = spread_router.fallback(second, error="429", within=[backup, *group])
    assert moved.model_id == backup and moved.propensity == 1.0
    assert f"fallback of {second.decision_id}" in stored(spread_router, moved.decision_id)["selection_reason"]
    # Without within, a fallback still inherits everything the failed decision left out.
    plain = spread_router.fallback(first, error="429")
    assert plain.model_id == (set(group) - {first.model_id}).pop()
