"""Route a LiteLLM ``Router``'s calls through the model router, and record their outcomes.

::

    import litellm
    from routing_runtime import ModelRouter
    from routing_runtime.integrations.litellm import attach

    llm = litellm.Router(model_list=[
        # One deployment per registry model; model_info["id"] is the registry's model id.
        {"model_name": "chat", "litellm_params": {"model": "openai/gpt-4o"}, "model_info": {"id": "gpt-4o"}},
        {"model_name": "chat", "litellm_params": {"model": "openai/gpt-4o-mini"}, "model_info": {"id": "gpt-4o-mini"}},
    ])
    routing = attach(llm, ModelRouter.open(), preference="balanced")
    answer = llm.completion(model="chat", messages=[{"role": "user", "content": "Fix this KeyError ..."}],
                            metadata={"routing_preference": "quality", "agent_execution_id": "run-42"})
    answer._hidden_params["model_id"]      # the registry model that answered
    routing.flush()                        # before exit: every outcome written to routing.db

What happens to each call:

* **Selection.** LiteLLM asks the attached strategy for a deployment of the requested group. The
  strategy classifies the request (the last user message; ``metadata["routing_task_type"]`` names
  the task type instead), and asks ``select_model`` among the registry models that have a
  deployment in the group and are not cooling down (``within=``; the propensity is the
  renormalised one). ``metadata["routing_preference"]`` and ``metadata["agent_execution_id"]``
  override the defaults; the decision id is put in ``metadata["routing_decision_id"]``.
* **Outcome.** LiteLLM's success callback reports ``success`` with LiteLLM's latency (end minus
  start of the call), ``usage.total_tokens`` and ``response_cost`` (the registry's list price of
  the tokens where LiteLLM has no price for the deployment's model and reports 0).
  ``score(kwargs, response)`` may return a quality in [0, 1]; the outcome is then ``success``
  from 0.75, ``partial`` from 0.25, else ``failure``. Reports are written to ``routing.db`` on
  the caller's thread: at its next routed call, at :meth:`Attachment.flush`, or by a writer
  thread once the process has been quiet for :data:`WRITE_DELAY_S`.
* **Provider errors** (any exception: rate limits, outages, timeouts, refused requests) are not
  outcomes. The decision is marked with :meth:`~routing_runtime.ModelRouter.record_provider_error`
  and gets no ``model_performance`` row, so learning never takes an unreached model for a bad
  one; the error stays in the decision's ``selection_reason`` for the audit trail.
* **Retries and fallbacks.** When LiteLLM retries (same group) or falls back (another group), the
  strategy asks :meth:`~routing_runtime.ModelRouter.fallback` of the failed decision: a decision
  of its own that excludes every model that failed for this request and whose reason says
  ``fallback of <id>``, so the answer is credited to the model that gave it. Where nothing else is
  left, the same model is tried again, as a new decision with the same ``agent_execution_id``.

* **Flush and exit.** :meth:`Attachment.flush` (``aflush`` in async code) writes every reported
  outcome and waits for the calls LiteLLM has not reported; it also runs the async callbacks
  LiteLLM left queued on an event loop that has ended, as does the exit hook. A call that never
  reports (a stream not read to its end) is given up after :data:`ABANDONED_AFTER_S`
  (:attr:`Attachment.abandoned`).
* **Not evidence**: an answer from LiteLLM's response cache closes its decision without an
  outcome; an answer failing the caller's ``response_format`` schema is an outcome of quality 0.
* **One attachment per Router**: a second :func:`attach` on the same Router is refused;
  :meth:`Attachment.detach` waits for returned calls' outcomes and gives the Router back its own
  routing strategy.
* **Never fails the call**: a ``routing.db`` that cannot take a decision (locked, full) serves
  the call from a deployment at random, unrecorded (:attr:`Attachment.errors`).

Calls LiteLLM routes without messages (embeddings, files) and groups with no deployment of a
registry model are not routed: they get a deployment at random, as LiteLLM's ``simple-shuffle``,
and nothing is recorded. A deployment whose ``model_info["id"]`` is not a registry model is
never chosen in a group that has registry models (:attr:`Attachment.unrouted_deployments`).
"""

from __future__ import annotations

import asyncio
import atexit
import numbers
import os
import random
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

# LiteLLM fetches its price map from the internet at import unless told otherwise: a router
# must not reach out when it starts. Its bundled map prices the calls; set the variable to
# "False" before this import for the latest one.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

