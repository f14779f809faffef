"""Trust (wave 2) in the runtime: selection survives any stored rule set, one outcome per
decision, fallbacks and provider errors credited right, and every input checked."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from routing_runtime import ModelRouter, TaskType
from routing_runtime.admin import initialise
from routing_runtime.registry import ModelRegistry
from routing_runtime.router import REFRESH_INTERVAL_S
from routing_runtime.rules import build_rules, registry_estimates
from routing_runtime.compiled_rules import UnusableRuleSet
from routing_runtime.store import Store
from routing_runtime.types import all_cells
from conftest import count_rows, db_connect

CELLS = all_cells()
SHIPPED_IDS = [m.id for m in ModelRegistry.load_default().models]


def raw_connect(home) -> sqlite3.Connection:
    """The test's own connection, autocommit, foreign keys off: free to poison anything."""
    return sqlite3.connect(home / "routing.db", timeout=10, isolation_level=None)


def copy_rule_set(home, mutate=None, *, from_version=None) -> int:
    """Publish a copy of ``from_version`` (default: the newest) as the next version, with
    ``mutate(conn, version)`` applied, in one transaction, as a buggy publisher would."""
    conn = raw_connect(home)
    try:
        conn.execute("BEGIN IMMEDIATE")
        newest = conn.execute("SELECT MAX(version) FROM rule_sets").fetchone()[0]
        source = from_version or newest
        version = newest + 1
        conn.execute(
            "INSERT INTO rule_sets SELECT ?, created_at, as_of, 'learned', inputs, code_version FROM rule_sets WHERE version = ?",
            (version, source),
        )
        columns = [r[1] for r in conn.execute("PRAGMA table_info(model_routing_rules)") if r[1] not in ("id", "rule_set_version")]
        conn.execute(
            f"INSERT INTO model_routing_rules (id, rule_set_version, {', '.join(columns)})"
            f" SELECT 'v' || ? || substr(id, instr(id, ':')), ?, {', '.join(columns)} FROM model_routing_rules WHERE rule_set_version = ?",
            (version, version, source),
        )
        if mutate is not None:
            mutate(conn, version)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return version


def one_row(column: str, value):
    def mutate(conn, version):
        conn.execute(
            f"UPDATE model_routing_rules SET {column} = ?"
            " WHERE rowid = (SELECT MIN(rowid) FROM model_routing_rules WHERE rule_set_version = ?)",
            (value, version),
        )
    return mutate


def extra_row(task_type: str, preference: str):
    def mutate(conn, version):
        conn.execute(
            "INSERT INTO model_routing_rules (id, rule_set_version, task_type, preference, model_id, priority, is_specialized,"
            " is_enabled, is_eligible, min_quality_score, selection_probability, expected_quality, expected_cost_usd,"
            " expected_latency_ms, expected_cost_per_1k) VALUES (?, ?, ?, ?, 'gpt-4o', 1, 0, 1, 1, 0.7, 1.0, 0.9, 0.01, 900, 0.005)",
            (f"v{version}:{task_type}:{preference}:gpt-4o", version, task_type, preference),
        )
    return mutate


def sql(statement: str):
    def mutate(conn, version):
        conn.execute(statement.format(v=version))
    return mutate


POISONS = {
    "unknown_task_type": extra_row("translation", "balanced"),
    "unknown_preference": extra_row("math", "fastest"),
    "text_nan_probability": one_row("selection_probability", "NaN"),
    "null_probability": one_row("selection_probability", None),
    "negative_probability": one_row("selection_probability", -0.5),
    "text_probability": one_row("selection_probability", "lots"),
    "infinite_probability": one_row("selection_probability", math.inf),
    "null_expected_quality": one_row("expected_quality", None),
    "inputs_not_json": sql("UPDATE rule_sets SET inputs = '{{not json' WHERE version = {v}"),
    "every_row_disabled": sql("UPDATE model_routing_rules SET is_enabled = 0 WHERE rule_set_version = {v}"),
    "rows_deleted": sql("DELETE FROM model_routing_rules WHERE rule_set_version = {v}"),
    "one_cell_missing": sql(
        "DELETE FROM model_routing_rules WHERE rule_set_version = {v} AND task_type = 'math' AND preference = 'latency'"
    ),
}


