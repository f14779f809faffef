"""``ModelRouter``: per-request model selection from the published rules, and outcome recording."""

from __future__ import annotations

import json
import math
import numbers
import os
import random
import re
import threading
import time
from collections import namedtuple
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from routing_runtime.classifier import Classification, classify_task
from routing_runtime.compiled_rules import CompiledRules, RuleSet, short_repr
from routing_runtime.home import resolve_home
from routing_runtime.store import Store, StoredDecision, utc_timestamp
from routing_runtime.types import OUTCOME_LIMITS, Outcome, RoutingPreference, TaskType, parse_enum

if TYPE_CHECKING:
    from routing_runtime.registry import ModelRegistry

#: How often a router checks whether a new rule set was published (seconds).
REFRESH_INTERVAL_S = 0.25

#: Longest ``agent_execution_id``, ``decision_id`` or ``model_id`` accepted (characters).
MAX_ID_LENGTH = 256
#: Timestamps (``at``) must fall in these years, in their own time zone: anything else is a bug
#: in the caller (and year 1 or 9999 would overflow on conversion to UTC).
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099
#: Provider error texts are kept to this many characters in the decision's selection_reason.
MAX_ERROR_TEXT = 200
#: Appended to a decision's ``selection_reason`` by :meth:`ModelRouter.record_provider_error`.
PROVIDER_ERROR_MARK = "; provider error: "
#: Appended to the ``selection_reason`` of a decision made by :meth:`ModelRouter.fallback`.
FALLBACK_MARK = "; fallback of "
#: Appended to the ``selection_reason`` of a decision whose task type was classified from the
#: prompt: ``"; classified: debugging 0.93"``, or, below the classifier's ``LOW_CONFIDENCE``,
#: ``"; classified (low confidence): debugging 0.48, testing 0.31"`` (the runner-up beside it).
#: ``routing status`` counts both.
CLASSIFIED_MARK = "; classified: "
LOW_CONFIDENCE_MARK = "; classified (low confidence): "
_FALLBACK_LINK = re.compile(re.escape(FALLBACK_MARK) + r"([0-9A-Za-z_.:-]+)")


def _classified(c: Classification) -> str:
    """What a decision's ``selection_reason`` says of the classification it was made for."""
    if not c.low_confidence:
        return f"{CLASSIFIED_MARK}{c.task_type.value} {c.confidence:.2f}"
    runner_up = sorted(c.scores.items(), key=lambda kv: -kv[1])[1:2]
    return LOW_CONFIDENCE_MARK + ", ".join(f"{t.value} {p:.2f}" for t, p in [(c.task_type, c.confidence), *runner_up])


