"""Routing rules and selection against the definition of each preference (README.md, "What each
preference means").

The expected best model is computed here independently: Q, C, L and the per-1k cost come from
the registry file (prior quality, list prices, the task's typical request), the thresholds from
the task policy, and the best model from that README table.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from conftest import BASE_MODELS_TOML
from routing_runtime import ModelRegistry, ModelRouter, RoutingPreference, TaskType
from routing_runtime import cli
from routing_runtime.admin import initialise

PREFERENCES = [p.value for p in RoutingPreference]
TASKS = [t.value for t in TaskType]


# ----------------------------------------------------------------------------- helpers

def make_home(tmp_path, write_registry, registry_text: str | None, name: str = "home"):
    home = tmp_path / name
    if registry_text is None:
        initialise(home)
        registry = ModelRegistry.load_default()
    else:
        path = write_registry(registry_text, name=f"{name}.toml")
        initialise(home, path)
        registry = ModelRegistry.load(path)
    return home, registry


def rules_json(home, capsys) -> dict:
    capsys.readouterr()
    assert cli.main(["rules", "--home", str(home), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def independent_estimates(registry: ModelRegistry, task: TaskType) -> dict[str, dict]:
    """Q, C (USD/request), L and cost per 1k tokens of every model on ``task``, from the registry."""
    policy = registry.policy(task)
    tin, tout = policy.typical_input_tokens, policy.typical_output_tokens
    out = {}
    for m in registry.models:
        if not m.specialized_for or task in m.specialized_for:
            q = m.prior_quality
        elif m.off_specialty_prior_quality is not None:
            q = m.off_specialty_prior_quality
        else:
            q = max(0.0, m.prior_quality - 0.15)
        cost = (tin * m.input_cost_per_1k + tout * m.output_cost_per_1k) / 1000
        out[m.id] = {
            "Q": q, "C": cost, "L": m.typical_latency_ms, "per_1k": cost / (tin + tout) * 1000,
            "enabled": m.enabled, "specialized": task in m.specialized_for,
        }
    return out


def eligible_ids(registry: ModelRegistry, task: TaskType, preference: str, est: dict[str, dict]) -> set[str]:
    policy = registry.policy(task)
    result = set()
    for model_id, e in est.items():
        if not e["enabled"]:
            continue
        if preference != "quality":
            if e["Q"] < policy.min_quality_score:
                continue
            if policy.max_cost_per_1k is not None and e["per_1k"] > policy.max_cost_per_1k:
                continue
        result.add(model_id)
    return result


def best_ids(preference: str, candidates: dict[str, dict]) -> set[str]:
    """README.md: quality max Q; cost_efficient min C; balanced max Q/C; latency min L (ties: all)."""
    objective = {
        "quality": lambda e: e["Q"],
        "cost_efficient": lambda e: -e["C"],
        "balanced": lambda e: e["Q"] / e["C"],
        "latency": lambda e: -e["L"],
    }[preference]
    top = max(objective(e) for e in candidates.values())
    return {m for m, e in candidates.items() if math.isclose(objective(e), top, rel_tol=1e-9, abs_tol=1e-12)}


THRESHOLD_REGISTRY = """
[defaults]
min_quality_score = 0.7
typical_input_tokens = 1000
typical_output_tokens = 500

[tasks.general]
max_cost_per_1k = 0.002

[tasks.math]
min_quality_score = 0.85

