"""The LiteLLM drop-in against the real litellm package, offline: ``mock_response`` deployments
(answers, exceptions, rate-limit errors), sync and async, several deployments per group."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import warnings

import pytest

litellm = pytest.importorskip("litellm")

from conftest import count_rows, db_connect  # noqa: E402
from routing_runtime import ModelRouter  # noqa: E402
from routing_runtime.integrations.litellm import attach  # noqa: E402

RATE_LIMITED = "litellm.RateLimitError"
CHAT = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"]
#: The answer each deployment's mock returns, by registry model id.
ANSWERS = {"gpt-4o": "four", "gpt-4o-mini": "4", "claude-haiku-4-5": "It is 4.", "deepseek-chat": "4 (backup)"}


#: The LiteLLM model each registry model is deployed as: names in LiteLLM's cost table, so every
#: call has LiteLLM's own ``response_cost`` (the registry's comments name the same models).
LITELLM_MODELS = {
    "gpt-4o": "openai/gpt-4o", "gpt-4o-mini": "openai/gpt-4o-mini",
    "claude-haiku-4-5": "anthropic/claude-haiku-4-5-20251001", "deepseek-chat": "deepseek/deepseek-chat",
}


def deployment(model_id: str, group: str = "chat", mock: str | None = None, litellm_model: str | None = None) -> dict:
    return {
        "model_name": group,
        "litellm_params": {
            "model": litellm_model or LITELLM_MODELS[model_id], "api_key": "sk-test", "mock_response": mock or ANSWERS[model_id],
        },
        "model_info": {"id": model_id},
    }


@pytest.fixture
def routed(home):
    """``routed(model_list, **router_kwargs) -> (llm, attachment)``; detached at the end."""
    made = []

    def make(model_list, *, preference="balanced", score=None, clock=None, seed=3, **kwargs):
        router = ModelRouter.open(home, seed=seed)
        llm = litellm.Router(model_list=model_list, **kwargs)
        attachment = attach(llm, router, preference=preference, score=score, clock=clock)
        made.append((attachment, router))
        return llm, attachment

    yield make
    for attachment, router in made:
        attachment.detach()
        router.close()


def ask(text: str = "What is 2 + 2? Show the arithmetic.", **metadata) -> dict:
    return {"messages": [{"role": "user", "content": text}], **({"metadata": metadata} if metadata else {})}


def decisions(home) -> list:
    conn = db_connect(home)
    try:
        return conn.execute("SELECT * FROM routing_decisions ORDER BY created_at, rowid").fetchall()
    finally:
        conn.close()


def outcome_of(home, decision_id: str):
    conn = db_connect(home)
    try:
        return conn.execute("SELECT * FROM model_performance WHERE decision_id = ?", (decision_id,)).fetchone()
    finally:
        conn.close()


def test_a_completion_is_routed_and_its_litellm_figures_recorded(home, routed):
    llm, routing = routed([deployment(m) for m in CHAT])
    response = llm.completion(model="chat", **ask(agent_execution_id="run-1"))
    assert routing.flush() == 0 and routing.errors == []
    [decision] = decisions(home)
    answered = response._hidden_params["model_id"]
    assert decision["selected_model"] == answered and decision["agent_execution_id"] == "run-1"
    assert response.choices[0].message.content == ANSWERS[answered]
    assert decision["task_type"] == "math" and decision["preference"] == "balanced"
    assert 0 < decision["propensity"] <= 1
    outcome = outcome_of(home, decision["id"])
    assert outcome["outcome"] == "success" and outcome["model_id"] == answered
    assert outcome["tokens_used"] == response.usage.total_tokens > 0
    assert outcome["cost_usd"] == pytest.approx(response._hidden_params["response_cost"])
    assert outcome["cost_usd"] > 0
    assert outcome["latency_ms"] > 0


def test_an_async_completion_is_routed_and_recorded(home, routed):
    llm, routing = routed([deployment(m) for m in CHAT])

    async def run():
        answers = await asyncio.gather(*[llm.acompletion(model="chat", **ask(f"Write a pytest test for parse_{i}()")) for i in range(6)])
        assert await routing.aflush() == 0
        return answers

    answers = asyncio.run(run())
    rows = decisions(home)
    assert len(rows) == 6 and {r["task_type"] for r in rows} == {"testing"}
    assert sorted(r["selected_model"] for r in rows) == sorted(a._hidden_params["model_id"] for a in answers)
    for row in rows:
        outcome = outcome_of(home, row["id"])
        assert outcome["outcome"] == "success" and outcome["tokens_used"] > 0 and outcome["cost_usd"] > 0
    assert routing.errors == []


def test_only_the_groups_registry_models_are_candidates_with_a_renormalised_propensity(home, routed):
    llm, routing = routed([deployment(m) for m in CHAT])
    for i in range(40):
        llm.completion(model="chat", **ask(f"Plan the migration of service {i} to the new cluster, step by step"))
    routing.flush()
    rows = decisions(home)
    assert {r["selected_model"] for r in rows} <= set(CHAT)
    with ModelRouter.open(home) as router:
        weights = {r.model_id: r.selection_probability for r in router.rule_set.models_for(
            *(type(k)(v) for k, v in zip(router.rule_set.rows[0][:2], (rows[0]["task_type"], rows[0]["preference"]))))}
    in_group = sum(weights[m] for m in CHAT)
    for row in rows:
        assert row["propensity"] == pytest.approx(weights[row["selected_model"]] / in_group, abs=1e-5)
        # The registry's other models had traffic in this cell: the restriction is on record.
        assert set(json.loads(row["excluded"])) == {m for m, w in weights.items() if w > 0} - set(CHAT)


def test_metadata_overrides_the_preference_and_names_the_decision(home, routed):
    llm, routing = routed([deployment(m) for m in CHAT], preference="cost_efficient")
    metadata = {"routing_preference": "quality", "agent_execution_id": "agent-7", "routing_task_type": "planning"}
    llm.completion(model="chat", messages=[{"role": "user", "content": "hi"}], metadata=metadata)
    llm.completion(model="chat", **ask())
    routing.flush()
    first, second = decisions(home)
    assert (first["preference"], first["agent_execution_id"], first["task_type"]) == ("quality", "agent-7", "planning")
    assert metadata["routing_decision_id"] == first["id"]
    assert second["preference"] == "cost_efficient"


def test_bad_routing_preference_fails_the_call_naming_the_field_and_records_nothing(home, routed):
    llm, _ = routed([deployment(m) for m in CHAT], num_retries=0)
    with pytest.raises(Exception, match=r"metadata\['routing_preference'\]"):
        llm.completion(model="chat", **ask(routing_preference="fastest"))
    assert count_rows(home, "routing_decisions") == 0


@pytest.mark.parametrize("quality, outcome", [(0.9, "success"), (0.5, "partial"), (0.1, "failure")])
def test_score_is_the_recorded_quality(home, routed, quality, outcome):
    seen = []

    def score(kwargs, response):
        seen.append(response.choices[0].message.content)
        return quality

    llm, routing = routed([deployment(m) for m in CHAT], score=score)
    llm.completion(model="chat", **ask())
    routing.flush()
    [decision] = decisions(home)
    row = outcome_of(home, decision["id"])
    assert (row["outcome"], row["quality_score"]) == (outcome, quality)
    assert seen == [ANSWERS[decision["selected_model"]]]


@pytest.mark.parametrize("score, problem", [
    (lambda kwargs, response: 1 / 0, "score raised ZeroDivisionError"),
    (lambda kwargs, response: 7, "score returned 7, not a quality in [0, 1]"),
])
def test_a_broken_score_costs_the_quality_only(home, routed, score, problem):
    llm, routing = routed([deployment(m) for m in CHAT], score=score)
    llm.completion(model="chat", **ask())
    routing.flush()
    [decision] = decisions(home)
    row = outcome_of(home, decision["id"])
    assert (row["outcome"], row["quality_score"]) == ("success", None)
    assert len(routing.errors) == 1 and problem in routing.errors[0]


def check_chain(home, chains: list[list]) -> None:
    """Every request's decisions: all but the last are provider errors with no outcome, each
    retry links to the decision before it, the last has the answer's outcome."""
    for chain in chains:
        *failed, answered = chain
        for previous, row in zip(chain, chain[1:]):
            assert f"fallback of {previous['id']}" in row["selection_reason"]
            assert previous["selected_model"] in json.loads(row["excluded"])
        for row in failed:
            assert "provider error: RateLimitError" in row["selection_reason"]
            assert outcome_of(home, row["id"]) is None
        assert outcome_of(home, answered["id"])["outcome"] == "success"