def assert_every_cell_serves(router, version, *words):
    for task, preference in CELLS:
        d = router.select_model(task, preference)
        assert d.rule_set_version == version
        assert math.isfinite(d.propensity) and 0 < d.propensity <= 1
        for word in words:
            assert word in d.selection_reason, d.selection_reason


# ----------------------------------------------------------------------------- any rule set


@pytest.mark.parametrize("poison", list(POISONS))
def test_unusable_current_rule_set_does_not_break_open_and_the_previous_one_is_served(home, poison):
    copy_rule_set(home, POISONS[poison])
    with ModelRouter.open(home, seed=3) as router:
        assert router.rule_set.version == 1
        assert "rule set v2 unusable" in router.rule_set_note
        assert_every_cell_serves(router, 1, "rule set v2 unusable", "serving v1")


def test_unknown_task_type_row_in_current_rule_set_does_not_break_open(home):
    copy_rule_set(home, extra_row("translation", "balanced"))
    with ModelRouter.open(home, seed=3) as router:
        d = router.select_model("math")
    assert d.rule_set_version == 1
    assert "task_type='translation' is not known" in d.selection_reason


def test_unusable_only_rule_set_falls_back_to_registry_order(home):
    conn = raw_connect(home)
    conn.execute("UPDATE model_routing_rules SET selection_probability = 'NaN' WHERE rule_set_version = 1")
    conn.close()
    with ModelRouter.open(home, seed=3) as router:
        served = router.rule_set
        assert served.version is None and served.source == "registry-order"
        assert_every_cell_serves(router, None, "no usable rule set", "registry order")
    registry = ModelRegistry.load_default()
    expected = {(r.task_type, r.preference, r.model_id): r.selection_probability
                for r in build_rules(registry_estimates(registry), registry)}
    assert {(r.task_type, r.preference, r.model_id): r.selection_probability for r in served.rows} == expected
    conn = db_connect(home)
    assert {r[0] for r in conn.execute("SELECT rule_set_version FROM routing_decisions")} == {None}
    conn.close()


def test_empty_rule_sets_table_serves_registry_order(home):
    conn = raw_connect(home)
    conn.execute("DELETE FROM model_routing_rules")
    conn.execute("DELETE FROM rule_sets")
    conn.close()
    with ModelRouter.open(home, seed=3) as router:
        assert_every_cell_serves(router, None, "no rule set published, registry order")


def test_deleted_current_rule_sets_row_serves_registry_order_and_publishing_does_not_wedge(home, write_registry):
    conn = raw_connect(home)
    conn.execute("DELETE FROM rule_sets WHERE version = 1")  # its rows stay behind
    conn.close()
    with ModelRouter.open(home, seed=3) as router:
        assert_every_cell_serves(router, None, "registry order")
        # Was: UNIQUE constraint failed: model_routing_rules.id
        result = initialise(home, write_registry(ModelRegistry.load_default().to_toml()))
        assert result.published and result.rule_set_version == 2
        time.sleep(REFRESH_INTERVAL_S * 2)
        assert_every_cell_serves(router, 2, "rule set v2")


def test_every_version_unusable_falls_back_to_registry_order_naming_the_newest(home):
    conn = raw_connect(home)
    conn.execute("UPDATE model_routing_rules SET expected_quality = NULL WHERE rule_set_version = 1")
    conn.close()
    copy_rule_set(home, one_row("selection_probability", "NaN"))
    with ModelRouter.open(home, seed=3) as router:
        note = router.rule_set_note
    assert note.startswith("no usable rule set (v2: row 'v2:") and "selection_probability='NaN'" in note
    assert "1 older unusable too" in note and note.endswith("registry order")


def test_running_router_meeting_a_bad_new_version_keeps_serving_its_current_one(router, home):
    assert router.select_model("math").rule_set_version == 1
    copy_rule_set(home, one_row("selection_probability", "NaN"))
    time.sleep(REFRESH_INTERVAL_S * 2)
    d = router.select_model("math")
    assert d.rule_set_version == 1 and "rule set v2 unusable" in d.selection_reason
    good = copy_rule_set(home, from_version=1)
    time.sleep(REFRESH_INTERVAL_S * 2)
    d = router.select_model("math")
    assert d.rule_set_version == good and "unusable" not in d.selection_reason