try:
    import litellm
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.types.router import CustomRoutingStrategyBase
except ImportError as exc:  # pragma: no cover - exercised by a runtime-only install
    raise ImportError(
        "routing_runtime.integrations.litellm needs LiteLLM: pip install 'routing-runtime[litellm]'"
    ) from exc

from routing_runtime.classifier import classify_task
from routing_runtime.integrations.sdk import Usage, usage_of
from routing_runtime.router import ModelRouter, RoutingDecision
from routing_runtime.store import StoreError
from routing_runtime.types import RoutingPreference, TaskType, outcome_for_quality, parse_enum

__all__ = ["Attachment", "attach"]

#: Request metadata keys the strategy reads.
PREFERENCE_KEY, AGENT_KEY, TASK_KEY = "routing_preference", "agent_execution_id", "routing_task_type"
#: The key the strategy writes: the id of the decision behind the call's current attempt.
DECISION_KEY = "routing_decision_id"
#: Trace ids whose decision chains are kept: a chain is dropped when its request answers; beyond
#: this many, the oldest traces with no call in flight are dropped (requests that failed for good).
MAX_CHAINS = 10_000
#: Errors kept for :attr:`Attachment.errors`.
MAX_ERRORS = 100
#: How long a reported outcome may wait for the caller's next pick (or flush) to write it before
#: the writer thread does (seconds).
WRITE_DELAY_S = 0.2
#: How long the models LiteLLM has in cooldown are kept between failures (seconds).
COOLDOWNS_KEPT_S = 1.0
#: How long a routed call may go without reporting before its decision is given up as abandoned
#: (seconds): a stream not read to its end never reports. Twice LiteLLM's default timeout.
ABANDONED_AFTER_S = 1200.0

#: LiteLLM Routers with a live attachment, by id: a second attach() would silently replace the
#: first one's strategy, so it is refused.
_ATTACHED: dict[int, Attachment] = {}
_ATTACHED_LOCK = threading.Lock()

Score = Callable[[Mapping[str, Any], Any], "float | None"]