def chains_of(home) -> list[list]:
    by_agent: dict[str, list] = {}
    for row in decisions(home):
        by_agent.setdefault(row["agent_execution_id"], []).append(row)
    return list(by_agent.values())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_rate_limited_deployment_is_a_provider_error_and_the_retry_its_own_linked_decision(home, routed, mode):
    # Two of three deployments rate-limit: LiteLLM retries, each retry excludes what failed.
    model_list = [deployment("gpt-4o", mock=RATE_LIMITED), deployment("gpt-4o-mini", mock=RATE_LIMITED), deployment("claude-haiku-4-5")]
    llm, routing = routed(model_list, num_retries=3, retry_after=0)

    async def run_async():
        answers = [await llm.acompletion(model="chat", **ask(agent_execution_id=f"req-{i}")) for i in range(8)]
        assert await routing.aflush() == 0
        return answers

    if mode == "sync":
        answers = [llm.completion(model="chat", **ask(agent_execution_id=f"req-{i}")) for i in range(8)]
        assert routing.flush() == 0
    else:
        answers = asyncio.run(run_async())
    assert {a._hidden_params["model_id"] for a in answers} == {"claude-haiku-4-5"}
    chains = chains_of(home)
    assert len(chains) == 8 and any(len(chain) > 1 for chain in chains)
    check_chain(home, chains)
    # The answers are credited to the model that gave them; the rate-limited ones have no outcome.
    conn = db_connect(home)
    credited = {r[0] for r in conn.execute("SELECT model_id FROM model_performance")}
    conn.close()
    assert credited == {"claude-haiku-4-5"}
    assert routing.errors == []