[tasks.code_review]
min_quality_score = 0.75
max_cost_per_1k = 0.004
""" + BASE_MODELS_TOML

REGISTRIES = {"shipped": None, "thresholds": THRESHOLD_REGISTRY}


# ----------------------------------------------------------------------------- preferences


@pytest.mark.parametrize("registry_name", list(REGISTRIES))
def test_top_choice_matches_design_definition(tmp_path, write_registry, capsys, registry_name):
    home, registry = make_home(tmp_path, write_registry, REGISTRIES[registry_name])
    document = rules_json(home, capsys)
    assert len(document["rules"]) == len(TaskType) * len(RoutingPreference)

    with ModelRouter.open(home, seed=7) as router:
        for rule in document["rules"]:
            task, preference = TaskType(rule["task_type"]), rule["preference"]
            est = independent_estimates(registry, task)
            by_id = {m["model_id"]: m for m in rule["models"]}
            assert set(by_id) == set(est), "every registered model has a row"
            # The published estimates are the registry's (no evidence yet).
            for model_id, e in est.items():
                row = by_id[model_id]
                assert row["expected_quality"] == pytest.approx(e["Q"])
                assert row["expected_cost_usd"] == pytest.approx(e["C"])
                assert row["expected_latency_ms"] == pytest.approx(e["L"])
                assert row["is_specialized"] == e["specialized"]

            eligible = eligible_ids(registry, task, preference, est)
            assert eligible, f"{task.value}/{preference}: these registries always leave an eligible model"
            # Ranking uses the published numbers, so compute the best from them too.
            published = {
                m: {"Q": by_id[m]["expected_quality"], "C": by_id[m]["expected_cost_usd"], "L": by_id[m]["expected_latency_ms"]}
                for m in eligible
            }
            expected = best_ids(preference, published)
            assert expected == best_ids(preference, {m: est[m] for m in eligible})

            top = min(rule["models"], key=lambda m: m["priority"])
            assert top["model_id"] in expected, (task.value, preference, top["model_id"], expected)
            most_likely = max(rule["models"], key=lambda m: m["selection_probability"])
            assert most_likely["model_id"] in expected
            for m in rule["models"]:
                if m["model_id"] not in eligible:
                    assert m["selection_probability"] == 0, (task.value, preference, m)

            picks = Counter(router.select_model(task, preference).model_id for _ in range(60))
            assert picks.most_common(1)[0][0] in expected
            assert set(picks) <= eligible


def test_quality_ignores_thresholds_and_others_respect_them(tmp_path, write_registry):
    home, registry = make_home(tmp_path, write_registry, THRESHOLD_REGISTRY)
    with ModelRouter.open(home, seed=3) as router:
        rules = router.rule_set
        # general: max_cost_per_1k = 0.002 excludes "big" (0.007/1k) and "mid" (0.0023/1k) ...
        for preference in ("cost_efficient", "balanced", "latency"):
            rows = {r.model_id: r for r in rules.models_for(TaskType.GENERAL, RoutingPreference(preference))}
            for expensive in ("big", "mid"):
                assert not rows[expensive].is_eligible
                assert rows[expensive].selection_probability == 0
            picks = Counter(router.select_model("general", preference).model_id for _ in range(500))
            assert not {"big", "mid"} & set(picks), (preference, picks)
        # ... but quality ignores thresholds: "big" has the highest Q on general.
        quality_rows = rules.models_for(TaskType.GENERAL, RoutingPreference.QUALITY)
        assert quality_rows[0].model_id == "big"
        assert quality_rows[0].selection_probability > 0.9
        picks = Counter(router.select_model("general", "quality").model_id for _ in range(200))
        assert picks.most_common(1)[0][0] == "big"


NO_ELIGIBLE_REGISTRY = """
[tasks.math]
min_quality_score = 1.0