def attach(
    llm_router: Any,
    router: ModelRouter,
    *,
    preference: RoutingPreference | str = RoutingPreference.BALANCED,
    score: Score | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Attachment:
    """Make ``llm_router`` (a ``litellm.Router``) route by ``router`` and record every outcome.

    ``preference`` is the default for requests whose metadata names none; ``score(kwargs,
    response)``, if given, returns the answer's quality in [0, 1] (or None); an exception or a
    value outside [0, 1] is kept in :attr:`Attachment.errors` and the outcome is recorded
    without a quality. ``clock()`` (default: now) stamps decisions and outcomes, for replays and
    simulations of past days. Returns the :class:`Attachment`: ``flush()`` before the process exits.
    Raises ValueError for a bad ``preference`` or ``score``, TypeError when ``llm_router`` is not
    a LiteLLM Router.
    """
    default = parse_enum(RoutingPreference, preference, "preference")
    if score is not None and not callable(score):
        raise ValueError(f"score={score!r} must be a callable score(kwargs, response) -> quality in [0, 1], or None")
    if not callable(getattr(llm_router, "register_plugin", None)) or not callable(getattr(llm_router, "registry", None)):
        raise TypeError(
            f"llm_router={type(llm_router).__name__} is not a litellm.Router (LiteLLM 1.110 or later):"
            " pass the Router your completion calls go through"
        )
    if clock is not None and not callable(clock):
        raise ValueError(f"clock={clock!r} must be a callable returning a datetime, or None")
    attachment = Attachment(llm_router, router, default, score, clock)
    with _ATTACHED_LOCK:
        earlier = _ATTACHED.get(id(llm_router))
        if earlier is not None:
            raise ValueError(
                f"llm_router is already attached (to the router of {earlier.router.home}): a second attach() would"
                " replace its routing strategy; call detach() on the first attachment, then attach again"
            )
        _ATTACHED[id(llm_router)] = attachment
    llm_router.register_plugin(attachment._strategy)
    litellm.logging_callback_manager.add_litellm_callback(attachment._logger)
    attachment._writer.start()
    atexit.register(attachment._at_exit)  # outcomes already reported are not lost at exit
    return attachment


class _Group(NamedTuple):
    """A LiteLLM model group as the strategy sees it, for one registry version."""

    version: int
    #: The router's models when the group was read: a new rule set or registry re-reads it.
    known: frozenset[str]
    #: enabled registry model id -> its deployment, in the group's order.
    routed: dict[str, Any]
    every: tuple[Any, ...]
    unrouted: tuple[str, ...]


class _Open(NamedTuple):
    """A routed call that has not reported yet."""

    model_id: str
    since: float  # time.monotonic() when its decision was made


class _Report(NamedTuple):
    """A call's outcome as LiteLLM's callback reported it, waiting to be written."""

    decision_id: str
    model_id: str
    #: None: a provider error (``error`` says which); else the outcome's figures.
    quality: float | None
    latency_ms: float | None
    tokens: int | None
    cost_usd: float | None
    usage: Usage | None
    error: str | None
    at: datetime | None


class Attachment:
    """What :func:`attach` installed on a LiteLLM Router: flush, inspect, detach."""

    def __init__(
        self, llm_router: Any, router: ModelRouter, preference: RoutingPreference, score: Score | None,
        clock: Callable[[], datetime] | None,
    ) -> None:
        self.llm_router, self.router, self.preference, self._score = llm_router, router, preference, score
        self._now: Callable[[], datetime | None] = clock or (lambda: None)
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        #: decision id -> its call, for decisions whose call has not reported yet.
        self._open: dict[str, _Open] = {}
        self._abandoned = 0
        self._next_sweep = time.monotonic() + ABANDONED_AFTER_S
        #: LiteLLM trace id -> its requests' decision chains: (decision id, model id) in order,
        #: retries and fallbacks appended. Callers may share a trace id between requests.
        self._chains: OrderedDict[str, list[list[tuple[str, str]]]] = OrderedDict()
        #: Decisions given up as abandoned, whose report is still written should it come.
        self._given_up: OrderedDict[str, str] = OrderedDict()
        #: Reported outcomes not yet written, and how many are being written now.
        self._ready: deque[_Report] = deque()
        self._recording = 0
        self._prices: tuple[int, dict[str, Any]] = (-1, {})
        #: group -> (until when, models in cooldown): see _cooling.
        self._cooldowns: dict[str, tuple[float, frozenset[str]]] = {}
        self._errors: deque[str] = deque(maxlen=MAX_ERRORS)
        self._attached = True
        # What LiteLLM routed by before: detach() gives it back.
        self._strategy_before = _routing_strategy_of(llm_router)
        self._strategy = _Strategy(self, llm_router)
        self._logger = _Outcomes(self)
        self._writer = threading.Thread(target=self._write_when_idle, name="routing-litellm-outcomes", daemon=True)

    # ------------------------------------------------------------------ public

    @property
    def errors(self) -> list[str]:
        """The latest problems recording outcomes (at most :data:`MAX_ERRORS`), oldest first.
        Recording never raises into LiteLLM's call: what went wrong is kept here."""
        with self._lock:
            return list(self._errors)

    @property
    def pending(self) -> int:
        """Routed calls whose outcome (or provider error) is not written to ``routing.db`` yet."""
        with self._lock:
            return self._pending()

    @property
    def abandoned(self) -> int:
        """Routed calls given up after :data:`ABANDONED_AFTER_S` without a report (a stream not read
        to its end): their decisions stay in ``routing.db`` without an outcome."""
        with self._lock:
            return self._abandoned

    @property
    def unrouted_deployments(self) -> dict[str, list[str]]:
        """Per group seen so far, deployment ids that are not registry models (never chosen)."""
        with self._lock:
            return {name: list(group.unrouted) for name, group in self._groups.items() if group.unrouted}

    def flush(self, timeout: float = 10.0) -> int:
        """Write every routed call's outcome to ``routing.db``, waiting up to ``timeout`` seconds
        for calls LiteLLM has not reported yet (it reports sync successes from its logging
        thread, and runs the async callbacks of calls whose event loop has ended). Returns how
        many are still pending: 0 means all recorded. In async code, ``await aflush()``: this
        would block the event loop that runs the callbacks it waits for (RuntimeError)."""
        if _running_loop() is not None:
            raise RuntimeError("flush() called inside a running event loop would block it: use `await attachment.aflush()`")
        deadline = time.monotonic() + timeout
        self._run_orphaned_callbacks(timeout)
        while True:
            self._write_ready()
            with self._settled:
                if self._ready:
                    continue
                self._expire_open()
                left = deadline - time.monotonic()
                if not self._pending() or left <= 0:
                    return self._pending()
                self._settled.wait(left)

    async def aflush(self, timeout: float = 10.0) -> int:
        """:meth:`flush` for async code: lets the event loop run LiteLLM's async callbacks."""
        deadline, pause = time.monotonic() + timeout, 0.0
        worker = _litellm_logging_worker()
        if worker is not None and _orphaned(worker, asyncio.get_running_loop()) and self.pending:
            # Callbacks left by an ended loop are carried to this one; wait for them with LiteLLM.
            try:
                await asyncio.wait_for(worker.flush(), timeout)
            except Exception as exc:  # noqa: BLE001 - a timeout, or the callbacks' own failures
                self._note(f"LiteLLM's queued callbacks did not all run ({type(exc).__name__}: {exc})")
        while True:
            self._write_ready()
            with self._lock:
                self._expire_open()
            if not self.pending or time.monotonic() >= deadline:
                return self.pending
            # Callbacks queued on this loop usually run within a few turns of it: yield first,
            # then back off to 5 ms for calls still waiting on a thread.
            await asyncio.sleep(pause)
            pause = min(0.005, pause * 2 or 0.0001)

    def detach(self, timeout: float = 5.0) -> None:
        """Stop routing and recording, and give the Router back the routing strategy it had
        (its ``routing_strategy`` and ``routing_strategy_args``; what that strategy had
        learnt, such as latencies, starts afresh). First waits, up to ``timeout`` seconds, for
        the outcomes of routed calls (LiteLLM reports a sync call just after it returns); in
        async code it cannot wait without blocking the loop: ``await aflush()`` before. Calls
        still running after that are not recorded. The Router may then be attached again."""
        if self._attached and _running_loop() is None:
            self.flush(timeout)
        with self._settled:
            if not self._attached:
                return
            self._attached = False
            self._settled.notify_all()
        # LiteLLM copies litellm.callbacks into its per-event lists on first use: remove it from all.
        litellm.logging_callback_manager.remove_callback_from_all_lists(self._logger)
        self._logger.release()
        self._strategy.release()
        self._restore_strategy()
        with _ATTACHED_LOCK:
            if _ATTACHED.get(id(self.llm_router)) is self:
                del _ATTACHED[id(self.llm_router)]
        atexit.unregister(self._at_exit)
        # The writer thread holds the attachment until it returns (it may be waking up, or in
        # the middle of a write): wait for it, so that a detached attachment is let go of at once.
        if self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join(timeout)
        self._write_ready()

    def _restore_strategy(self) -> None:
        """LiteLLM drops a registered strategy only when its ``routing_strategy`` setting changes:
        switch to another one and back."""
        if self._strategy_before is None:
            return
        strategy, args = self._strategy_before
        try:
            from litellm.router_api import ChangeSet

            other = "least-busy" if strategy == "simple-shuffle" else "simple-shuffle"
            self.llm_router.apply(ChangeSet(settings={"routing_strategy": other}))
            self.llm_router.apply(ChangeSet(settings={"routing_strategy": strategy, "routing_strategy_args": args}))
        except Exception as exc:  # noqa: BLE001 - the released strategy still picks, at random
            self._note(f"routing_strategy {strategy!r} not restored ({type(exc).__name__}: {exc}); picking at random")

    # ------------------------------------------------------------------ selection

    def _pick(self, model: str, messages: Any, request_kwargs: Mapping[str, Any] | None) -> Any:
        if self._ready:
            self._write_ready()
        group = self._group(model)
        if not self._attached or not group.routed or not messages:
            return _shuffle(group.every)
        request = request_kwargs or {}
        metadata = request.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
        # A request's attempts share LiteLLM's trace id; its chain is ours, not in the caller's
        # metadata (a dict reused for every call of an agent's run would chain unrelated calls).
        # A chain continues only on a retry: LiteLLM lists the attempts that failed.
        trace = request.get("litellm_trace_id")
        retrying = bool(metadata.get("previous_models"))
        if retrying:
            # The failure may have put a deployment in cooldown, and LiteLLM may not have run the
            # failure callback yet (async ones wait in its logging queue).
            self._cooldowns.pop(model, None)
        failed = frozenset(
            str(p["deployment_id"]) for p in metadata.get("previous_models") or () if isinstance(p, Mapping) and p.get("deployment_id")
        )
        with self._lock:
            chain = self._retried_chain(trace, failed) if retrying and trace is not None else None
        cooling = self._cooling(model, group)
        reachable = [m for m in group.routed if m not in cooling] or list(group.routed)
        # Bad metadata fails the call with the field named, before anything is recorded.
        named = metadata.get(PREFERENCE_KEY)
        pref = self.preference if named is None else parse_enum(RoutingPreference, named, f"metadata[{PREFERENCE_KEY!r}]")
        task = _task(messages, metadata.get(TASK_KEY))
        try:
            if chain:
                decision = self._retry(chain, failed, reachable, metadata, task, pref)
            else:
                decision = self.router.select_model(
                    task, pref, metadata.get(AGENT_KEY), exclude=failed & self.router.registered_models, within=reachable,
                    at=self._now(),
                )
        except (StoreError, OSError) as exc:
            # routing.db cannot take the decision (locked past its busy timeout, disk full): the
            # call is served all the same, unrecorded, as recording problems never fail it.
            self._note(f"decision not recorded ({type(exc).__name__}: {exc}); the call went to a deployment at random")
            return _shuffle(tuple(group.routed[m] for m in reachable))
        now = time.monotonic()
        with self._lock:
            self._open[decision.decision_id] = _Open(decision.model_id, now)
            if now >= self._next_sweep:
                self._expire_open()
            if trace is not None:
                if chain is None:
                    chain = []
                    self._chains.setdefault(trace, []).append(chain)
                chain.append((decision.decision_id, decision.model_id))
                self._chains.move_to_end(trace)
                if len(self._chains) > MAX_CHAINS:
                    self._drop_ended_chains()
        metadata[DECISION_KEY] = decision.decision_id
        return group.routed[decision.model_id]

    def _retried_chain(self, trace: str, failed: frozenset[str]) -> list[tuple[str, str]] | None:
        """The chain LiteLLM is retrying (under the lock): of the trace's chains whose last call is
        over, the newest whose last model failed for this request (else the newest over)."""
        over = [chain for chain in reversed(self._chains.get(trace, ())) if chain[-1][0] not in self._open]
        return next((chain for chain in over if chain[-1][1] in failed), over[0] if over else None)

    def _drop_ended_chains(self) -> None:
        """Drop the oldest traces with no call in flight, down to 90% of MAX_CHAINS (under the lock)."""
        for trace in list(self._chains):
            if len(self._chains) <= MAX_CHAINS * 0.9:
                return
            if not any(d in self._open for chain in self._chains[trace] for d, _ in chain):
                del self._chains[trace]

    def _retry(
        self, chain: list[tuple[str, str]], failed: frozenset[str], reachable: list[str], metadata: Mapping[str, Any],
        task: TaskType, pref: RoutingPreference,
    ) -> RoutingDecision:
        """The decision for LiteLLM's next attempt after the call of the chain's last decision raised."""
        previous = [p for p in metadata.get("previous_models") or () if isinstance(p, Mapping)]
        error = str(previous[-1].get("exception_string") or previous[-1].get("exception_type")) if previous else "retried by LiteLLM"
        registered = self.router.registered_models
        try:
            return self.router.fallback(chain[-1][0], error=error, exclude=failed & registered, within=reachable, at=self._now())
        except (ValueError, LookupError):
            # Nothing else is left in the group: LiteLLM tries the same deployment again, as a
            # decision of its own for the same agent execution (by default the first decision's id).
            return self.router.select_model(task, pref, metadata.get(AGENT_KEY) or chain[0][0], within=reachable, at=self._now())

    def _group(self, model: str) -> _Group:
        registry = self.llm_router.registry()
        version = registry.version
        registered = self.router.registered_models
        earlier = self._groups.get(model)
        if earlier is not None and earlier.version == version and earlier.known is registered:
            return earlier
        every = tuple(registry.deployments(model) or ())
        disabled = {m.id for m in self.router.registry.models if not m.enabled}
        routed: dict[str, Any] = {}
        unrouted = []
        for deployment in every:
            model_id = (deployment.get("model_info") or {}).get("id")
            if model_id in disabled:
                continue  # a registry model switched off: no traffic (a group of only such is not routed)
            if model_id in registered and model_id not in routed:
                routed[model_id] = deployment
            else:
                unrouted.append(str(model_id))
        group = _Group(version, registered, routed, every, tuple(unrouted) if routed else ())
        if group.unrouted and (earlier is None or earlier.unrouted != group.unrouted):
            warnings.warn(
                f"LiteLLM group {model!r}: deployments {', '.join(group.unrouted)} are not registry models and are never"
                " chosen: set their model_info['id'] to a registry model id (or add the model to the registry)",
                stacklevel=2,
            )
        with self._lock:
            self._groups[model] = group
        return group

    def _cooling(self, name: str, group: _Group) -> frozenset[str]:
        """The group's registry models LiteLLM has put in cooldown after failures. Asking LiteLLM
        costs ~0.1 ms a call, so the answer is kept for COOLDOWNS_KEPT_S, and forgotten at once
        when any call in the process fails (only a cooldown shared through Redis by another
        process can then be seen up to COOLDOWNS_KEPT_S late)."""
        now = time.monotonic()
        kept = self._cooldowns.get(name)
        if kept is not None and kept[0] > now:
            return kept[1]
        try:
            cooldowns = self.llm_router.health().cooldowns
            cooling = frozenset(model_id for model_id, _ in cooldowns.get_active_cooldowns(list(group.routed), None))
        except Exception as exc:  # noqa: BLE001 - a LiteLLM without this API: every deployment is reachable
            self._note(f"cooldowns unreadable ({type(exc).__name__}: {exc}); routing among every deployment")
            cooling = frozenset()
        self._cooldowns[name] = (now + COOLDOWNS_KEPT_S, cooling)
        return cooling

    # ------------------------------------------------------------------ outcomes
    #
    # LiteLLM reports sync successes on its logging thread. Writing there would make that thread
    # and the caller's next pick take turns on the router's lock and the GIL (a convoy that cost
    # ~1 ms a call); so callbacks only queue the report, and the caller's thread writes it: at
    # its next pick, at flush(), or, when the process goes quiet, a writer thread after
    # WRITE_DELAY_S (and at exit).

    def _report(self, kwargs: Mapping[str, Any], report: Callable[[str, str], _Report | None], *, ends: bool) -> None:
        """Queue ``report(decision_id, model_id)`` (None: close the decision without writing) for
        the decision a callback is about: of its trace's chains, the first decision still open
        (else given up) for the deployment that was called. ``ends``: the request is over (it
        answered), so its chain is dropped."""
        params = kwargs.get("litellm_params") or {}
        model_id = (params.get("model_info") or {}).get("id")
        trace = str(kwargs.get("litellm_trace_id"))
        with self._lock:
            chains = self._chains.get(trace) or ()  # empty: another Router's call
            found = next(((chain, d) for chain in chains for d, m in chain if m == model_id and d in self._open), None) or next(
                ((chain, d) for chain in chains for d, m in chain if m == model_id and d in self._given_up), None)
        if found is None:
            return
        chain, decision_id = found
        item = report(decision_id, str(model_id))  # outside the lock: it runs the caller's score()
        with self._settled:
            if self._open.pop(decision_id, None) is not None or self._given_up.pop(decision_id, None) is not None:
                if item is not None:
                    self._ready.append(item)
                self._settled.notify_all()
            if ends and chain in self._chains.get(trace, ()):
                self._chains[trace].remove(chain)
                if not self._chains[trace]:
                    del self._chains[trace]

    def _succeeded(self, kwargs: Mapping[str, Any], response: Any, start: Any, end: Any) -> None:
        def report(decision_id: str, model_id: str) -> _Report | None:
            if kwargs.get("cache_hit"):
                # LiteLLM's cache is keyed by the group: the answer may be another model's, and
                # its latency and cost are the cache's. No evidence about this model.
                return None
            usage = usage_of(response)
            tokens = getattr(getattr(response, "usage", None), "total_tokens", None)
            cost = kwargs.get("response_cost")
            # LiteLLM prices a model missing from its cost table at 0.0: learning would take it
            # for free. Such a call (None here) is priced by the writer at the registry's list price.
            if not isinstance(cost, (int, float)) or cost <= 0:
                cost = None
            return _Report(
                decision_id, model_id, self._quality(kwargs, response), _elapsed_ms(start, end),
                tokens if isinstance(tokens, int) else (usage.total_tokens if usage else None), cost, usage, None, self._now(),
            )
        self._report(kwargs, report, ends=True)

    def _failed(self, kwargs: Mapping[str, Any], start: Any = None, end: Any = None) -> None:
        self._cooldowns.clear()  # a failure may have put a deployment in cooldown
        error = kwargs.get("exception")
        if isinstance(error, _ANSWER_REFUSED):
            # The model answered, and its answer failed the caller's response_format schema: a
            # bad answer (quality 0), not an unreached model.
            self._report(kwargs, lambda decision_id, model_id: _Report(
                decision_id, model_id, 0.0, _elapsed_ms(start, end), None, None, None, None, self._now()), ends=True)
            return
        text = f"{type(error).__name__}: {error}" if error is not None else "LiteLLM reported a failure"
        self._report(kwargs, lambda decision_id, model_id: _Report(decision_id, model_id, None, None, None, None, None, text, None),
                     ends=False)

    def _pending(self) -> int:
        return len(self._open) + len(self._ready) + self._recording

    def _expire_open(self) -> None:
        """Give up the calls that have not reported for ABANDONED_AFTER_S (under the lock)."""
        now = time.monotonic()
        cutoff = now - ABANDONED_AFTER_S
        stale = [d for d, call in self._open.items() if call.since <= cutoff]
        for decision_id in stale:
            self._given_up[decision_id] = self._open.pop(decision_id).model_id
            if len(self._given_up) > MAX_CHAINS:
                self._given_up.popitem(last=False)
            self._errors.append(
                f"decision {decision_id}: no outcome reported within {ABANDONED_AFTER_S:.0f} s (a stream not read to its"
                " end?); left without an outcome"
            )
        self._abandoned += len(stale)
        self._next_sweep = now + ABANDONED_AFTER_S / 10

    def _run_orphaned_callbacks(self, timeout: float) -> None:
        """Run the async callbacks LiteLLM queued on an event loop that has ended (an
        ``asyncio.run(llm.acompletion(...))`` per call): they wait for the next loop otherwise."""
        worker = _litellm_logging_worker()
        if worker is None or not self._pending() or not _orphaned(worker, None):
            return
        async def run() -> None:
            try:
                await asyncio.wait_for(worker.flush(), timeout)
            finally:
                await worker.stop()  # its worker task must not outlive this loop

        loop = asyncio.new_event_loop()  # not set as the thread's loop: the caller's stays as it was
        try:
            loop.run_until_complete(run())
        except Exception as exc:  # noqa: BLE001 - a timeout, or the callbacks' own failures
            self._note(f"LiteLLM's queued callbacks did not all run ({type(exc).__name__}: {exc})")
        finally:
            loop.close()

    def _at_exit(self) -> None:
        """At exit (before LiteLLM's own exit flush, which would report too late): run what
        LiteLLM still queues, write every report, and wait for the writes in progress (the
        writer thread's, which exit would cut off)."""
        self._run_orphaned_callbacks(timeout=5.0)
        self._write_ready()
        with self._settled:
            self._settled.wait_for(lambda: not self._recording, timeout=15.0)

    def _write_ready(self) -> None:
        """Write the queued reports to ``routing.db`` (on the calling thread)."""
        with self._lock:
            if not self._ready:
                return
            batch = list(self._ready)
            self._ready.clear()
            self._recording += len(batch)
        try:
            for item in batch:
                self._write(item)
        finally:
            with self._settled:
                self._recording -= len(batch)
                self._settled.notify_all()

    def _write(self, item: _Report) -> None:
        try:
            if item.error is not None:
                self.router.record_provider_error(item.decision_id, item.error)
                return
            cost = item.cost_usd
            if cost is None and item.usage is not None:
                cost = self._list_price(item.model_id, item.usage)
            self.router.record_performance(
                item.decision_id, outcome_for_quality(item.quality), quality_score=item.quality, latency_ms=item.latency_ms,
                tokens_used=item.tokens, cost_usd=cost, at=item.at,
            )
        except Exception as exc:  # noqa: BLE001 - a recording problem must not fail the caller's call
            what = "provider error" if item.error is not None else "outcome"
            self._note(f"decision {item.decision_id}: {what} not recorded: {type(exc).__name__}: {exc}")

    def _list_price(self, model_id: str, usage: Usage) -> float | None:
        """The registry's list price of ``usage`` on ``model_id`` (the registry read once per rule set)."""
        version = self.router.rule_set.version
        if self._prices[0] != version:
            self._prices = (version, {m.id: m for m in self.router.registry.models})
        model = self._prices[1].get(model_id)
        return None if model is None else model.call_cost_usd(usage.input_tokens, usage.output_tokens)

    def _write_when_idle(self) -> None:
        """The writer thread: reports a pick or a flush has not written within WRITE_DELAY_S."""
        while True:
            with self._settled:
                while not self._ready and self._attached:
                    self._settled.wait()
                # The delay leaves the write to the caller's next pick; detach() cuts it short.
                if self._settled.wait_for(lambda: not self._attached, WRITE_DELAY_S):
                    return
            self._write_ready()

    def _quality(self, kwargs: Mapping[str, Any], response: Any) -> float | None:
        if self._score is None:
            return None
        try:
            quality: object = self._score(kwargs, response)
        except Exception as exc:  # noqa: BLE001 - the caller's scorer: its failure costs the quality only
            self._note(f"score raised {type(exc).__name__}: {exc}; outcome recorded without a quality")
            return None
        if quality is None:
            return None
        value = None if isinstance(quality, bool) or not isinstance(quality, numbers.Real) else float(quality)
        if value is None or not 0.0 <= value <= 1.0:
            self._note(f"score returned {quality!r}, not a quality in [0, 1]; outcome recorded without a quality")
            return None
        return value

    def _note(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)


class _Strategy(CustomRoutingStrategyBase):
    """LiteLLM's custom routing strategy, sync and async: both pick through the attachment; once
    released (detached), at random, as ``simple-shuffle``."""

    def __init__(self, attachment: Attachment, llm_router: Any) -> None:
        self._attachment: Attachment | None = attachment
        self._llm_router = llm_router

    def release(self) -> None:
        """Let go of the attachment (and its ModelRouter), which LiteLLM would keep alive."""
        self._attachment = None

    def get_available_deployment(self, model, messages=None, input=None, specific_deployment=False, request_kwargs=None):
        attachment = self._attachment
        if attachment is None:
            return _shuffle(tuple(self._llm_router.registry().deployments(model) or ()))
        return attachment._pick(model, messages, request_kwargs)

    async def async_get_available_deployment(self, model, messages=None, input=None, specific_deployment=False, request_kwargs=None):
        return self.get_available_deployment(model, messages, input, specific_deployment, request_kwargs)


class _Outcomes(CustomLogger):
    """LiteLLM's callback, sync and async, success and failure."""

    def __init__(self, attachment: Attachment) -> None:
        super().__init__()
        self._attachment: Attachment | None = attachment
        # LiteLLM drops a callback whose class and public str/int/bool attributes equal one it
        # already has: without this, a second attachment in the process would never be called.
        self.attachment_key = f"routing-{id(attachment):x}"

    def release(self) -> None:
        """Let go of the attachment: LiteLLM keeps the first callbacks it set up for good."""
        self._attachment = None

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        if (attachment := self._attachment) is not None:
            attachment._succeeded(kwargs, response_obj, start_time, end_time)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        if (attachment := self._attachment) is not None:
            attachment._failed(kwargs, start_time, end_time)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.log_success_event(kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.log_failure_event(kwargs, response_obj, start_time, end_time)


_RANDOM = random.Random()
#: Failures raised after the model answered, about its answer: outcomes, not provider errors.
_ANSWER_REFUSED: tuple[type[BaseException], ...] = tuple(
    e for e in (getattr(litellm, "JSONSchemaValidationError", None),) if isinstance(e, type))


def _shuffle(deployments: tuple[Any, ...]) -> Any:
    """LiteLLM's ``simple-shuffle`` pick, for calls that are not routed."""
    return _RANDOM.choice(deployments) if deployments else None


def _routing_strategy_of(llm_router: Any) -> tuple[str, dict[str, Any]] | None:
    """The Router's ``routing_strategy`` and its arguments, or None where LiteLLM does not say."""
    try:
        strategy = llm_router.settings().routing_strategy
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the arguments' only reader
            args = dict(getattr(llm_router, "routing_strategy_args", None) or {})
    except Exception:  # noqa: BLE001 - a LiteLLM without these: detach cannot restore, picks at random
        return None
    return (strategy, args) if isinstance(strategy, str) else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _litellm_logging_worker() -> Any:
    """LiteLLM's queue of async callbacks (None in a LiteLLM without one)."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
    except ImportError:
        return None
    usable = all(callable(getattr(GLOBAL_LOGGING_WORKER, name, None)) for name in ("flush", "stop"))
    return GLOBAL_LOGGING_WORKER if usable else None


def _orphaned(worker: Any, loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether the worker has callbacks queued on an event loop that has ended (or on ``loop``):
    ones on another thread's running loop are that loop's to run."""
    bound = getattr(worker, "_bound_loop", None)
    pending = getattr(worker, "pending_count", 0)
    return bool(pending) and bound is not None and (bound.is_closed() or bound is loop)


def _task(messages: Any, task_type: object) -> TaskType:
    """The named task type, else the classification of the last user message's text (of all the
    messages' text when no user message has any). Classified here rather than by
    ``select_model``, which would take a one-word prompt such as "math" for a task type."""
    if task_type is not None:
        return parse_enum(TaskType, task_type, f"metadata[{TASK_KEY!r}]")
    texts = [_text(m.get("content")) for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    text = next((t for t in reversed(texts) if t.strip()), "")
    if not text:
        text = " ".join(_text(m.get("content")) for m in messages if isinstance(m, Mapping))
    return classify_task(text).task_type


def _text(content: Any) -> str:
    """A message's text: a string, or the ``text`` parts of OpenAI-style content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def _elapsed_ms(start: Any, end: Any) -> float | None:
    """LiteLLM's call duration: ``datetime``s (or float seconds) at the start and end."""
    if isinstance(start, datetime) and isinstance(end, datetime):
        seconds = (end - start).total_seconds()
    elif isinstance(start, (int, float)) and isinstance(end, (int, float)):
        seconds = float(end) - float(start)
    else:
        return None
    return max(seconds, 0.0) * 1000.0