def test_a_fallback_to_another_group_is_credited_to_the_model_that_answered(home, routed):
    model_list = [deployment(m, mock=RATE_LIMITED) for m in CHAT] + [deployment("deepseek-chat", group="backup")]
    llm, routing = routed(model_list, num_retries=0, fallbacks=[{"chat": ["backup"]}])
    answer = llm.completion(model="chat", **ask(agent_execution_id="req"))
    routing.flush()
    assert answer._hidden_params["model_id"] == "deepseek-chat"
    [chain] = chains_of(home)
    assert [r["selected_model"] for r in chain][-1] == "deepseek-chat" and len(chain) == 2
    check_chain(home, [chain])


def test_when_every_deployment_fails_the_error_reaches_the_caller_and_no_outcome_is_recorded(home, routed):
    llm, routing = routed([deployment(m, mock=RATE_LIMITED) for m in CHAT[:2]], num_retries=3, retry_after=0)
    with pytest.raises(litellm.RateLimitError):
        llm.completion(model="chat", **ask(agent_execution_id="req"))
    assert routing.flush() == 0
    [chain] = chains_of(home)
    # Each attempt LiteLLM made is a decision of its own, linked to the one before; both models
    # were tried (LiteLLM stops once every deployment of the group is cooling down).
    assert {r["selected_model"] for r in chain} == set(CHAT[:2])
    for previous, row in zip(chain, chain[1:]):
        assert f"fallback of {previous['id']}" in row["selection_reason"]
    assert all("provider error: RateLimitError" in r["selection_reason"] for r in chain)
    assert count_rows(home, "model_performance") == 0


def test_a_deployment_outside_the_registry_is_never_chosen_and_named(home, routed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        llm, routing = routed([deployment("gpt-4o-mini"), {**deployment("gpt-4o"), "model_info": {"id": "my-finetune"}}])
        for _ in range(10):
            assert llm.completion(model="chat", **ask())._hidden_params["model_id"] == "gpt-4o-mini"
    assert routing.unrouted_deployments == {"chat": ["my-finetune"]}
    assert any("my-finetune" in str(w.message) and "model_info['id']" in str(w.message) for w in caught)


def test_a_group_without_registry_models_is_not_routed_or_recorded(home, routed):
    other = {**deployment("gpt-4o", group="other"), "model_info": {"id": "not-registered"}}
    llm, routing = routed([deployment("gpt-4o-mini"), other])
    assert llm.completion(model="other", **ask())._hidden_params["model_id"] == "not-registered"
    routing.flush()
    assert count_rows(home, "routing_decisions") == 0


def test_detach_stops_routing_and_recording(home, routed):
    llm, routing = routed([deployment(m) for m in CHAT])
    llm.completion(model="chat", **ask())
    routing.flush()
    routing.detach()
    llm.completion(model="chat", **ask())
    assert count_rows(home, "routing_decisions") == 1 and count_rows(home, "model_performance") == 1
    routing.detach()  # twice is fine


def test_attach_refuses_bad_arguments(home):
    with ModelRouter.open(home) as router:
        llm = litellm.Router(model_list=[deployment("gpt-4o")])
        with pytest.raises(ValueError, match="preference"):
            attach(llm, router, preference="fastest")
        with pytest.raises(ValueError, match="score"):
            attach(llm, router, score=0.5)
        with pytest.raises(TypeError, match="litellm.Router"):
            attach(object(), router)


def test_the_clock_stamps_decisions_and_outcomes(home, routed):
    day = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)
    llm, routing = routed([deployment(m) for m in CHAT], clock=lambda: day)
    llm.completion(model="chat", **ask())
    routing.flush()
    [decision] = decisions(home)
    assert decision["created_at"].startswith("2026-06-01 12:00:00")
    assert outcome_of(home, decision["id"])["recorded_at"].startswith("2026-06-01 12:00:00")