def new_id() -> str:
    """A 32-hex-digit id that sorts by creation time (48-bit milliseconds, 80 random bits)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


class RoutingDecision(namedtuple(
    "RoutingDecision",
    "decision_id model_id task_type preference selection_reason alternatives propensity rule_set_version classification",
    defaults=(None,),
)):
    """What :meth:`ModelRouter.select_model` chose, and why; already recorded when returned.

    ``decision_id`` (pass it to ``record_performance``), ``model_id``, ``task_type``,
    ``preference``, ``selection_reason``, ``alternatives`` (the models a fallback would try, in
    order; use :meth:`ModelRouter.fallback` rather than calling them yourself, so each call's
    outcome is credited to the model that made it), ``propensity`` (the probability the chosen
    model had; 1.0 for fallbacks, which take the best remaining model), ``rule_set_version``
    (the version actually served: when the newest published set is unusable the router serves
    the newest usable one, and ``None`` means no rule set was usable and the router serves the
    registry order; ``selection_reason`` then says why), and ``classification`` when the task
    came as prompt text.
    """

    __slots__ = ()


class ModelRouter:
    """Routes requests to models by the published rule set and records every decision.

    >>> router = ModelRouter.open("/tmp/demo-home")                     # doctest: +SKIP
    >>> d = router.select_model("Fix this TypeError: ...", "balanced")   # doctest: +SKIP
    >>> router.record_performance(d.decision_id, "success", quality_score=0.9)  # doctest: +SKIP

    When the call fails, ask for a fallback and record the outcome against it::

        d2 = router.fallback(d, error="503 from provider")   # a provider outage: not low quality
        router.record_performance(d2.decision_id, "success", quality_score=0.8)

    Selection survives any stored rule set: the router serves the newest *usable* one (every
    row readable, every task type and preference with an enabled model; see
    :meth:`~routing_runtime.store.Store.load_usable_rule_set`), else rules in registry order, and
    every ``selection_reason`` says so. A newly published set is picked up within a second; an
    unusable one is skipped and the router keeps serving what it serves.

    One router per process is enough; it is safe to share between threads. Many processes
    may share one ``ROUTING_HOME``.
    """

    def __init__(self, db: Store, home: object, *, seed: int | None = None) -> None:
        self._store = db
        self.home = home
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        # The marker is read before loading, so a set published in between is loaded at the next check.
        self._newest_seen = db.serving_marker()
        self._rules: CompiledRules = CompiledRules.compile(*db.load_usable_rule_set(home))
        self._data_version = db.data_version()
        self._checked_at = time.monotonic()

    @classmethod
    def open(cls, home: str | os.PathLike | None = None, *, seed: int | None = None) -> ModelRouter:
        """Open the router of ``home`` (None: ``$ROUTING_HOME``, else ``./.routing``).

        ``seed`` makes the sampling among models reproducible (tests, simulations).
        Raises :class:`NotInitialisedError` when ``routing init`` has not been run there.
        """
        home_path = resolve_home(home)
        db = Store.open_home(home_path, needed_by="this router")
        try:
            return cls(db, home_path, seed=seed)
        except BaseException:
            db.close()
            raise

    # ------------------------------------------------------------------ selection

    def select_model(
        self,
        task: TaskType | str,
        preference: RoutingPreference | str = RoutingPreference.BALANCED,
        agent_execution_id: str | None = None,
        *,
        at: datetime | None = None,
        exclude: Iterable[str] | None = (),
        within: Iterable[str] | None = None,
    ) -> RoutingDecision:
        """Choose a model for ``task`` and record the decision.

        ``task`` is a :class:`TaskType`, a task type value (``"math"``; case and ``-`` for
        ``_`` do not matter) or free prompt text, which is classified. A single word within two
        edits of a task type value (``"debuging"``) is taken for a typo and refused. ``exclude``
        (any iterable of registered model ids; None for none) names models not to use; prefer
        :meth:`fallback` after a failed call. ``within`` (registered model ids; None for all)
        names the only models this request can reach, e.g. those an LLM gateway deploys: the
        rules' probabilities are renormalised over them, the propensity is the renormalised one,
        and the decision records the models with traffic it left out (``excluded``), so
        off-policy evaluation does not take it for a draw of the rules. ``agent_execution_id`` (at most
        :data:`MAX_ID_LENGTH` characters) defaults to the decision id. ``at`` (naive means UTC)
        must fall in the years :data:`EARLIEST_YEAR` to :data:`LATEST_YEAR`. Bad input raises
        ValueError naming the field, and nothing is written.
        """
        task_type, classification = _parse_task(task)
        pref = parse_enum(RoutingPreference, preference, "preference")
        agent_id = _optional_id(agent_execution_id, "agent_execution_id")
        excluded = _model_ids(exclude, "exclude")
        allowed = _within(within)
        created_at = _timestamp(at)
        with self._lock:
            self._maybe_refresh()
            self._check_registered(excluded, "exclude")
            self._check_registered(allowed or frozenset(), "within")
            return self._decide(task_type, pref, agent_id, created_at, excluded, allowed, classification=classification)

    def fallback(
        self,
        decision: RoutingDecision | str,
        *,
        error: str | None = None,
        exclude: Iterable[str] | None = (),
        within: Iterable[str] | None = None,
        at: datetime | None = None,
    ) -> RoutingDecision:
        """A new decision for the same request after ``decision``'s model failed.

        It excludes ``decision``'s model, everything that decision excluded (so a chain of
        fallbacks never returns to a model that failed) and ``exclude``, and keeps to ``within``
        (as in :meth:`select_model`; a LiteLLM fallback may move to another group). With ``within``,
        what it inherits is the models of the chain of fallbacks only, not the models an earlier
        decision's own ``within`` left out (they did not fail). It keeps the task type,
        preference and ``agent_execution_id``; and its ``selection_reason`` ends with
        ``"; fallback of <decision id>"`` (and ``"; excluded: ..."``), which links the two.
        Record the fallback call's outcome against the *returned* decision, so it is credited
        to the model that made it.

        ``error``: the failed call was a provider error (outage, rate limit, timeout), not a
        bad answer; it is recorded as with :meth:`record_provider_error`, in the same
        transaction. Leave it out when the model did answer, badly, and record that outcome
        (e.g. ``"failure"``) against ``decision`` first.

        ``decision`` is a :class:`RoutingDecision` or its id (unknown: LookupError). Raises
        ValueError when no enabled model remains; nothing is written then.
        """
        decision_id = _required_id(
            decision.decision_id if isinstance(decision, RoutingDecision) else decision, "decision", lookup=True,
        )
        extra = _model_ids(exclude, "exclude")
        allowed = _within(within)
        error_text = _error_text(error) if error is not None else None
        created_at = _timestamp(at)
        with self._lock:
            self._maybe_refresh()
            self._check_registered(extra, "exclude")
            self._check_registered(allowed or frozenset(), "within")
            with self._store.transaction():
                failed = self._decision(decision_id)
                if error_text is not None:
                    self._mark_provider_error(decision_id, failed.selection_reason, error_text)
                if allowed is None:
                    inherited = frozenset(json.loads(failed.excluded) if failed.excluded else ())
                else:
                    # Models the failed decision left out because *its* ``within`` did not name
                    # them (another LiteLLM group) are not failures: only the chain's models are.
                    inherited = self._chain_models(decision_id, failed)
                excluded = extra | {failed.selected_model} | inherited
                return self._decide(
                    TaskType(failed.task_type), RoutingPreference(failed.preference), failed.agent_execution_id, created_at, excluded,
                    allowed, link=f"{FALLBACK_MARK}{decision_id}",
                )

    def _decide(
        self, task_type: TaskType, pref: RoutingPreference, agent_id: str | None, created_at: str,
        excluded: frozenset[str], within: frozenset[str] | None = None, *, classification=None, link: str = "",
    ) -> RoutingDecision:
        """Choose and record one decision (caller holds the lock and has validated everything)."""
        rules = self._rules
        decision_id = new_id()
        choice = rules.choose(task_type, pref, self._random.random(), excluded or None, within)
        reason = choice.reason + link + (_classified(classification) if classification is not None else "")
        # What the decision left out: everything ``exclude`` named (a fallback's whole chain,
        # even models its cell does not list) and the drawable models ``within`` kept out.
        left_out = excluded | frozenset(choice.excluded)
        self._store.record_decision((
            decision_id, agent_id or decision_id, task_type.value, choice.model_id, reason,
            choice.alternatives_json, created_at, pref.value, choice.propensity, rules.version,
            json.dumps(sorted(left_out)) if left_out else None,
        ))
        return RoutingDecision(
            decision_id=decision_id, model_id=choice.model_id, task_type=task_type, preference=pref,
            selection_reason=reason, alternatives=choice.alternatives, propensity=choice.propensity,
            rule_set_version=rules.version, classification=classification,
        )

    @property
    def registry(self) -> ModelRegistry:
        """The registry ``routing init`` stored in this home (models, prices, task policies)."""
        with self._lock:
            return self._store.registry()

    @property
    def registered_models(self) -> frozenset[str]:
        """The model ids the served rule set knows: what ``exclude`` and ``within`` may name."""
        with self._lock:
            self._maybe_refresh()
            return self._rules.known_models

    def _check_registered(self, model_ids: frozenset[str], field: str) -> None:
        unknown = sorted(model_ids - self._rules.known_models)
        if unknown:
            raise ValueError(
                f"{field} has {short_repr(unknown[0])}, not a registered model (registered: {', '.join(sorted(self._rules.known_models))}):"
                " add it to the registry and run `routing init`, or leave it out"
            )

    # ------------------------------------------------------------------ outcomes

    def record_performance(
        self,
        decision_id: str | None = None,
        outcome: Outcome | str | None = None,
        quality_score: float | None = None,
        latency_ms: float | None = None,
        tokens_used: int | None = None,
        cost_usd: float | None = None,
        *,
        model_id: str | None = None,
        task_type: TaskType | str | None = None,
        at: datetime | None = None,
    ) -> str:
        """Record how a request ended; returns the ``model_performance`` row id.

        Give the ``decision_id`` the outcome answers, or ``model_id`` and ``task_type`` for an
        outcome not tied to a decision. A decision has one outcome: recording it again with
        the same outcome, quality, latency, tokens and cost (a retry; ``at`` is not compared)
        returns the first row's id and writes nothing; with a different value it raises
        ValueError naming the field. A decision marked by :meth:`record_provider_error` takes
        no outcome (record it against the :meth:`fallback` decision). Numbers may be any real
        (quality, latency, cost) or integral (tokens) type, numpy scalars included. Unknown
        decision ids raise LookupError; bad values raise ValueError naming the field. Nothing
        is written unless everything is valid.
        """
        if outcome is None:
            raise ValueError("outcome is required: one of success, partial, failure")
        result = parse_enum(Outcome, outcome, "outcome")
        quality = _optional_number(quality_score, "quality_score", high=1.0)
        latency = _optional_number(latency_ms, "latency_ms", high=OUTCOME_LIMITS["latency_ms"])
        cost = _optional_number(cost_usd, "cost_usd", high=OUTCOME_LIMITS["cost_usd"])
        tokens = _optional_count(tokens_used, "tokens_used")
        task = parse_enum(TaskType, task_type, "task_type") if task_type is not None else None
        decision_id = _optional_id(decision_id, "decision_id", lookup=True)
        model_id = _optional_id(model_id, "model_id")
        recorded_at = _timestamp(at)
        row_id = new_id()

        with self._lock:
            self._maybe_refresh()
            if decision_id is not None and model_id is None and task is None and self._store.record_first_outcome(
                (row_id, result.value, quality, latency, tokens, cost, recorded_at), decision_id, PROVIDER_ERROR_MARK,
            ):
                return row_id  # the common case, in one statement (and so one commit)
            # One write transaction from the check to the insert: two processes recording the
            # same decision at once cannot both insert.
            with self._store.transaction():
                preference = None
                if decision_id is not None:
                    decided = self._decision(decision_id)
                    decided_model, decided_task, preference, reason = (
                        decided.selected_model, decided.task_type, decided.preference, decided.selection_reason,
                    )
                    if model_id is not None and model_id != decided_model:
                        raise ValueError(f"model_id={model_id!r} differs from the decision's model {decided_model!r}")
                    if task is not None and task.value != decided_task:
                        raise ValueError(f"task_type={task.value!r} differs from the decision's task type {decided_task!r}")
                    if PROVIDER_ERROR_MARK in (reason or ""):
                        raise ValueError(
                            f"decision_id={decision_id!r} was marked as a provider error: record the outcome"
                            " against the decision router.fallback() returned for it"
                        )
                    first = self._first_outcome(decision_id, {
                        "outcome": result.value, "quality_score": quality, "latency_ms": latency,
                        "tokens_used": tokens, "cost_usd": cost,
                    })
                    if first is not None:
                        return first
                    model_id, task_value = decided_model, decided_task
                else:
                    if model_id is None or task is None:
                        raise ValueError("give decision_id, or both model_id and task_type")
                    self._check_registered(frozenset([model_id]), "model_id")
                    task_value = task.value
                self._store.record_outcome((
                    row_id, model_id, task_value, result.value, quality, latency, tokens, cost,
                    recorded_at, decision_id, preference,
                ))
        return row_id

    def record_provider_error(self, decision_id: str, error: str) -> None:
        """Mark ``decision_id``'s call as failed by the provider (outage, rate limit, timeout).

        Nothing is written to ``model_performance``, so learning never takes an outage for low
        quality; the decision's ``selection_reason`` gets ``"; provider error: <error>"`` (the
        error's first :data:`MAX_ERROR_TEXT` characters, on one line) for the audit trail. A
        second mark of the same decision changes nothing. Raises ValueError when the decision
        already has an outcome, LookupError for an unknown decision. :meth:`fallback` with
        ``error=`` does this and picks the next model in one step.
        """
        decision_id = _required_id(decision_id, "decision_id", lookup=True)
        text = _error_text(error)
        with self._lock, self._store.transaction():
            self._mark_provider_error(decision_id, self._decision(decision_id).selection_reason, text)

    def _chain_models(self, decision_id: str, decision: StoredDecision) -> frozenset[str]:
        """The models of ``decision`` and of every decision it is a fallback of."""
        models, seen = {decision.selected_model}, {decision_id}
        while (link := _FALLBACK_LINK.search(decision.selection_reason)) is not None and link[1] not in seen:
            parent = self._store.decision(link[1])
            if parent is None:
                break
            seen.add(link[1])
            models.add(parent.selected_model)
            decision = parent
        return frozenset(models)

    def _decision(self, decision_id: str) -> StoredDecision:
        row = self._store.decision(decision_id)
        if row is None:
            raise LookupError(f"decision_id={decision_id!r} is not a recorded decision")
        return row

    def _first_outcome(self, decision_id: str, values: dict) -> str | None:
        """The id of the outcome already recorded for ``decision_id`` if ``values`` repeat it."""
        row = self._store.first_outcome(decision_id)
        if row is None:
            return None
        for field, value in values.items():
            stored = getattr(row, field)
            if value != stored:
                raise ValueError(
                    f"{field}={value!r} differs from the outcome already recorded for decision_id={decision_id!r}"
                    f" ({field}={stored!r}, row {row.id}): a decision has one outcome; a retried call is a new"
                    " decision (router.fallback)"
                )
        return row[0]

    def _mark_provider_error(self, decision_id: str, reason: str | None, text: str) -> None:
        outcome = self._store.first_outcome(decision_id)
        if outcome is not None:
            raise ValueError(
                f"decision_id={decision_id!r} already has an outcome (row {outcome.id}): a provider error"
                " marks a call that returned nothing to judge"
            )
        if PROVIDER_ERROR_MARK in (reason or ""):
            return  # marked already: a retry
        self._store.append_to_selection_reason(decision_id, PROVIDER_ERROR_MARK + text)

    # ------------------------------------------------------------------ rules

    @property
    def rule_set(self) -> RuleSet:
        """The rule set this router serves (refreshed when a new one is published): the newest
        usable one, or registry-order rules with ``version`` None; :attr:`rule_set_note` says why."""
        with self._lock:
            self._maybe_refresh(force=True)
            return self._rules.rule_set

    @property
    def rule_set_note(self) -> str:
        """Why the served rule set is not the newest published one; "" when it is."""
        with self._lock:
            self._maybe_refresh(force=True)
            return self._rules.note

    def close(self) -> None:
        with self._lock:
            self._store.close()

    def __enter__(self) -> ModelRouter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _maybe_refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < REFRESH_INTERVAL_S:
            return
        self._checked_at = now
        data_version = self._store.data_version()
        if data_version == self._data_version and not force:
            return
        try:
            newest = self._store.serving_marker()
            if newest != self._newest_seen:
                rules = CompiledRules.compile(*self._store.load_usable_rule_set(self.home))
                self._rules, self._newest_seen = rules, newest
        except Exception:  # noqa: BLE001 - whatever is stored, a running router keeps serving
            return  # data_version not taken: try again at the next check
        self._data_version = data_version


# ---------------------------------------------------------------------- input checks

def _parse_task(task: object):
    """``(TaskType, Classification | None)`` for ``select_model``'s ``task``."""
    if isinstance(task, TaskType):
        return task, None
    if not isinstance(task, str):
        raise ValueError(f"task={short_repr(task)} must be a TaskType, a task type value or prompt text")
    text = task.strip()
    if not text:
        raise ValueError(f"task={short_repr(task)} is empty: give a task type ({_TASK_VALUES}) or the prompt text")
    if not any(c.isspace() for c in text):
        word = text.lower().replace("-", "_")
        if word in _TASK_TYPES:
            return _TASK_TYPES[word], None
        near = _nearest_task_type(word)
        if near is not None:
            raise ValueError(
                f"task={short_repr(task)} is not a task type; did you mean {near!r}? A single word this close to a"
                f" task type is taken for a typo: pass {near!r} (or TaskType), or a longer prompt text"
            )
    classification = classify_task(task)
    return classification.task_type, classification


