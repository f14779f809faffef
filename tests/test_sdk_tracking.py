"""The plain-SDK path: ``track_call`` times a call and records its outcome from the response's
``usage`` at the registry's prices; an exception is a provider error."""

from __future__ import annotations

import time

import pytest

from conftest import count_rows, db_connect
from routing_runtime.integrations.sdk import Usage, list_price_usd, track_call, usage_of


def chat_completion(prompt_tokens: int = 900, completion_tokens: int = 300, *, model: str = "gpt-4o"):
    """A real OpenAI SDK response object where the package is there (LiteLLM depends on it)."""
    completion = pytest.importorskip("openai.types.chat")
    return completion.ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_780_000_000, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "def test_slugify(): ..."}}],
        "usage": {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })


def outcome_of(router, decision_id: str):
    conn = db_connect(router.home)
    try:
        return conn.execute("SELECT * FROM model_performance WHERE decision_id = ?", (decision_id,)).fetchone()
    finally:
        conn.close()


def reason_of(router, decision_id: str) -> str:
    conn = db_connect(router.home)
    try:
        return conn.execute("SELECT selection_reason FROM routing_decisions WHERE id = ?", (decision_id,)).fetchone()[0]
    finally:
        conn.close()


def test_an_openai_response_is_recorded_with_its_tokens_and_list_price(router):
    decision = router.select_model("Write a pytest test for slugify()", "balanced")
    response = chat_completion(model=decision.model_id)
    with track_call(router, decision) as call:
        time.sleep(0.02)
        call.done(response)
        time.sleep(0.2)  # the agent's own work after the answer is not the model's latency
    row = outcome_of(router, decision.decision_id)
    assert row["outcome"] == "success" and row["quality_score"] is None
    assert row["tokens_used"] == 1200
    assert row["cost_usd"] == pytest.approx(list_price_usd(router, decision.model_id, Usage(900, 300))) and row["cost_usd"] > 0
    assert 20 <= row["latency_ms"] < 200


@pytest.mark.parametrize("quality, outcome", [(0.95, "success"), (0.4, "partial"), (0.0, "failure")])
def test_the_quality_given_sets_the_outcome(router, quality, outcome):
    decision = router.select_model("What is 17 * 23?")
    with track_call(router, decision) as call:
        call.done({"usage": {"input_tokens": 30, "output_tokens": 5}}, quality=quality)
    row = outcome_of(router, decision.decision_id)
    assert (row["outcome"], row["quality_score"], row["tokens_used"]) == (outcome, quality, 35)


def test_an_explicit_outcome_wins_over_the_quality(router):
    decision = router.select_model("What is 17 * 23?")
    with track_call(router, decision) as call:
        call.done(None, quality=0.9, outcome="partial")
    assert outcome_of(router, decision.decision_id)["outcome"] == "partial"


def test_an_exception_in_the_block_is_a_provider_error_and_propagates(router):
    decision = router.select_model("Plan the database migration")
    with pytest.raises(TimeoutError, match="read timed out"):
        with track_call(router, decision):
            raise TimeoutError("read timed out")
    assert outcome_of(router, decision.decision_id) is None
    assert "provider error: TimeoutError: read timed out" in reason_of(router, decision.decision_id)
    # The fallback is its own decision, credited to the model that answers.
    retry = router.fallback(decision)
    with track_call(router, retry) as call:
        call.done(chat_completion(model=retry.model_id))
    assert outcome_of(router, retry.decision_id)["model_id"] == retry.model_id != decision.model_id


def test_an_interrupt_records_nothing(router):
    decision = router.select_model("Plan the database migration")
    with pytest.raises(KeyboardInterrupt):
        with track_call(router, decision):
            raise KeyboardInterrupt
    assert outcome_of(router, decision.decision_id) is None
    assert "provider error" not in reason_of(router, decision.decision_id)


def test_a_block_that_never_calls_done_records_success_with_its_latency_only(router):
    decision = router.select_model("Document the retry policy")
    with track_call(router, decision):
        time.sleep(0.01)
    row = outcome_of(router, decision.decision_id)
    assert row["outcome"] == "success" and row["latency_ms"] >= 10
    assert (row["tokens_used"], row["cost_usd"]) == (None, None)


def test_an_error_when_recording_an_error_keeps_the_callers_exception(router):
    decision = router.select_model("Document the retry policy")
    router.record_performance(decision.decision_id, "success")
    with pytest.raises(ConnectionError) as raised:
        with track_call(router, decision):
            raise ConnectionError("reset by peer")
    assert any("provider error not recorded" in note for note in raised.value.__notes__)


@pytest.mark.parametrize("use, error, message", [
    (lambda call: call.done(None, quality=1.5), ValueError, "quality_score"),
    (lambda call: call.done(None, outcome="great"), ValueError, "outcome"),
])
def test_bad_use_is_refused_naming_the_field_and_nothing_is_written(router, use, error, message):
    decision = router.select_model("What is 17 * 23?")
    with pytest.raises(error, match=message):
        with track_call(router, decision) as call:
            use(call)
    assert count_rows(router.home, "model_performance") == 0
    assert "provider error" not in reason_of(router, decision.decision_id)


def test_track_call_needs_the_decision_object(router):
    decision = router.select_model("What is 17 * 23?")
    with pytest.raises(TypeError, match="RoutingDecision"):
        with track_call(router, decision.decision_id):
            pass


@pytest.mark.parametrize("response, usage", [
    ({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}, Usage(3, 4)),
    ({"usage": {"input_tokens": 3, "output_tokens": 4}}, Usage(3, 4)),
    ({"usage": {"prompt_tokens": -1, "completion_tokens": 4}}, None),
    ({"usage": {"prompt_tokens": True, "completion_tokens": 4}}, None),
    ({"usage": None}, None),
    (object(), None),
    (None, None),
])
def test_usage_of_reads_both_shapes_and_refuses_nonsense(response, usage):
    assert usage_of(response) == usage


def test_an_exception_after_done_records_the_answer_not_a_provider_error(router):
    # Regression (attack): the agent's parsing of a bad answer raised after done(), and the
    # answer was recorded as an outage: the low quality learning needs was hidden.
    decision = router.select_model("Extract the fields as JSON")
    with pytest.raises(ValueError, match="not json"):
        with track_call(router, decision) as call:
            call.done({"usage": {"prompt_tokens": 10, "completion_tokens": 2}}, quality=0.1)
            raise ValueError("not json")
    row = outcome_of(router, decision.decision_id)
    assert row is not None and row["outcome"] == "failure"
    assert "provider error" not in reason_of(router, decision.decision_id)