def test_a_second_attachment_in_the_process_records_too(tmp_path, routed, home):
    # Regression: LiteLLM drops a callback equal (by class and public attributes) to one it has
    # already promoted, so a second attach in one process recorded nothing, sync or async.
    from routing_runtime.admin import initialise

    first_llm, first = routed([deployment(m) for m in CHAT])
    first_llm.completion(model="chat", **ask())
    assert first.flush() == 0
    initialise(other_home := tmp_path / "other")
    with ModelRouter.open(other_home) as other_router:
        other_llm = litellm.Router(model_list=[deployment(m) for m in CHAT])
        second = attach(other_llm, other_router)
        try:
            other_llm.completion(model="chat", **ask())

            async def run():
                await first_llm.acompletion(model="chat", **ask())
                await other_llm.acompletion(model="chat", **ask())
                return await first.aflush(5), await second.aflush(5)

            assert asyncio.run(run()) == (0, 0) and second.flush(5) == 0
        finally:
            second.detach()
    assert count_rows(home, "model_performance") == 2 and count_rows(other_home, "model_performance") == 2


def test_a_cost_litellm_cannot_price_is_the_registry_list_price(home, routed):
    # LiteLLM reports 0.0 for a model missing from its cost table: learning would take it for free.
    llm, routing = routed([deployment("gpt-4o", litellm_model="openai/our-gpt-4o-proxy")])
    response = llm.completion(model="chat", **ask())
    assert routing.flush() == 0 and response._hidden_params["response_cost"] == 0.0
    [decision] = decisions(home)
    with ModelRouter.open(home) as router:
        model = next(m for m in router.registry.models if m.id == "gpt-4o")
    expected = model.call_cost_usd(response.usage.prompt_tokens, response.usage.completion_tokens)
    assert outcome_of(home, decision["id"])["cost_usd"] == pytest.approx(expected) and expected > 0


def test_routing_learn_after_simulated_days_moves_traffic_to_the_better_model(home, routed):
    # The registry's prior favours gpt-4o for quality; the scorer finds gpt-4o-mini's answers
    # better. Three simulated days through LiteLLM, one `routing learn`, then a fourth day.
    learn = pytest.importorskip("routing_pipelines.learn").learn
    quality = {"gpt-4o": 0.3, "gpt-4o-mini": 0.95}
    now = [dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)]
    llm, routing = routed(
        [deployment(m, mock=m) for m in quality], preference="quality", clock=lambda: now[0],
        score=lambda kwargs, response: quality[response.choices[0].message.content],
    )

    def day(number: int, requests: int = 50) -> dict[str, int]:
        served = dict.fromkeys(quality, 0)
        for i in range(requests):
            now[0] = dt.datetime(2026, 6, number, 9, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=7 * i)
            answer = llm.completion(model="chat", **ask(f"Solve for x: {i}x + 3 = 7. Show the algebra."))
            served[answer._hidden_params["model_id"]] += 1
        assert routing.flush() == 0 and routing.errors == []
        return served

    before = [day(d) for d in (1, 2, 3)]
    result = learn(home, "2026-06-03", quiet=True)
    assert result.status == "published", result
    after = day(4)
    share_before = sum(d["gpt-4o-mini"] for d in before) / 150
    assert share_before < 0.7 and after["gpt-4o-mini"] / 50 >= 0.9, (before, after)


