"""Every decision and every outcome is recorded, with the story's columns; bad input writes nothing."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import pytest

from conftest import count_rows, db_connect
from routing_runtime import ModelRouter, NotInitialisedError, Outcome, RoutingPreference, TaskType
from routing_runtime import store

STORY_DECISION_COLUMNS = (
    "id", "agent_execution_id", "task_type", "selected_model", "selection_reason",
    "alternatives_considered", "created_at",
)
STORY_PERFORMANCE_COLUMNS = (
    "id", "model_id", "task_type", "outcome", "quality_score", "latency_ms", "tokens_used", "cost_usd",
    "recorded_at",
)


def decision_row(home, decision_id):
    conn = db_connect(home)
    try:
        return conn.execute("SELECT * FROM routing_decisions WHERE id = ?", (decision_id,)).fetchone()
    finally:
        conn.close()


def performance_row(home, row_id):
    conn = db_connect(home)
    try:
        return conn.execute("SELECT * FROM model_performance WHERE id = ?", (row_id,)).fetchone()
    finally:
        conn.close()


def parse_stamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ----------------------------------------------------------------------------- decisions


def test_select_model_records_every_story_column(router, home):
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    d = router.select_model(TaskType.DEBUGGING, "balanced", "agent-run-42")
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    row = decision_row(home, d.decision_id)
    assert row is not None
    assert set(STORY_DECISION_COLUMNS) <= set(row.keys())
    assert row["id"] == d.decision_id
    assert row["agent_execution_id"] == "agent-run-42"
    assert row["task_type"] == "debugging" == d.task_type.value
    assert row["selected_model"] == d.model_id
    assert row["selection_reason"] == d.selection_reason and d.selection_reason
    alternatives = json.loads(row["alternatives_considered"])
    assert isinstance(alternatives, list)
    assert alternatives == list(d.alternatives)
    assert alternatives, "the shipped registry always leaves fallbacks"
    created = parse_stamp(row["created_at"])
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
    assert row["preference"] == "balanced"
    assert row["propensity"] == pytest.approx(d.propensity)
    assert 0 < row["propensity"] <= 1
    assert row["rule_set_version"] == d.rule_set_version == router.rule_set.version


def test_agent_execution_id_defaults_to_decision_id(router, home):
    d = router.select_model("math")
    assert decision_row(home, d.decision_id)["agent_execution_id"] == d.decision_id


def test_excluded_decision_records_its_alternatives(router, home):
    d = router.select_model("code_generation", "quality", "run-1", exclude=["codestral-2508"])
    row = decision_row(home, d.decision_id)
    assert json.loads(row["alternatives_considered"]) == list(d.alternatives)
    assert "codestral-2508" not in json.loads(row["alternatives_considered"])
    assert row["propensity"] == 1.0


@pytest.mark.parametrize("at, expected", [
    (datetime(2025, 3, 4, 10, 30, 0), "2025-03-04 10:30:00"),
    (datetime(2025, 3, 4, 12, 30, 0, tzinfo=timezone(timedelta(hours=2))), "2025-03-04 10:30:00"),
    (datetime(2025, 3, 4, 0, 30, 0, 250000, tzinfo=timezone(timedelta(hours=2))), "2025-03-03 22:30:00.25"),
    (datetime(2025, 3, 4, 10, 30, 0, tzinfo=timezone.utc), "2025-03-04 10:30:00"),
])
def test_at_stamps_created_at_in_utc(router, home, at, expected):
    d = router.select_model("math", at=at)
    created = decision_row(home, d.decision_id)["created_at"]
    assert parse_stamp(created) == datetime.fromisoformat(expected)
    assert created.startswith(expected[:19])

    row_id = router.record_performance(d.decision_id, "success", at=at)
    recorded = performance_row(home, row_id)["recorded_at"]
    assert parse_stamp(recorded) == datetime.fromisoformat(expected)


def test_at_must_be_a_datetime(router, home):
    before = count_rows(home, "routing_decisions")
    with pytest.raises(ValueError, match="at"):
        router.select_model("math", at="2025-03-04")
    assert count_rows(home, "routing_decisions") == before


def test_task_as_tasktype_value_string_and_free_text(router, home):
    by_enum = router.select_model(TaskType.MATH)
    by_value = router.select_model("math")
    by_text = router.select_model("Traceback (most recent call last):\n  ...\nKeyError: 'id' -- why does this crash?")
    assert by_enum.task_type is TaskType.MATH and by_enum.classification is None
    assert by_value.task_type is TaskType.MATH and by_value.classification is None
    assert by_text.task_type is TaskType.DEBUGGING
    assert by_text.classification is not None
    assert by_text.classification.task_type is TaskType.DEBUGGING
    for d, task in ((by_enum, "math"), (by_value, "math"), (by_text, "debugging")):
        assert decision_row(home, d.decision_id)["task_type"] == task


def test_preference_as_enum_or_value(router, home):
    d = router.select_model("math", RoutingPreference.LATENCY)
    assert d.preference is RoutingPreference.LATENCY
    assert decision_row(home, d.decision_id)["preference"] == "latency"
    assert router.select_model("math", "quality").preference is RoutingPreference.QUALITY


# ----------------------------------------------------------------------------- outcomes


def test_record_performance_with_decision_stores_everything(router, home):
    d = router.select_model(TaskType.CODE_REVIEW, "cost_efficient", "agent-7")
    at = datetime(2025, 6, 1, 8, 0, 0, tzinfo=timezone.utc)
    row_id = router.record_performance(
        d.decision_id, "partial", quality_score=0.6, latency_ms=840, tokens_used=1210, cost_usd=0.0009, at=at,
    )
    assert isinstance(row_id, str) and row_id
    row = performance_row(home, row_id)
    assert set(STORY_PERFORMANCE_COLUMNS) <= set(row.keys())
    assert row["model_id"] == d.model_id
    assert row["task_type"] == "code_review"
    assert row["outcome"] == "partial"
    assert row["quality_score"] == pytest.approx(0.6)
    assert row["latency_ms"] == 840
    assert row["tokens_used"] == 1210
    assert row["cost_usd"] == pytest.approx(0.0009)
    assert parse_stamp(row["recorded_at"]) == datetime(2025, 6, 1, 8, 0, 0)
    assert row["decision_id"] == d.decision_id
    assert row["preference"] == "cost_efficient"


def test_record_performance_outcome_only_and_enum(router, home):
    d = router.select_model("math")
    row = performance_row(home, router.record_performance(d.decision_id, Outcome.FAILURE))
    assert row["outcome"] == "failure"
    assert row["quality_score"] is None and row["latency_ms"] is None
    assert row["tokens_used"] is None and row["cost_usd"] is None
    assert row["recorded_at"]


def test_record_performance_matching_model_id_with_decision(router, home):
    d = router.select_model("math")
    row_id = router.record_performance(d.decision_id, "success", model_id=d.model_id, task_type="math")
    assert performance_row(home, row_id)["model_id"] == d.model_id


def test_record_performance_without_decision(router, home):
    row_id = router.record_performance(
        outcome="success", quality_score=1.0, latency_ms=0, tokens_used=0, cost_usd=0.0,
        model_id="gpt-4o", task_type=TaskType.PLANNING,
    )
    row = performance_row(home, row_id)
    assert row["model_id"] == "gpt-4o"
    assert row["task_type"] == "planning"
    assert row["outcome"] == "success"
    assert row["decision_id"] is None
    assert row["preference"] is None
    row_id = router.record_performance(outcome="failure", model_id="deepseek-chat", task_type="general")
    assert performance_row(home, row_id)["task_type"] == "general"


# ----------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize("kwargs, field", [
    ({"task": "math", "preference": "fastest"}, "preference"),
    ({"task": "math", "preference": None}, "preference"),
    ({"task": 123}, "task"),
    ({"task": None}, "task"),
    ({"task": ["math"]}, "task"),
    ({"task": "math", "agent_execution_id": ""}, "agent_execution_id"),
    ({"task": "math", "agent_execution_id": 5}, "agent_execution_id"),
])
def test_select_model_invalid_input_raises_and_writes_nothing(router, home, kwargs, field):
    before = count_rows(home, "routing_decisions")
    with pytest.raises(ValueError) as info:
        router.select_model(**kwargs)
    assert field in str(info.value)
    assert count_rows(home, "routing_decisions") == before


BAD_OUTCOMES = [
    pytest.param({"outcome": "great"}, "outcome", id="outcome-great"),
    pytest.param({"outcome": None}, "outcome", id="outcome-missing"),
    pytest.param({"outcome": "success", "quality_score": 1.5}, "quality_score", id="quality-1.5"),
    pytest.param({"outcome": "success", "quality_score": -0.1}, "quality_score", id="quality-negative"),
    pytest.param({"outcome": "success", "quality_score": math.nan}, "quality_score", id="quality-nan"),
    pytest.param({"outcome": "success", "quality_score": "0.9"}, "quality_score", id="quality-string"),
    pytest.param({"outcome": "success", "latency_ms": -1}, "latency_ms", id="latency-negative"),
    pytest.param({"outcome": "success", "latency_ms": math.inf}, "latency_ms", id="latency-inf"),
    pytest.param({"outcome": "success", "tokens_used": 1.5}, "tokens_used", id="tokens-float"),
    pytest.param({"outcome": "success", "tokens_used": True}, "tokens_used", id="tokens-bool"),
    pytest.param({"outcome": "success", "tokens_used": -3}, "tokens_used", id="tokens-negative"),
    pytest.param({"outcome": "success", "cost_usd": -0.01}, "cost_usd", id="cost-negative"),
    pytest.param({"outcome": "success", "cost_usd": math.nan}, "cost_usd", id="cost-nan"),
    pytest.param({"outcome": "success", "model_id": "not-the-chosen-model"}, "model_id", id="model-mismatch"),
    pytest.param({"outcome": "success", "task_type": "poetry"}, "task_type", id="task-type-garbage"),
    pytest.param({"outcome": "success", "at": "yesterday"}, "at", id="at-string"),
]


@pytest.mark.parametrize("kwargs, field", BAD_OUTCOMES)
def test_record_performance_invalid_input_writes_nothing(router, home, kwargs, field):
    d = router.select_model("math")
    before = count_rows(home, "model_performance")
    with pytest.raises(ValueError) as info:
        router.record_performance(d.decision_id, **kwargs)
    assert field in str(info.value)
    assert count_rows(home, "model_performance") == before


def test_task_type_mismatching_the_decision(router, home):
    d = router.select_model("math")
    before = count_rows(home, "model_performance")
    with pytest.raises(ValueError, match="task_type"):
        router.record_performance(d.decision_id, "success", task_type="general")
    assert count_rows(home, "model_performance") == before


@pytest.mark.parametrize("kwargs, field", [
    ({"outcome": "success"}, "decision_id"),
    ({"outcome": "success", "model_id": "gpt-4o"}, "task_type"),
    ({"outcome": "success", "task_type": "math"}, "model_id"),
    ({"outcome": "success", "model_id": "gpt-5-ultra", "task_type": "math"}, "model_id"),
    ({"outcome": "success", "model_id": "gpt-4o", "task_type": 123}, "task_type"),
    ({"decision_id": 42, "outcome": "success"}, "decision_id"),
])
def test_record_performance_without_valid_decision_or_model(router, home, kwargs, field):
    before = count_rows(home, "model_performance")
    with pytest.raises(ValueError) as info:
        router.record_performance(**kwargs)
    assert field in str(info.value)
    assert count_rows(home, "model_performance") == before


@pytest.mark.parametrize("decision_id", ["0" * 32, "", "no-such-decision"])
def test_unknown_decision_id_raises_lookup_error(router, home, decision_id):
    router.select_model("math")
    before = count_rows(home, "model_performance")
    with pytest.raises(LookupError, match="decision_id"):
        router.record_performance(decision_id, "success", quality_score=0.9)
    assert count_rows(home, "model_performance") == before


# ----------------------------------------------------------------------------- opening


def test_open_uninitialised_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotInitialisedError, match="routing init"):
        ModelRouter.open(empty)
    assert not (empty / "routing.db").exists(), "opening must not create a database"
    with pytest.raises(NotInitialisedError, match="routing init"):
        ModelRouter.open(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_open_uses_routing_home_env(home, monkeypatch):
    monkeypatch.setenv("ROUTING_HOME", str(home))
    with ModelRouter.open() as router:
        assert router.home == home.resolve()
        assert router.select_model("math").model_id


def test_open_outdated_schema_asks_for_routing_init(tmp_path):
    home = tmp_path / "old"
    home.mkdir()
    conn = store.connect(home / "routing.db")
    store.migrate(conn, 1)
    conn.close()
    with pytest.raises(NotInitialisedError, match="routing init"):
        ModelRouter.open(home)


def test_not_initialised_error_is_a_runtime_error():
    assert issubclass(NotInitialisedError, RuntimeError)


@pytest.mark.parametrize("kwargs, field", [
    ({"tokens_used": 2**63}, "tokens_used"),
    ({"latency_ms": 2**1100}, "latency_ms"),
    ({"cost_usd": 10**400}, "cost_usd"),
])
def test_huge_numbers_are_refused_with_the_field_named(router, kwargs, field):
    """Regression: these raised OverflowError instead of a ValueError naming the field."""
    decision = router.select_model("math")
    with pytest.raises(ValueError, match=field):
        router.record_performance(decision.decision_id, "success", **kwargs)


def test_exclude_must_hold_model_ids(router):
    with pytest.raises(ValueError, match="exclude"):
        router.select_model("math", exclude=[None])


def test_a_fallback_decision_records_what_was_excluded(router, home):
    import json as _json
    import sqlite3 as _sqlite3

    first = router.select_model("math", "quality")
    fallback = router.select_model("math", "quality", exclude=[first.model_id])
    conn = _sqlite3.connect(home / "routing.db")
    rows = dict(conn.execute("SELECT id, excluded FROM routing_decisions"))
    assert rows[first.decision_id] is None
    assert _json.loads(rows[fallback.decision_id]) == [first.model_id]
