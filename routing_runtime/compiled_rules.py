"""Rule sets as the router uses them: the published set (:class:`RuleSet`), what makes a stored
set servable (:func:`check_usable`), which one is served, and the compiled form the router samples from.

No storage here: :class:`routing_runtime.store.Store` reads and writes rule sets and hands the
stored values to :func:`parse_rule_set`, which checks every field.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from itertools import accumulate
from collections import namedtuple

from routing_runtime.home import NotInitialisedError
from routing_runtime.rules import PREFERENCES, RuleRow, build_rules, registry_estimates
from routing_runtime.types import Cell as RuleKey, RoutingPreference, TaskType, all_cells

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from routing_runtime.registry import ModelRegistry

CODE_VERSION = "routing_runtime 0.1.0"

class RuleSet(namedtuple("RuleSet", "version created_at as_of source inputs rows")):
    """One published version of ``model_routing_rules``: its ``version``, ``created_at``,
    ``as_of`` (last day of evidence, None for registry rules), ``source``, ``inputs`` and ``rows``."""

    __slots__ = ()

    def models_for(self, task: TaskType, preference: RoutingPreference) -> list[RuleRow]:
        """Rows of one (task type, preference) in priority order."""
        return sorted((r for r in self.rows if r.task_type is task and r.preference is preference), key=lambda r: r.priority)

    def to_json(self, task: TaskType | None = None, preference: RoutingPreference | None = None) -> dict:
        """The documented ``routing rules --json`` shape."""
        rules = []
        for t in TaskType:
            if task is not None and t is not task:
                continue
            for p in RoutingPreference:
                if preference is not None and p is not preference:
                    continue
                rows = self.models_for(t, p)
                rules.append({
                    "task_type": t.value, "preference": p.value,
                    "min_quality_score": rows[0].min_quality_score if rows else None,
                    "max_cost_per_1k": rows[0].max_cost_per_1k if rows else None,
                    "models": [{
                        "model_id": r.model_id, "priority": r.priority,
                        "selection_probability": r.selection_probability,
                        "expected_quality": r.expected_quality, "expected_cost_usd": r.expected_cost_usd,
                        "expected_latency_ms": r.expected_latency_ms, "is_specialized": r.is_specialized,
                        "is_enabled": r.is_enabled, "is_eligible": r.is_eligible,
                    } for r in rows],
                })
        return {"rule_set_version": self.version, "as_of": self.as_of, "source": self.source, "rules": rules}




class UnusableRuleSet(ValueError):
    """A stored rule set this code cannot serve; the message names the version, row and field."""


def parse_rule_set(version: int, meta: tuple, raw_rows: list[tuple]) -> RuleSet:
    """Rule set ``version`` from its stored values, every field checked: ``meta`` is (created_at,
    as_of, source, inputs as JSON text), each of ``raw_rows`` a row id followed by the
    :class:`RuleRow` fields in :data:`STORED_RULE_FIELDS` order. Raises :class:`UnusableRuleSet`
    naming the version, row and field."""
    where = f"rule set v{version}"
    created_at, as_of, source, raw_inputs = meta
    if not isinstance(created_at, str) or not (as_of is None or isinstance(as_of, str)):
        raise UnusableRuleSet(f"{where}: created_at={short_repr(created_at)} / as_of={short_repr(as_of)} must be text")
    try:
        inputs = json.loads(raw_inputs)
    except (TypeError, ValueError):
        inputs = None
    if not isinstance(inputs, dict):
        raise UnusableRuleSet(f"{where}: inputs={short_repr(raw_inputs)} is not a JSON object")
    rows = tuple(_parse_row(r[1:], f"{where}: row {short_repr(r[0])}") for r in raw_rows)
    return RuleSet(version=version, created_at=created_at, as_of=as_of, source=source, inputs=inputs, rows=rows)


#: The order of the fields :func:`parse_rule_set` reads from a stored row (after its id).
STORED_RULE_FIELDS = (
    "task_type", "preference", "model_id", "priority", "is_specialized", "is_enabled", "is_eligible",
    "min_quality_score", "max_cost_per_1k", "selection_probability", "expected_quality",
    "expected_cost_usd", "expected_latency_ms", "expected_cost_per_1k",
)


def with_registry(rule_set: RuleSet, registered: dict[str, int]) -> RuleSet:
    """The rule set as the registry stands now (``registered``: model id → enabled flag): a row
    naming a model the registry does not know makes the set unusable (it was not published for
    this home); a model disabled since it was published (``routing init`` while a learn ran)
    gets no traffic."""
    if not registered:
        return rule_set
    where = f"rule set v{rule_set.version}"
    unknown = next((r for r in rule_set.rows if r.model_id not in registered), None)
    if unknown is not None:
        raise UnusableRuleSet(f"{where}: model_id={short_repr(unknown.model_id)} is not a registered model")
    if all(registered[r.model_id] or not r.is_enabled for r in rule_set.rows):
        return rule_set
    rows = tuple(r if registered[r.model_id] else r._replace(is_enabled=False) for r in rule_set.rows)
    return rule_set._replace(rows=rows)


def skipped_note(problems: list[tuple[int, str]], serving: str) -> str:
    """``"rule set v7 unusable (why; 2 older unusable too), serving v4"``, or ``"no usable rule
    set (v7: why; ...), registry order"``; "" when nothing was skipped."""
    if not problems:
        return ""
    newest, why = problems[0]
    older = f"; {len(problems) - 1} older unusable too" if len(problems) > 1 else ""
    if serving == "registry order":
        return f"no usable rule set (v{newest}: {why}{older}), registry order"
    return f"rule set v{newest} unusable ({why}{older}), {serving}"