def test_an_outcome_is_written_without_flush_when_the_process_goes_quiet(home, routed):
    # Outcomes wait for the caller's next call or flush(); an idle process has them written by
    # the attachment's writer thread within WRITE_DELAY_S.
    from routing_runtime.integrations.litellm import WRITE_DELAY_S

    llm, routing = routed([deployment(m) for m in CHAT])
    llm.completion(model="chat", **ask())
    deadline = time.monotonic() + 10 * WRITE_DELAY_S + 5
    while count_rows(home, "model_performance") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert count_rows(home, "model_performance") == 1 and routing.pending == 0


def test_a_streamed_completion_is_recorded_when_the_stream_ends(home, routed):
    llm, routing = routed([deployment(m, mock="hello there friend") for m in CHAT])
    stream = llm.completion(model="chat", stream=True, **ask("Write a haiku about retries"))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "hello there friend"
    assert routing.flush() == 0 and routing.errors == []
    [decision] = decisions(home)
    row = outcome_of(home, decision["id"])
    assert row["outcome"] == "success" and row["tokens_used"] > 0 and row["cost_usd"] > 0


def test_threads_sharing_one_attached_router_record_every_call(home, routed):
    import threading

    llm, routing = routed([deployment(m) for m in CHAT])
    failures = []

    def agent(number: int) -> None:
        try:
            for i in range(15):
                llm.completion(model="chat", **ask(f"Plan step {i} of job {number}", agent_execution_id=f"agent-{number}"))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and routing.flush() == 0 and routing.errors == []
    assert count_rows(home, "routing_decisions") == count_rows(home, "model_performance") == 60


@pytest.mark.parametrize("metadata, message", [
    ({"routing_task_type": "poetry"}, r"metadata\['routing_task_type'\]"),
    # An empty value is refused alike for both keys (it fell back to the default preference).
    ({"routing_task_type": ""}, r"metadata\['routing_task_type'\]"),
    ({"routing_preference": ""}, r"metadata\['routing_preference'\]"),
    ({"agent_execution_id": 42}, r"agent_execution_id=42 must be a non-empty string"),
    ({"agent_execution_id": "x" * 1000}, r"agent_execution_id=.* is 1000 characters long"),
])
def test_bad_routing_metadata_fails_the_call_naming_the_field(home, routed, metadata, message):
    llm, _ = routed([deployment(m) for m in CHAT], num_retries=0)
    with pytest.raises(Exception, match=message):
        llm.completion(model="chat", **ask(**metadata))
    assert count_rows(home, "routing_decisions") == 0


def test_reused_metadata_dict_keeps_every_call_its_own_decision_and_outcome(home, routed):
    # Regression (attack): the request chain lived in the caller's metadata, so a dict reused for
    # every call of an agent's run made each call a "retry" of the one before, marking good
    # answers as provider errors and losing their outcomes.
    llm, routing = routed([deployment(m) for m in CHAT])
    md = {"agent_execution_id": "run-42"}
    for i in range(20):
        llm.completion(model="chat", messages=[{"role": "user", "content": f"Plan step {i}"}], metadata=md)
    assert routing.flush() == 0 and routing.errors == []
    assert count_rows(home, "model_performance") == 20
    rows = decisions(home)
    assert not any("fallback of" in d["selection_reason"] for d in rows)
    assert {d["agent_execution_id"] for d in rows} == {"run-42"}


def test_metadata_shared_between_two_attached_routers_does_not_fail_the_call(tmp_path, home, routed):
    from routing_runtime.admin import initialise

    llm1, first = routed([deployment(m) for m in CHAT])
    initialise(other := tmp_path / "other")
    with ModelRouter.open(other) as router2:
        llm2 = litellm.Router(model_list=[deployment(m) for m in CHAT], num_retries=0)
        second = attach(llm2, router2)
        try:
            md = {"agent_execution_id": "job"}
            llm1.completion(model="chat", **ask(), metadata=md)
            llm2.completion(model="chat", **ask(), metadata=md)
            assert first.flush() == 0 and second.flush() == 0
        finally:
            second.detach()
    assert count_rows(home, "model_performance") == 1 and count_rows(other, "model_performance") == 1


def test_an_asyncio_run_per_call_has_every_outcome_recorded_by_flush(home, routed):
    # Regression (attack): LiteLLM queues async callbacks on the call's event loop; asyncio.run()
    # per call ends that loop first, so no outcome was ever written and flush() waited in vain.
    llm, routing = routed([deployment(m) for m in CHAT])
    for i in range(5):
        asyncio.run(llm.acompletion(model="chat", **ask(f"What is {i} + {i}?")))
    assert routing.flush(timeout=5) == 0 and routing.errors == []
    assert count_rows(home, "routing_decisions") == count_rows(home, "model_performance") == 5