def test_refresh_never_raises_when_the_rule_tables_break_under_a_running_router(router, home):
    conn = raw_connect(home)
    conn.execute("DROP VIEW current_routing_rules")
    conn.execute("DROP TABLE rule_sets")
    conn.close()
    time.sleep(REFRESH_INTERVAL_S * 2)
    assert router.select_model("math").rule_set_version == 1
    assert router.rule_set.version == 1


def test_stored_infinite_probability_never_yields_a_nan_propensity(home):
    copy_rule_set(home, sql("UPDATE model_routing_rules SET selection_probability = 9e999 WHERE rule_set_version = {v}"))
    with ModelRouter.open(home, seed=3) as router:
        propensities = [router.select_model(t, p).propensity for t, p in CELLS]
    assert all(math.isfinite(p) and 0 < p <= 1 for p in propensities)


def test_load_current_rule_set_names_the_bad_row_and_load_usable_rule_set_skips_it(home):
    copy_rule_set(home, one_row("selection_probability", "NaN"))
    with Store.open(home / "routing.db") as db:
        with pytest.raises(UnusableRuleSet, match=r"rule set v2: row 'v2:.*selection_probability='NaN'"):
            db.load_rule_set()
        rule_set, note = db.load_usable_rule_set()
    assert rule_set.version == 1 and note.startswith("rule set v2 unusable (row 'v2:") and note.endswith("serving v1")


def test_a_huge_poisoned_value_does_not_flood_the_selection_reason(home):
    copy_rule_set(home, one_row("selection_probability", "x" * 1_000_000))
    with ModelRouter.open(home, seed=3) as router:
        assert len(router.select_model("math").selection_reason) < 600


# ----------------------------------------------------------------------------- one outcome per decision


def test_retried_record_performance_with_the_same_values_returns_the_first_row_id(router, home):
    d = router.select_model("math", agent_execution_id="run-1")
    first = router.record_performance(d.decision_id, "success", 0.9, 840.0, 1200, 0.0009)
    again = router.record_performance(d.decision_id, "success", 0.9, 840.0, 1200, 0.0009)
    assert again == first
    assert count_rows(home, "model_performance") == 1


@pytest.mark.parametrize("field, value", [
    ("outcome", "failure"), ("quality_score", 0.5), ("latency_ms", 841.0), ("tokens_used", 1201), ("cost_usd", None),
])
def test_second_outcome_with_a_different_value_raises_naming_the_field(router, home, field, value):
    d = router.select_model("math")
    values = {"outcome": "success", "quality_score": 0.9, "latency_ms": 840.0, "tokens_used": 1200, "cost_usd": 0.0009}
    router.record_performance(d.decision_id, **values)
    with pytest.raises(ValueError, match=f"{field}=.*differs from the outcome already recorded"):
        router.record_performance(d.decision_id, **{**values, field: value})
    assert count_rows(home, "model_performance") == 1