def registry_order(read_registry: Callable[[], ModelRegistry], home: object, created_at: str) -> RuleSet:
    """The rules ``routing init`` would publish from the stored registry (version None, source
    ``"registry-order"``): served when no published set is usable. Raises NotInitialisedError
    naming the fix when the registry cannot be read or gives no usable rules."""
    try:
        registry = read_registry()
        rows = tuple(build_rules(registry_estimates(registry), registry))
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise NotInitialisedError(
            f"no usable rule set, and the registry stored in {home or 'routing.db'} cannot be read"
            f" ({type(exc).__name__}: {exc}): run `routing init --registry FILE`"
        ) from None
    rule_set = RuleSet(
        version=None, created_at=created_at, as_of=None, source="registry-order",
        inputs={"registry_source": registry.source}, rows=rows,
    )
    try:
        check_usable(rule_set)
    except UnusableRuleSet as exc:
        raise NotInitialisedError(
            f"no usable rule set, and the registry stored in {home or 'routing.db'} gives none ({exc}):"
            " enable a model and run `routing init --registry FILE`"
        ) from None
    return rule_set


def short_repr(value: object, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: a poisoned value must not flood every selection reason."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_row(r: tuple, where: str) -> RuleRow:
    """One stored row, every field checked; raises :class:`UnusableRuleSet` naming the field.

    A row for a task type or preference this code does not know (written by a newer version,
    seen after a package rollback) makes the set unusable rather than being ignored: its other
    rows were computed under rules this code may not share (e.g. probabilities spread over
    cells it does not know), so the older sets this code wrote are the safer thing to serve.
    """
    def fail(field: str, value: object, expected: str) -> UnusableRuleSet:
        return UnusableRuleSet(f"{where}: {field}={short_repr(value)} {expected}")

    def enum(enum_type, field: str, value: object):
        try:
            return enum_type(value)
        except ValueError:
            raise fail(field, value, "is not known to this code") from None

    def flag(field: str, value: object) -> bool:
        if value not in (0, 1) or isinstance(value, float):
            raise fail(field, value, "must be 0 or 1")
        return bool(value)

    def number(field: str, value: object, *, high: float = math.inf, optional: bool = False) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= high:
            return float(value)
        bounds = "within [0, 1]" if high == 1.0 else "≥ 0"
        raise fail(field, value, f"must be a finite number {bounds}")

    task, preference, model_id, priority = r[0], r[1], r[2], r[3]
    if not isinstance(model_id, str) or not model_id:
        raise fail("model_id", model_id, "must be a non-empty text")
    if not isinstance(priority, int):
        raise fail("priority", priority, "must be an integer")
    return RuleRow(
        task_type=enum(TaskType, "task_type", task), preference=enum(RoutingPreference, "preference", preference),
        model_id=model_id, priority=priority, is_specialized=flag("is_specialized", r[4]),
        is_enabled=flag("is_enabled", r[5]), is_eligible=flag("is_eligible", r[6]),
        min_quality_score=number("min_quality_score", r[7], high=1.0),
        max_cost_per_1k=number("max_cost_per_1k", r[8], optional=True),
        selection_probability=number("selection_probability", r[9], high=1.0),
        expected_quality=number("expected_quality", r[10], high=1.0),
        expected_cost_usd=number("expected_cost_usd", r[11]),
        expected_latency_ms=number("expected_latency_ms", r[12]),
        expected_cost_per_1k=number("expected_cost_per_1k", r[13]),
    )


def check_usable(rule_set: RuleSet) -> None:
    """A rule set is usable when every row parsed (the loader checks that) and every (task
    type, preference) has exactly one row per model and at least one enabled model; otherwise
    raise :class:`UnusableRuleSet`. Cells are not patched from other versions: a set is served
    whole or not at all, so every decision's ``rule_set_version`` tells exactly what it used."""
    where = f"rule set v{rule_set.version}" if rule_set.version is not None else "registry-order rules"
    cells: dict[RuleKey, list[RuleRow]] = {}
    for row in rule_set.rows:
        cells.setdefault(RuleKey(row.task_type, row.preference), []).append(row)
    for key in all_cells():
        rows = cells.get(key, [])
        if not any(r.is_enabled for r in rows):
            raise UnusableRuleSet(f"{where}: {key.label} has no enabled model" if rows else f"{where}: {key.label} has no rows")
        models = [r.model_id for r in rows]
        if len(set(models)) != len(models):
            duplicate = next(m for m in models if models.count(m) > 1)
            raise UnusableRuleSet(f"{where}: {key.label} lists model_id={short_repr(duplicate)} twice")


# ----------------------------------------------------------------------------- compiled form

#: ``excluded``: the models this choice left out (``exclude`` and, where they could have been
#: drawn, those outside ``within``), recorded with the decision.
Choice = namedtuple("Choice", "model_id propensity reason alternatives alternatives_json excluded")


class _Slot(namedtuple("_Slot", "task preference provenance candidates last_resorts cumulative choices drawn")):
    """Precomputed choices of one (task type, preference); the common case is one bisect.

    ``provenance`` ends every selection reason: which rules were served (``"rule set v6"``, or
    the note saying why not the newest); ``candidates``: enabled models that are eligible or
    given traffic, in priority order; ``last_resorts``: the other enabled models, by quality;
    ``drawn``: the ids a draw can return (positive weight).
    """

    __slots__ = ()

    @classmethod
    def build(cls, task: TaskType, preference: RoutingPreference, provenance: str, rows: list[RuleRow]) -> _Slot:
        candidates = tuple(r for r in rows if r.is_enabled and (r.is_eligible or r.selection_probability > 0))
        last_resorts = tuple(sorted(
            (r for r in rows if r.is_enabled and r not in candidates), key=lambda r: -r.expected_quality,
        ))
        slot = cls(task, preference, provenance, candidates, last_resorts, (), (), frozenset())
        pool = candidates or last_resorts[:1]
        weights = _weights(pool)
        choices = tuple(slot._choice(pool, i, weights[i], ()) for i in range(len(pool)))
        drawn = frozenset(r.model_id for r, w in zip(pool, weights) if w > 0)
        return cls(task, preference, provenance, candidates, last_resorts, tuple(accumulate(weights)), choices, drawn)

    def choose(self, u: float, exclude: frozenset[str] | None, within: frozenset[str] | None = None) -> Choice:
        # Models outside ``within`` matter only where a draw could return them: a restriction
        # that leaves every drawable model in keeps the rules' own probabilities.
        outside = frozenset() if within is None else self.drawn - within
        if not exclude and not outside:
            if not self.choices:
                raise LookupError(f"no enabled model for task_type={self.task.value!r} ({self.provenance})")
            return self.choices[min(bisect_right(self.cumulative, u * self.cumulative[-1]), len(self.choices) - 1)]
        allowed = (lambda r: r.model_id in within) if within is not None else (lambda r: True)
        if not exclude:
            # The rules' probabilities renormalised over the allowed models: the propensity is
            # the one this restricted draw really had, and the decision records the models it
            # left out, so off-policy evaluation knows it followed a conditional policy.
            pool = tuple(r for r in self.candidates if allowed(r))
            if pool:
                weights = _weights(pool)
                cumulative = list(accumulate(weights))
                index = min(bisect_right(cumulative, u * cumulative[-1]), len(pool) - 1)
                return self._choice(pool, index, weights[index], tuple(sorted(outside)), within)
        # A fallback after a failed call takes the best remaining model in priority order.
        skip = (exclude or frozenset()) | outside
        pool = tuple(r for r in self.candidates if r.model_id not in skip and allowed(r))
        if not pool:
            pool = tuple(r for r in self.last_resorts if r.model_id not in skip and allowed(r))[:1]
        if not pool:
            asked = f"exclude={sorted(exclude)!r}" if exclude else ""
            asked += (", " if asked else "") + (f"within={sorted(within)!r}" if within is not None else "")
            raise ValueError(f"{asked} leaves no enabled model for task_type={self.task.value!r}")
        return self._choice(pool, 0, 1.0, tuple(sorted(skip)), within, fallback=bool(exclude))

    def _choice(
        self, pool: tuple[RuleRow, ...], index: int, propensity: float, excluded: tuple[str, ...],
        within: frozenset[str] | None = None, *, fallback: bool = False,
    ) -> Choice:
        chosen = pool[index]
        pref = self.preference.value
        no_eligible = not any(r.is_eligible for r in self.candidates)
        # Fallbacks in priority order; where no model is eligible, the rest by quality too.
        fallbacks = (*pool, *self.last_resorts) if no_eligible else pool
        alternatives = tuple(dict.fromkeys(
            r.model_id for r in fallbacks
            if r is not chosen and r.model_id not in excluded and (within is None or r.model_id in within)
        ))
        if no_eligible:
            cap = f", max_cost_per_1k={chosen.max_cost_per_1k}" if chosen.max_cost_per_1k is not None else ""
            reason = (
                f"{pref}: no eligible model for {self.task.value} (min_quality_score={chosen.min_quality_score}{cap});"
                f" chose {chosen.model_id} (quality {chosen.expected_quality:.2f}, p={propensity:.3f})"
            )
        elif within is not None and not fallback:
            reason = (
                f"{pref}: {PREFERENCES[self.preference].summary} among the {len(pool)} allowed candidates"
                f" (quality {chosen.expected_quality:.2f}, ${chosen.expected_cost_usd:.5f}/request,"
                f" {chosen.expected_latency_ms:.0f} ms); p={propensity:.3f}"
            )
        elif excluded:
            reason = f"{pref}: fallback, best remaining of {len(pool)} candidates by priority"
        elif index == 0:
            reason = (
                f"{pref}: {PREFERENCES[self.preference].summary} of {len(pool)} candidates"
                f" (quality {chosen.expected_quality:.2f}, ${chosen.expected_cost_usd:.5f}/request,"
                f" {chosen.expected_latency_ms:.0f} ms); p={propensity:.3f}"
            )
        else:
            reason = f"{pref}: exploring rank {index + 1} of {len(pool)} candidates (p={propensity:.3f}); best is {pool[0].model_id}"
        reason += f"; {self.provenance}"
        if excluded:
            reason += f"; excluded: {', '.join(excluded)}"
        return Choice(chosen.model_id, round(propensity, 6), reason, alternatives, json.dumps(alternatives), excluded)


def _weights(pool: tuple[RuleRow, ...]) -> list[float]:
    """Selection probabilities renormalised over ``pool``; all-zero means the first one."""
    weights = [max(r.selection_probability, 0.0) for r in pool]
    total = sum(weights)
    if total <= 0:
        return [1.0] + [0.0] * (len(pool) - 1)
    return [w / total for w in weights]


class CompiledRules(namedtuple("CompiledRules", "rule_set note slots known_models")):
    """A rule set in the form the router samples from; ``note`` as
    :meth:`routing_runtime.store.Store.load_usable_rule_set` gives it."""

    __slots__ = ()

    @property
    def version(self) -> int | None:
        return self.rule_set.version

    @classmethod
    def compile(cls, rule_set: RuleSet, note: str = "") -> CompiledRules:
        grouped: dict[RuleKey, list[RuleRow]] = {}
        for row in rule_set.rows:
            grouped.setdefault(RuleKey(row.task_type, row.preference), []).append(row)
        provenance = note or f"rule set v{rule_set.version}"
        slots = {
            key: _Slot.build(key.task_type, key.preference, provenance, sorted(grouped.get(key, []), key=lambda r: r.priority))
            for key in all_cells()
        }
        return cls(rule_set, note, slots, frozenset(r.model_id for r in rule_set.rows))

    def choose(
        self, task: TaskType, preference: RoutingPreference, u: float, exclude: frozenset[str] | None,
        within: frozenset[str] | None = None,
    ) -> Choice:
        return self.slots[(task, preference)].choose(u, exclude, within)
