"""Rule-set history: every version with its gate result, the difference between two versions,
and a rollback that publishes a copy of an earlier version (``routing history``, ``routing diff``,
``routing rollback``)."""

from __future__ import annotations

import json

from routing_runtime.compiled_rules import RuleSet, UnusableRuleSet
from routing_runtime.store import Store
from routing_runtime.types import RoutingPreference, TaskType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

ROLLBACK = "rollback"


def history(store: Store) -> list[dict]:
    """Every rule set, newest first: ``[{"rule_set_version", "as_of", "source", "created_at",
    "gate"}]``; ``gate`` is what the learning run's gate recorded in the set's inputs (None for a
    set no gate judged: registry rules, rollbacks, sets learned before the gate existed)."""
    entries = []
    for version, created_at, as_of, source, inputs in store.rule_set_headers():
        try:
            recorded = json.loads(inputs)
        except (TypeError, ValueError):
            recorded = {}
        gate = recorded.get("gate") if isinstance(recorded, dict) else None
        entries.append({"rule_set_version": version, "as_of": as_of, "source": source, "created_at": created_at, "gate": gate})
    return entries


def _load(store: Store, version: int, what: str) -> RuleSet:
    try:
        return store.load_rule_set(version)
    except LookupError:
        raise LookupError(f"{what}={version}: no such rule set version (see `routing history`)") from None
    except UnusableRuleSet as exc:
        raise ValueError(f"{what}={version}: that rule set cannot be served ({exc})") from None


def diff(store: Store, a: int, b: int) -> list[dict]:
    """Per (task type, preference): the top model (highest selection probability) and its share
    in rule set ``a`` and in ``b``, and whether the top model changed."""
    first, second = _load(store, a, "A"), _load(store, b, "B")
    cells = []
    for task in TaskType:
        for preference in RoutingPreference:
            top = [_top(rule_set, task, preference) for rule_set in (first, second)]
            cells.append({
                "task_type": task.value, "preference": preference.value,
                "a": {"model_id": top[0][0], "share": top[0][1]}, "b": {"model_id": top[1][0], "share": top[1][1]},
                "changed": top[0][0] != top[1][0],
            })
    return cells


def _top(rule_set: RuleSet, task: TaskType, preference: RoutingPreference) -> tuple[str | None, float | None]:
    rows = rule_set.models_for(task, preference)
    if not rows:
        return None, None
    best = max(rows, key=lambda r: (r.selection_probability, -r.priority))
    return best.model_id, round(best.selection_probability, 4)


def rollback(home: Path, store: Store, to: int) -> int:
    """Publish a new version whose rows equal version ``to``'s (source ``rollback``); running
    routers switch to it within a second. On a learner tied to a hub the copy goes to the hub
    too. A host that takes its versions from a hub cannot roll back by itself (its next sync
    would not know the version): roll back on the learner."""
    tie = store.hub_tie()
    if tie is not None and store.has_hub_rule_set():
        raise ValueError(
            f"--to={to}: this home takes its rule sets from the hub {tie[0]}: run `routing rollback` on the learner,"
            " and `routing sync` here brings the copy"
        )
    target = _load(store, to, "--to")
    version = store.publish_rule_set(
        target.rows, source=ROLLBACK, as_of=target.as_of,
        inputs={"rolled_back_to": to, "copied_from_source": target.source, "copied_from_inputs": target.inputs},
    )
    if tie is not None:
        from routing_runtime.hub import Hub
        from routing_runtime.sync import push_rule_sets

        push_rule_sets(home, Hub.parse(tie[0]), store)
    return version