_TASK_TYPES = {t.value: t for t in TaskType}
_TASK_VALUES = ", ".join(_TASK_TYPES)


def _nearest_task_type(word: str) -> str | None:
    """The task type value within two edits (insert, delete, substitute, swap) of ``word``."""
    best, best_distance = None, 3
    for value in _TASK_TYPES:
        if abs(len(value) - len(word)) < best_distance:
            distance = _edit_distance(word, value)
            if distance < best_distance:
                best, best_distance = value, distance
    return best


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: a swapped pair of letters counts as one edit."""
    previous2, previous = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if previous2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _optional_id(value: object, field: str, *, lookup: bool = False) -> str | None:
    return None if value is None else _required_id(value, field, lookup=lookup)


def _required_id(value: object, field: str, *, lookup: bool = False) -> str:
    """An id of at most MAX_ID_LENGTH characters that SQLite can store as UTF-8, non-empty
    unless it is only looked up (``lookup``: an empty decision id is simply not recorded)."""
    if not isinstance(value, str) or not (value or lookup):
        raise ValueError(f"{field}={short_repr(value)} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{field}={short_repr(value)} is {len(value)} characters long: at most {MAX_ID_LENGTH}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{field}={short_repr(value)} is not valid Unicode text ({exc.reason} at {exc.start})") from None
    return value


def _model_ids(value: object, field: str) -> frozenset[str]:
    """Model ids from any iterable of strings (a generator is consumed once); None is none."""
    if value is None:
        return frozenset()
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{field}={short_repr(value)} must be a collection of model ids, not one string: use [{value!r}]")
    try:
        items: tuple[str, ...] = tuple(value)  # type: ignore[arg-type]  # any iterable (TypeError below); items checked next
    except TypeError:
        raise ValueError(f"{field}={short_repr(value)} must be a collection of model ids (strings)") from None
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{field} has {short_repr(item)}: model ids are strings")
    return frozenset(items)


def _within(value: object) -> frozenset[str] | None:
    """``within``: None for every model, else a non-empty set of model ids."""
    if value is None:
        return None
    allowed = _model_ids(value, "within")
    if not allowed:
        raise ValueError("within is empty: name at least one registered model, or pass None for all models")
    return allowed


def _error_text(error: object) -> str:
    """A provider error as one line of at most MAX_ERROR_TEXT characters; any string is accepted."""
    if not isinstance(error, str) or not error.strip():
        raise ValueError(f"error={short_repr(error)} must be a non-empty string describing the provider error")
    one_line = " ".join(error.split())[:MAX_ERROR_TEXT]
    return one_line.encode("utf-8", "backslashreplace").decode("utf-8")


def _timestamp(at: object) -> str:
    if at is not None:
        if not isinstance(at, datetime):
            raise ValueError(f"at={short_repr(at)} must be a datetime (UTC)")
        if not EARLIEST_YEAR <= at.year <= LATEST_YEAR:
            raise ValueError(f"at={at!r} must fall in the years {EARLIEST_YEAR} to {LATEST_YEAR}")
    return utc_timestamp(at)


def _optional_number(value: object, field: str, *, high: float = math.inf) -> float | None:
    if value is None:
        return None
    bounds = "within [0, 1]" if high == 1.0 else f"a number within [0, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{field}={short_repr(value)} must be {bounds}")
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        raise ValueError(f"{field}={short_repr(value)} must be {bounds}") from None
    if not math.isfinite(number) or not 0 <= number <= high:
        raise ValueError(f"{field}={short_repr(value)} must be {bounds}")
    return number


def _optional_count(value: object, field: str) -> int | None:
    if value is None:
        return None
    limit = OUTCOME_LIMITS[field]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) <= limit:
        raise ValueError(f"{field}={short_repr(value)} must be an integer within [0, {limit:,}]")
    return int(value)