def test_an_asyncio_run_per_call_has_every_outcome_recorded_at_exit(home):
    # The same script without flush(): the attachment's exit hook runs LiteLLM's queued callbacks
    # (LiteLLM's own exit hook runs after it, too late to be written).
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import asyncio, os
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        import litellm
        from routing_runtime import ModelRouter
        from routing_runtime.integrations.litellm import attach
        deployments = {[deployment(m) for m in CHAT]!r}
        llm = litellm.Router(model_list=deployments)
        attach(llm, ModelRouter.open({str(home)!r}))
        for i in range(4):
            asyncio.run(llm.acompletion(model="chat", messages=[{{"role": "user", "content": f"What is {{i}} + 1?"}}]))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    assert count_rows(home, "routing_decisions") == count_rows(home, "model_performance") == 4


def test_an_abandoned_stream_is_given_up_after_the_age_limit(home, routed, monkeypatch):
    # Regression (attack): a stream not read to its end never reports, so its decision stayed open
    # forever (memory without bound; every flush() waited its whole timeout).
    import routing_runtime.integrations.litellm as integration

    llm, routing = routed([deployment(m, mock="one two three four") for m in CHAT])
    stream = llm.completion(model="chat", stream=True, **ask("Write a haiku about retries"))
    next(iter(stream))
    del stream
    assert routing.flush(timeout=0.2) == 1 and routing.abandoned == 0
    monkeypatch.setattr(integration, "ABANDONED_AFTER_S", 0.0)
    assert routing.flush(timeout=5) == 0 and routing.abandoned == 1
    assert len(routing.errors) == 1 and "no outcome reported" in routing.errors[0]
    [abandoned] = decisions(home)
    assert outcome_of(home, abandoned["id"]) is None
    monkeypatch.setattr(integration, "ABANDONED_AFTER_S", 1200.0)
    llm.completion(model="chat", **ask())  # later calls are recorded as before
    assert routing.flush() == 0 and count_rows(home, "model_performance") == 1


def test_a_second_attach_on_the_same_router_is_refused_naming_the_fix(home, routed):
    # Regression (attack): LiteLLM keeps one routing strategy, so a second attach() silently
    # replaced the first one's and the first attachment recorded nothing.
    llm, first = routed([deployment(m) for m in CHAT])
    with ModelRouter.open(home) as router, pytest.raises(ValueError, match=r"already attached.*detach\(\)"):
        attach(llm, router)
    llm.completion(model="chat", **ask())
    assert first.flush() == 0 and count_rows(home, "model_performance") == 1
    first.detach()
    with ModelRouter.open(home) as router:
        second = attach(llm, router)  # once detached, the Router may be attached again
        try:
            llm.completion(model="chat", **ask())
            assert second.flush() == 0 and count_rows(home, "model_performance") == 2
        finally:
            second.detach()


def test_detach_gives_back_the_routers_strategy_and_lets_go_of_the_attachment(home):
    import gc
    import weakref

    llm = litellm.Router(
        model_list=[deployment(m) for m in CHAT], routing_strategy="latency-based-routing", routing_strategy_args={"ttl": 5},
    )
    router = ModelRouter.open(home)
    routing = attach(llm, router)
    llm.completion(model="chat", **ask())
    routing.flush()
    routing.detach()
    assert llm.settings().routing_strategy == "latency-based-routing"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert llm.routing_strategy_args == {"ttl": 5}
    assert routing.errors == []
    gone = weakref.ref(routing)
    del routing
    gc.collect()
    assert gone() is None  # LiteLLM keeps no reference to it (nor to the ModelRouter behind it)
    for _ in range(5):
        llm.completion(model="chat", **ask())
    router.close()
    assert count_rows(home, "routing_decisions") == 1


def test_a_sync_flush_inside_an_event_loop_points_to_aflush(home, routed):
    llm, routing = routed([deployment(m) for m in CHAT])

    async def run():
        await llm.acompletion(model="chat", **ask())
        with pytest.raises(RuntimeError, match=r"await attachment.aflush\(\)"):
            routing.flush()
        return await routing.aflush()

    assert asyncio.run(run()) == 0 and count_rows(home, "model_performance") == 1