[[models]]
id = "disabled-genius"
provider = "acme"
specialized_for = []
input_cost_per_1k = 0.0001
output_cost_per_1k = 0.0001
prior_quality = 0.99
typical_latency_ms = 100
enabled = false
""" + BASE_MODELS_TOML


@pytest.mark.parametrize("preference", ["cost_efficient", "balanced", "latency"])
def test_no_eligible_model_takes_highest_quality_enabled(tmp_path, write_registry, preference):
    home, registry = make_home(tmp_path, write_registry, NO_ELIGIBLE_REGISTRY)
    est = independent_estimates(registry, TaskType.MATH)
    enabled = {m: e for m, e in est.items() if e["enabled"]}
    assert not eligible_ids(registry, TaskType.MATH, preference, est)
    highest_q = max(enabled, key=lambda m: enabled[m]["Q"])
    assert highest_q == "spec-math"
    with ModelRouter.open(home, seed=5) as router:
        rows = router.rule_set.models_for(TaskType.MATH, RoutingPreference(preference))
        assert not any(r.is_eligible for r in rows)
        assert {r.model_id: r.selection_probability for r in rows if r.selection_probability > 0} == {highest_q: 1.0}
        for _ in range(50):
            d = router.select_model(TaskType.MATH, preference)
            assert d.model_id == highest_q
            assert d.propensity == pytest.approx(1.0)
            assert highest_q not in d.alternatives
            assert "disabled-genius" not in d.alternatives
        # Another task still has eligible models and says nothing of the kind.
        other = router.select_model(TaskType.GENERAL, preference)
        assert "no eligible model" not in other.selection_reason
        # A fallback after excluding the only choice says so too.
        d = router.select_model(TaskType.MATH, preference, exclude=[highest_q])
        assert "no eligible model" in d.selection_reason and "excluded" in d.selection_reason
        assert d.model_id == max((m for m in enabled if m != highest_q), key=lambda m: enabled[m]["Q"])


@pytest.mark.parametrize("preference", ["cost_efficient", "balanced", "latency"])
def test_no_eligible_model_reason_says_so(tmp_path, write_registry, preference):
    home, _ = make_home(tmp_path, write_registry, NO_ELIGIBLE_REGISTRY)
    with ModelRouter.open(home, seed=5) as router:
        d = router.select_model(TaskType.MATH, preference)
        assert d.model_id == "spec-math"
        assert "no eligible model" in d.selection_reason


DISABLED_REGISTRY = BASE_MODELS_TOML.replace(
    'id = "big"\nprovider = "acme"\n', 'id = "big"\nprovider = "acme"\nenabled = false\n'
)


def test_disabled_model_is_never_selected(tmp_path, write_registry):
    assert "enabled = false" in DISABLED_REGISTRY
    home, _ = make_home(tmp_path, write_registry, DISABLED_REGISTRY)
    with ModelRouter.open(home, seed=11) as router:
        rules = router.rule_set
        big_rows = [r for r in rules.rows if r.model_id == "big"]
        assert len(big_rows) == len(TaskType) * len(RoutingPreference)
        assert all(not r.is_enabled and r.selection_probability == 0 for r in big_rows)
        chosen = Counter()
        for i in range(2000):
            task = TASKS[i % len(TASKS)]
            preference = PREFERENCES[(i // len(TASKS)) % len(PREFERENCES)]
            d = router.select_model(task, preference)
            chosen[d.model_id] += 1
            assert "big" not in d.alternatives
        assert "big" not in chosen
        assert sum(chosen.values()) == 2000


# ----------------------------------------------------------------------------- exclude and alternatives


@pytest.mark.parametrize("preference", PREFERENCES)
@pytest.mark.parametrize("task", ["code_generation", "math", "general"])
def test_exclude_takes_best_remaining_by_priority(router, task, preference):
    rows = [r for r in router.rule_set.models_for(TaskType(task), RoutingPreference(preference))
            if r.is_enabled and r.is_eligible]
    assert len(rows) >= 3
    for n_excluded in (1, 2):
        excluded = [r.model_id for r in rows[:n_excluded]]
        for _ in range(20):
            d = router.select_model(task, preference, exclude=excluded)
            assert d.model_id == rows[n_excluded].model_id
            assert d.model_id not in excluded
            assert not set(excluded) & set(d.alternatives)
            assert d.propensity == 1.0
            assert "excluded" in d.selection_reason
            for model_id in excluded:
                assert model_id in d.selection_reason


def test_excluded_models_never_chosen_over_many_selections(router):
    excluded = ("codestral-2508", "gpt-4o-mini")
    for i in range(400):
        d = router.select_model(TASKS[i % len(TASKS)], PREFERENCES[i % len(PREFERENCES)], exclude=excluded)
        assert d.model_id not in excluded
        assert not set(excluded) & set(d.alternatives)


def test_excluding_every_model_raises(router, home):
    from conftest import count_rows

    all_ids = [m.id for m in ModelRegistry.load_default().models]
    before = count_rows(home, "routing_decisions")
    for preference in PREFERENCES:
        with pytest.raises(ValueError, match="exclude"):
            router.select_model("math", preference, exclude=all_ids)
    assert count_rows(home, "routing_decisions") == before


def test_exclude_must_be_a_collection(router):
    with pytest.raises(ValueError, match="exclude"):
        router.select_model("math", exclude="gpt-4o")


@pytest.mark.parametrize("preference", PREFERENCES)
def test_alternatives_are_ordered_by_priority_and_exclude_the_choice(router, preference):
    rules = router.rule_set
    for task in TaskType:
        priority = {r.model_id: r.priority for r in rules.models_for(task, RoutingPreference(preference))}
        for _ in range(60):
            d = router.select_model(task, preference)
            assert d.model_id not in d.alternatives
            assert len(set(d.alternatives)) == len(d.alternatives)
            ranks = [priority[m] for m in d.alternatives]
            assert ranks == sorted(ranks), (task.value, preference, d.alternatives)


# ----------------------------------------------------------------------------- sampling


SPREAD_REGISTRY = "[learning]\nexploration_floor = 0.5\n" + BASE_MODELS_TOML


@pytest.mark.parametrize("registry_name, task, preference", [
    ("spread", "general", "balanced"),
    ("spread", "code_generation", "latency"),
    ("shipped", "math", "balanced"),
])
def test_sampling_frequencies_match_selection_probability(tmp_path, write_registry, registry_name, task, preference):
    text = SPREAD_REGISTRY if registry_name == "spread" else None
    home, _ = make_home(tmp_path, write_registry, text)
    n = 5000
    with ModelRouter.open(home, seed=2024) as router:
        rows = router.rule_set.models_for(TaskType(task), RoutingPreference(preference))
        probabilities = {r.model_id: r.selection_probability for r in rows}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        if registry_name == "spread":
            assert sum(1 for p in probabilities.values() if p > 0.05) >= 3, probabilities
        counts = Counter()
        for _ in range(n):
            d = router.select_model(task, preference)
            counts[d.model_id] += 1
            assert d.propensity == pytest.approx(probabilities[d.model_id], abs=1e-5)
    for model_id, p in probabilities.items():
        observed = counts[model_id] / n
        sigma = math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(observed - p) <= 4.5 * sigma + 1e-3, (model_id, observed, p)
        if p == 0:
            assert counts[model_id] == 0


def test_sampling_is_reproducible_with_a_seed(home):
    def run():
        with ModelRouter.open(home, seed=99) as router:
            return [router.select_model(t, p).model_id for t in TASKS for p in PREFERENCES for _ in range(10)]

    assert run() == run()


def test_propensity_equals_selection_probability_everywhere(router):
    # Published probabilities are rounded to 6 decimals; the router renormalises them over the
    # pool it samples from, so the logged propensity may differ in the 6th decimal.
    rules = router.rule_set
    for task in TaskType:
        for preference in RoutingPreference:
            probabilities = {r.model_id: r.selection_probability for r in rules.models_for(task, preference)}
            for _ in range(30):
                d = router.select_model(task, preference)
                assert 0 < d.propensity <= 1
                assert d.propensity == pytest.approx(probabilities[d.model_id], abs=1e-5)
                assert d.rule_set_version == rules.version


# ----------------------------------------------------------------------------- initial rule set


def test_initial_rules_put_the_specialist_first_under_quality(router):
    registry = ModelRegistry.load_default()
    rules = router.rule_set
    assert rules.source == "registry"
    checked = 0
    for task, specialists in registry.specialized.items():
        rows = rules.models_for(task, RoutingPreference.QUALITY)
        assert rows[0].model_id in {m.id for m in specialists}, (task.value, rows[0].model_id)
        assert rows[0].is_specialized
        picks = Counter(router.select_model(task, "quality").model_id for _ in range(100))
        assert picks.most_common(1)[0][0] == rows[0].model_id
        checked += 1
    assert checked >= 5  # four code tasks (Codestral) and math (Qwen-Math)
    assert rules.models_for(TaskType.MATH, RoutingPreference.QUALITY)[0].model_id == "qwen2.5-math-72b-instruct"
    assert rules.models_for(TaskType.CODE_GENERATION, RoutingPreference.QUALITY)[0].model_id == "codestral-2508"


def test_rule_priorities_are_a_permutation(router):
    rules = router.rule_set
    n_models = len(ModelRegistry.load_default().models)
    assert len(rules.rows) == len(TaskType) * len(RoutingPreference) * n_models
    for task in TaskType:
        for preference in RoutingPreference:
            rows = rules.models_for(task, preference)
            assert [r.priority for r in rows] == list(range(1, n_models + 1))
            assert sum(r.selection_probability for r in rows) == pytest.approx(1.0, abs=1e-5)