def test_two_routers_recording_the_same_decision_at_once_store_one_outcome(home):
    routers = [ModelRouter.open(home, seed=i) for i in range(4)]
    try:
        d = routers[0].select_model("debugging")
        barrier = threading.Barrier(len(routers))
        ids = []

        def record(r):
            barrier.wait()
            ids.append(r.record_performance(d.decision_id, "partial", quality_score=0.4))

        threads = [threading.Thread(target=record, args=(r,)) for r in routers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for r in routers:
            r.close()
    assert len(set(ids)) == 1 and len(ids) == len(routers)
    assert count_rows(home, "model_performance") == 1


# ----------------------------------------------------------------------------- fallbacks and provider errors


def test_fallback_excludes_the_failed_model_keeps_agent_execution_id_and_links_the_original(router, home):
    d = router.select_model("code_generation", "quality", "agent-7")
    f = router.fallback(d)
    assert f.model_id != d.model_id and f.decision_id != d.decision_id
    assert f.task_type is d.task_type and f.preference is d.preference
    assert f"fallback of {d.decision_id}" in f.selection_reason and d.model_id in f.selection_reason
    conn = db_connect(home)
    row = conn.execute("SELECT agent_execution_id, excluded FROM routing_decisions WHERE id = ?", (f.decision_id,)).fetchone()
    conn.close()
    assert row["agent_execution_id"] == "agent-7" and d.model_id in row["excluded"]


def test_fallback_outcome_is_credited_to_the_fallback_model(router, home):
    d = router.select_model("math", "balanced")
    f = router.fallback(d.decision_id, error="HTTP 503")
    router.record_performance(f.decision_id, "success", quality_score=0.8)
    conn = db_connect(home)
    rows = conn.execute("SELECT model_id, decision_id FROM model_performance").fetchall()
    conn.close()
    assert [(r["model_id"], r["decision_id"]) for r in rows] == [(f.model_id, f.decision_id)]


def test_chained_fallbacks_never_return_to_a_failed_model(router):
    d = router.select_model("testing", "latency")
    failed = [d.model_id]
    for _ in range(len(SHIPPED_IDS) - 1):
        d = router.fallback(d)
        assert d.model_id not in failed
        failed.append(d.model_id)
    with pytest.raises(ValueError, match="leaves no enabled model"):
        router.fallback(d)


def test_fallback_leaving_no_model_writes_nothing_not_even_the_provider_error(router, home):
    d = router.select_model("math", exclude=[m for m in SHIPPED_IDS if m != "gpt-4o"])
    before = count_rows(home, "routing_decisions")
    with pytest.raises(ValueError, match="leaves no enabled model"):
        router.fallback(d, error="timeout")
    assert count_rows(home, "routing_decisions") == before
    conn = db_connect(home)
    reason = conn.execute("SELECT selection_reason FROM routing_decisions WHERE id = ?", (d.decision_id,)).fetchone()[0]
    conn.close()
    assert "provider error" not in reason


def test_provider_error_writes_no_outcome_and_marks_the_decision(router, home):
    d = router.select_model("planning")
    router.record_provider_error(d.decision_id, "HTTP 529 overloaded\nretry later")
    router.record_provider_error(d.decision_id, "HTTP 529 overloaded")  # a retry changes nothing
    assert count_rows(home, "model_performance") == 0
    conn = db_connect(home)
    reason = conn.execute("SELECT selection_reason FROM routing_decisions WHERE id = ?", (d.decision_id,)).fetchone()[0]
    conn.close()
    assert reason.endswith("; provider error: HTTP 529 overloaded retry later") and reason.count("provider error") == 1


def test_outcome_for_a_provider_error_decision_is_refused(router, home):
    d = router.select_model("planning")
    router.record_provider_error(d.decision_id, "connection reset")
    with pytest.raises(ValueError, match="provider error"):
        router.record_performance(d.decision_id, "failure")
    assert count_rows(home, "model_performance") == 0


def test_provider_error_after_an_outcome_is_refused(router):
    d = router.select_model("planning")
    router.record_performance(d.decision_id, "failure")
    with pytest.raises(ValueError, match="already has an outcome"):
        router.record_provider_error(d.decision_id, "timeout")
    with pytest.raises(LookupError, match="decision_id"):
        router.record_provider_error("no-such-decision", "timeout")


# ----------------------------------------------------------------------------- inputs


def assert_nothing_written(home, before):
    assert (count_rows(home, "routing_decisions"), count_rows(home, "model_performance")) == before


@pytest.fixture
def counts(home):
    return count_rows(home, "routing_decisions"), count_rows(home, "model_performance")


@pytest.mark.parametrize("task", ["", "   ", "\n\t"])
def test_empty_or_whitespace_task_raises_and_writes_nothing(router, home, counts, task):
    with pytest.raises(ValueError, match="task=.*empty"):
        router.select_model(task)
    assert_nothing_written(home, counts)


@pytest.mark.parametrize("word, task_type", [
    ("debuging", "debugging"), ("mathh", "math"), ("planing", "planning"), ("plannign", "planning"), ("code_reveiw", "code_review"),
])
def test_task_type_typo_raises_suggesting_the_task_type(router, home, counts, word, task_type):
    with pytest.raises(ValueError, match=f"did you mean '{task_type}'"):
        router.select_model(word)
    assert_nothing_written(home, counts)


@pytest.mark.parametrize("word, task_type",
                         [("Math", TaskType.MATH), ("code-review", TaskType.CODE_REVIEW), (" testing ", TaskType.TESTING)])
def test_task_type_value_in_another_case_or_with_hyphens_is_the_task_type(router, word, task_type):
    d = router.select_model(word)
    assert d.task_type is task_type and d.classification is None


def test_a_prompt_of_several_words_with_a_typo_is_still_classified(router):
    d = router.select_model("debuging this traceback please")
    assert d.classification is not None


def test_unknown_exclude_id_raises_and_writes_nothing(router, home, counts):
    with pytest.raises(ValueError, match="exclude has 'gpt-9', not a registered model"):
        router.select_model("math", exclude=["gpt-9"])
    assert_nothing_written(home, counts)


def test_exclude_none_means_no_exclusion(router):
    d = router.select_model("math", exclude=None)
    assert "excluded" not in d.selection_reason


@pytest.mark.parametrize("kind", ["generator", "iterator", "set", "dict_keys"])
def test_exclude_from_any_iterable_is_honoured(router, kind):
    best = router.select_model("math", "quality", exclude=["gpt-4o"]).alternatives[0]
    ids = ["gpt-4o", best]
    exclude = {"generator": (m for m in ids), "iterator": iter(ids), "set": set(ids), "dict_keys": dict.fromkeys(ids).keys()}[kind]
    d = router.select_model("math", "quality", exclude=exclude)
    assert d.model_id not in ids and "excluded: " in d.selection_reason


@pytest.mark.parametrize("field", ["agent_execution_id"])
@pytest.mark.parametrize("value, message", [("\ud800", "not valid Unicode"), ("x" * 10_000_000, "at most 256")])
def test_bad_agent_execution_id_raises_value_error_and_writes_nothing(router, home, counts, field, value, message):
    with pytest.raises(ValueError, match=message) as info:
        router.select_model("math", agent_execution_id=value)
    assert len(str(info.value)) < 500
    assert_nothing_written(home, counts)


@pytest.mark.parametrize("kwargs", [
    {"decision_id": "x" * 10_000_000}, {"decision_id": "\ud800"},
    {"model_id": "\udfff", "task_type": "math"}, {"model_id": ["gpt-4o"], "task_type": "math"},
    {"model_id": "gpt-4o", "task_type": ["math"]}, {"model_id": "y" * 300, "task_type": "math"},
])
def test_bad_ids_in_record_performance_raise_value_error_and_write_nothing(router, home, counts, kwargs):
    with pytest.raises(ValueError):
        router.record_performance(outcome="success", **kwargs)
    assert_nothing_written(home, counts)


@pytest.mark.parametrize("at", [
    datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=5))),
    datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
    datetime(1999, 12, 31, 23, 59), datetime(2100, 1, 1),
])
def test_at_outside_the_sane_years_raises_value_error_and_writes_nothing(router, home, counts, at):
    with pytest.raises(ValueError, match="at=.*2000 to 2099"):
        router.select_model("math", at=at)
    d = router.select_model("math")
    with pytest.raises(ValueError, match="at="):
        router.record_performance(d.decision_id, "success", at=at)
    assert count_rows(home, "model_performance") == counts[1]


def test_numpy_scalars_are_accepted_as_numbers(router, home):
    np = pytest.importorskip("numpy")
    d = router.select_model("math")
    router.record_performance(d.decision_id, "success", np.float32(0.5), np.float64(812.5), np.int64(1200), np.float64(0.001))
    conn = db_connect(home)
    row = conn.execute("SELECT quality_score, latency_ms, tokens_used, cost_usd FROM model_performance").fetchone()
    conn.close()
    assert tuple(row) == (0.5, 812.5, 1200, 0.001)
    with pytest.raises(ValueError, match="tokens_used"):
        router.record_performance(model_id="gpt-4o", task_type="math", outcome="success", tokens_used=np.float64(3.0))
    with pytest.raises(ValueError, match="quality_score"):
        router.record_performance(model_id="gpt-4o", task_type="math", outcome="success", quality_score=np.bool_(True))
