"""``ModelRouter``: per-request model selection from the published rules, and outcome recording."""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import threading
import time
from collections import namedtuple
from datetime import datetime

from routing_runtime import store
from routing_runtime.classifier import classify_task
from routing_runtime.home import NotInitialisedError, db_path, resolve_home
from routing_runtime.ruleset import CompiledRules, RuleSet, load_current_rule_set
from routing_runtime.types import Outcome, RoutingPreference, TaskType, parse_enum

#: How often a router checks whether a new rule set was published (seconds).
REFRESH_INTERVAL_S = 0.25

_INSERT_DECISION = (
    "INSERT INTO routing_decisions (id, agent_execution_id, task_type, selected_model, selection_reason,"
    " alternatives_considered, created_at, preference, propensity, rule_set_version, excluded)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PERFORMANCE = (
    "INSERT INTO model_performance (id, model_id, task_type, outcome, quality_score, latency_ms,"
    " tokens_used, cost_usd, recorded_at, decision_id, preference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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
    ``preference``, ``selection_reason``, ``alternatives`` (ordered fallbacks), ``propensity``
    (the probability the chosen model had), ``rule_set_version``, and ``classification`` when
    the task came as prompt text.
    """

    __slots__ = ()


class ModelRouter:
    """Routes requests to models by the published rule set and records every decision.

    >>> router = ModelRouter.open("/tmp/demo-home")                     # doctest: +SKIP
    >>> d = router.select_model("Fix this TypeError: ...", "balanced")   # doctest: +SKIP
    >>> router.record_performance(d.decision_id, "success", quality_score=0.9)  # doctest: +SKIP

    One router per process is enough; it is safe to share between threads. Many processes
    may share one ``ROUTING_HOME``.
    """

    def __init__(self, conn: sqlite3.Connection, home: object, *, seed: int | None = None) -> None:
        self._conn = conn
        self.home = home
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rules: CompiledRules = CompiledRules.compile(load_current_rule_set(conn, home))
        self._data_version = self._read_data_version()
        self._checked_at = time.monotonic()

    @classmethod
    def open(cls, home: str | os.PathLike | None = None, *, seed: int | None = None) -> ModelRouter:
        """Open the router of ``home`` (None: ``$ROUTING_HOME``, else ``./.routing``).

        ``seed`` makes the sampling among models reproducible (tests, simulations).
        Raises :class:`NotInitialisedError` when ``routing init`` has not been run there.
        """
        home_path = resolve_home(home)
        path = db_path(home_path)
        if not path.exists():
            raise NotInitialisedError(f"{home_path} is not initialised: run `routing init --home {home_path}`")
        conn = store.connect(path)
        version = store.schema_version(conn)
        if version != store.SCHEMA_VERSION:
            conn.close()
            raise NotInitialisedError(
                f"{path} has schema version {version}, this router needs {store.SCHEMA_VERSION}:"
                f" run `routing init --home {home_path}` to upgrade it"
            )
        return cls(conn, home_path, seed=seed)

    # ------------------------------------------------------------------ selection

    def select_model(
        self,
        task: TaskType | str,
        preference: RoutingPreference | str = RoutingPreference.BALANCED,
        agent_execution_id: str | None = None,
        *,
        at: datetime | None = None,
        exclude: tuple[str, ...] | list[str] | frozenset[str] = (),
    ) -> RoutingDecision:
        """Choose a model for ``task`` and record the decision.

        ``task`` is a :class:`TaskType`, a task type value (``"math"``) or free prompt text,
        which is classified. ``exclude`` names models not to use (e.g. after a failed call).
        ``agent_execution_id`` defaults to the decision id.
        """
        classification = None
        if isinstance(task, TaskType):
            task_type = task
        elif isinstance(task, str):
            try:
                task_type = TaskType(task)
            except ValueError:
                classification = classify_task(task)
                task_type = classification.task_type
        else:
            raise ValueError(f"task={task!r} must be a TaskType, a task type value or prompt text")
        pref = preference if isinstance(preference, RoutingPreference) else parse_enum(RoutingPreference, preference, "preference")
        if agent_execution_id is not None and (not isinstance(agent_execution_id, str) or not agent_execution_id):
            raise ValueError(f"agent_execution_id={agent_execution_id!r} must be a non-empty string")
        if isinstance(exclude, str) or not all(isinstance(m, str) for m in exclude):
            raise ValueError(f"exclude={exclude!r} must be a collection of model ids (strings)")
        created_at = store.utc_timestamp(at)
        decision_id = new_id()

        with self._lock:
            self._maybe_refresh()
            rules = self._rules
            excluded = frozenset(exclude) if exclude else None
            choice = rules.choose(task_type, pref, self._random.random(), excluded)
            self._conn.execute(_INSERT_DECISION, (
                decision_id, agent_execution_id or decision_id, task_type.value, choice.model_id,
                choice.reason, choice.alternatives_json, created_at, pref.value, choice.propensity, rules.version,
                json.dumps(sorted(excluded)) if excluded else None,
            ))
        return RoutingDecision(
            decision_id=decision_id, model_id=choice.model_id, task_type=task_type, preference=pref,
            selection_reason=choice.reason, alternatives=choice.alternatives, propensity=choice.propensity,
            rule_set_version=rules.version, classification=classification,
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
        """Record how a request ended; returns the new ``model_performance`` row id.

        Give the ``decision_id`` the outcome answers, or ``model_id`` and ``task_type`` for an
        outcome not tied to a decision. Unknown decision ids raise LookupError; bad values raise
        ValueError naming the field. Nothing is written unless everything is valid.
        """
        if outcome is None:
            raise ValueError("outcome is required: one of success, partial, failure")
        result = parse_enum(Outcome, outcome, "outcome")
        quality = _optional_number(quality_score, "quality_score", high=1.0)
        latency = _optional_number(latency_ms, "latency_ms")
        cost = _optional_number(cost_usd, "cost_usd")
        if tokens_used is not None and (
            isinstance(tokens_used, bool) or not isinstance(tokens_used, int) or not 0 <= tokens_used < 2**63
        ):
            raise ValueError(f"tokens_used={tokens_used!r} must be a non-negative integer below 2**63")
        task = parse_enum(TaskType, task_type, "task_type") if task_type is not None else None
        recorded_at = store.utc_timestamp(at)
        row_id = new_id()

        with self._lock:
            preference = None
            if decision_id is not None:
                if not isinstance(decision_id, str):
                    raise ValueError(f"decision_id={decision_id!r} must be a string")
                row = self._conn.execute(
                    "SELECT selected_model, task_type, preference FROM routing_decisions WHERE id = ?", (decision_id,)
                ).fetchone()
                if row is None:
                    raise LookupError(f"decision_id={decision_id!r} is not a recorded decision")
                decided_model, decided_task, preference = row
                if model_id is not None and model_id != decided_model:
                    raise ValueError(f"model_id={model_id!r} differs from the decision's model {decided_model!r}")
                if task is not None and task.value != decided_task:
                    raise ValueError(f"task_type={task.value!r} differs from the decision's task type {decided_task!r}")
                model_id, task_value = decided_model, decided_task
            else:
                if model_id is None or task is None:
                    raise ValueError("give decision_id, or both model_id and task_type")
                self._maybe_refresh()
                if model_id not in self._rules.known_models:
                    raise ValueError(
                        f"model_id={model_id!r} is not a registered model: add it to the registry and run `routing init`"
                    )
                task_value = task.value
            self._conn.execute(_INSERT_PERFORMANCE, (
                row_id, model_id, task_value, result.value, quality, latency, tokens_used, cost,
                recorded_at, decision_id, preference,
            ))
        return row_id

    # ------------------------------------------------------------------ rules

    @property
    def rule_set(self) -> RuleSet:
        """The rule set this router serves (refreshed when a new one is published)."""
        with self._lock:
            self._maybe_refresh(force=True)
            return self._rules.rule_set

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ModelRouter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_data_version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _maybe_refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < REFRESH_INTERVAL_S:
            return
        self._checked_at = now
        data_version = self._read_data_version()
        if data_version == self._data_version and not force:
            return
        self._data_version = data_version
        latest = self._conn.execute(
            "SELECT MAX(version) FROM rule_sets WHERE source != 'legacy'"
        ).fetchone()[0]
        if latest != self._rules.version:
            self._rules = CompiledRules.compile(load_current_rule_set(self._conn, self.home))


def _optional_number(value: object, field: str, *, high: float = math.inf) -> float | None:
    if value is None:
        return None
    bounds = "within [0, 1]" if high == 1.0 else "a finite number ≥ 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field}={value!r} must be {bounds}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{field}={value!r} must be {bounds}") from None
    if not math.isfinite(number) or not 0 <= number <= high:
        raise ValueError(f"{field}={value!r} must be {bounds}")
    return number
