"""Published rule sets: atomic publishing, loading, and the compiled form the router samples from."""

from __future__ import annotations

import json
import sqlite3
from bisect import bisect_right
from itertools import accumulate
from collections import namedtuple
from collections.abc import Iterable, Mapping

from routing_runtime import store
from routing_runtime.home import NotInitialisedError
from routing_runtime.rules import RuleKey, RuleRow
from routing_runtime.types import RoutingPreference, TaskType

CODE_VERSION = "routing_runtime 0.1.0"

_RULE_COLUMNS = (
    "task_type", "preference", "model_id", "priority", "is_specialized", "is_enabled", "is_eligible",
    "min_quality_score", "max_cost_per_1k", "selection_probability", "expected_quality",
    "expected_cost_usd", "expected_latency_ms", "expected_cost_per_1k",
)
_OBJECTIVE = {
    RoutingPreference.QUALITY: "highest expected quality",
    RoutingPreference.COST_EFFICIENT: "lowest expected cost",
    RoutingPreference.BALANCED: "highest expected quality per dollar",
    RoutingPreference.LATENCY: "lowest expected latency",
}


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


def publish_rule_set(
    conn: sqlite3.Connection, rows: Iterable[RuleRow], *, source: str, as_of: str | None = None,
    inputs: Mapping | None = None,
) -> int:
    """Publish ``rows`` as the next rule-set version in one transaction; return the version.

    Readers see the previous version until the commit, then the new one, never a mix.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: a rule set needs at least one model")
    with store.transaction(conn):
        version = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM rule_sets").fetchone()[0]
        conn.execute(
            "INSERT INTO rule_sets (version, created_at, as_of, source, inputs, code_version) VALUES (?, ?, ?, ?, ?, ?)",
            (version, store.utc_timestamp(), as_of, source, json.dumps(dict(inputs or {}), sort_keys=True, default=str), CODE_VERSION),
        )
        conn.executemany(
            "INSERT INTO model_routing_rules (id, rule_set_version, " + ", ".join(_RULE_COLUMNS) + ")"
            " VALUES (" + ", ".join("?" * (len(_RULE_COLUMNS) + 2)) + ")",
            [(
                f"v{version}:{r.task_type.value}:{r.preference.value}:{r.model_id}", version,
                r.task_type.value, r.preference.value, r.model_id, r.priority, int(r.is_specialized),
                int(r.is_enabled), int(r.is_eligible), r.min_quality_score, r.max_cost_per_1k,
                r.selection_probability, r.expected_quality, r.expected_cost_usd, r.expected_latency_ms,
                r.expected_cost_per_1k,
            ) for r in rows],
        )
    return version


def load_rule_set(conn: sqlite3.Connection, version: int | None = None, home: object = None) -> RuleSet:
    """The rule set ``version`` (default: the current one), read in one snapshot."""
    conn.execute("BEGIN")
    try:
        if version is None:
            version = conn.execute("SELECT MAX(version) FROM rule_sets WHERE source != 'legacy'").fetchone()[0]
            if version is None:
                raise NotInitialisedError(f"no rule set is published in {home or 'routing.db'}: run `routing init`")
        meta = conn.execute("SELECT created_at, as_of, source, inputs FROM rule_sets WHERE version = ?", (version,)).fetchone()
        if meta is None:
            raise LookupError(f"rule_set_version={version!r} does not exist")
        raw = conn.execute(
            "SELECT " + ", ".join(_RULE_COLUMNS) + " FROM model_routing_rules WHERE rule_set_version = ? ORDER BY task_type, preference, priority",
            (version,),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    rows = tuple(
        RuleRow(
            task_type=TaskType(r[0]), preference=RoutingPreference(r[1]), model_id=r[2], priority=r[3],
            is_specialized=bool(r[4]), is_enabled=bool(r[5]), is_eligible=bool(r[6]), min_quality_score=r[7],
            max_cost_per_1k=r[8], selection_probability=r[9] or 0.0, expected_quality=r[10],
            expected_cost_usd=r[11], expected_latency_ms=r[12], expected_cost_per_1k=r[13],
        )
        for r in raw
    )
    return RuleSet(version=version, created_at=meta[0], as_of=meta[1], source=meta[2], inputs=json.loads(meta[3]), rows=rows)


def load_current_rule_set(conn: sqlite3.Connection, home: object = None) -> RuleSet:
    return load_rule_set(conn, None, home)


# ----------------------------------------------------------------------------- compiled form

Choice = namedtuple("Choice", "model_id propensity reason alternatives alternatives_json")


class _Slot(namedtuple("_Slot", "task preference version candidates last_resorts cumulative choices")):
    """Precomputed choices of one (task type, preference); the common case is one bisect.

    ``candidates``: enabled models that are eligible or given traffic, in priority order;
    ``last_resorts``: the other enabled models, by quality.
    """

    __slots__ = ()

    @classmethod
    def build(cls, task: TaskType, preference: RoutingPreference, version: int, rows: list[RuleRow]) -> _Slot:
        candidates = tuple(r for r in rows if r.is_enabled and (r.is_eligible or r.selection_probability > 0))
        last_resorts = tuple(sorted(
            (r for r in rows if r.is_enabled and r not in candidates), key=lambda r: -r.expected_quality,
        ))
        slot = cls(task, preference, version, candidates, last_resorts, (), ())
        pool = candidates or last_resorts[:1]
        weights = _weights(pool)
        choices = tuple(slot._choice(pool, i, weights[i], ()) for i in range(len(pool)))
        return cls(task, preference, version, candidates, last_resorts, tuple(accumulate(weights)), choices)

    def choose(self, u: float, exclude: frozenset[str] | None) -> Choice:
        if not exclude:
            if not self.choices:
                raise LookupError(f"no enabled model for task_type={self.task.value!r} in rule set v{self.version}")
            return self.choices[min(bisect_right(self.cumulative, u * self.cumulative[-1]), len(self.choices) - 1)]
        # A fallback after a failed call takes the best remaining model in priority order.
        pool = tuple(r for r in self.candidates if r.model_id not in exclude)
        if not pool:
            pool = tuple(r for r in self.last_resorts if r.model_id not in exclude)[:1]
        if not pool:
            raise ValueError(
                f"exclude={sorted(exclude)!r} leaves no enabled model for task_type={self.task.value!r}"
            )
        return self._choice(pool, 0, 1.0, tuple(sorted(exclude)))

    def _choice(self, pool: tuple[RuleRow, ...], index: int, propensity: float, excluded: tuple[str, ...]) -> Choice:
        chosen = pool[index]
        pref = self.preference.value
        no_eligible = not any(r.is_eligible for r in self.candidates)
        # Fallbacks in priority order; where no model is eligible, the rest by quality too.
        fallbacks = (*pool, *self.last_resorts) if no_eligible else pool
        alternatives = tuple(dict.fromkeys(r.model_id for r in fallbacks if r is not chosen and r.model_id not in excluded))
        if no_eligible:
            cap = f", max_cost_per_1k={chosen.max_cost_per_1k}" if chosen.max_cost_per_1k is not None else ""
            reason = (
                f"{pref}: no eligible model for {self.task.value} (min_quality_score={chosen.min_quality_score}{cap});"
                f" chose {chosen.model_id} (quality {chosen.expected_quality:.2f}, p={propensity:.3f})"
            )
        elif excluded:
            reason = f"{pref}: fallback, best remaining of {len(pool)} candidates by priority"
        elif index == 0:
            reason = (
                f"{pref}: {_OBJECTIVE[self.preference]} of {len(pool)} candidates"
                f" (quality {chosen.expected_quality:.2f}, ${chosen.expected_cost_usd:.5f}/request,"
                f" {chosen.expected_latency_ms:.0f} ms); p={propensity:.3f}"
            )
        else:
            reason = f"{pref}: exploring rank {index + 1} of {len(pool)} candidates (p={propensity:.3f}); best is {pool[0].model_id}"
        reason += f"; rule set v{self.version}"
        if excluded:
            reason += f"; excluded: {', '.join(excluded)}"
        return Choice(chosen.model_id, round(propensity, 6), reason, alternatives, json.dumps(alternatives))


def _weights(pool: tuple[RuleRow, ...]) -> list[float]:
    """Selection probabilities renormalised over ``pool``; all-zero means the first one."""
    weights = [max(r.selection_probability, 0.0) for r in pool]
    total = sum(weights)
    if total <= 0:
        return [1.0] + [0.0] * (len(pool) - 1)
    return [w / total for w in weights]


class CompiledRules(namedtuple("CompiledRules", "rule_set slots known_models")):
    """A rule set in the form the router samples from."""

    __slots__ = ()

    @property
    def version(self) -> int:
        return self.rule_set.version

    @classmethod
    def compile(cls, rule_set: RuleSet) -> CompiledRules:
        grouped: dict[RuleKey, list[RuleRow]] = {}
        for row in rule_set.rows:
            grouped.setdefault((row.task_type, row.preference), []).append(row)
        slots = {
            (t, p): _Slot.build(t, p, rule_set.version, sorted(grouped.get((t, p), []), key=lambda r: r.priority))
            for t in TaskType for p in RoutingPreference
        }
        return cls(rule_set, slots, frozenset(r.model_id for r in rule_set.rows))

    def choose(self, task: TaskType, preference: RoutingPreference, u: float, exclude: frozenset[str] | None) -> Choice:
        return self.slots[(task, preference)].choose(u, exclude)
