"""Which days a learning run must build, so that any interrupted run is completed by the next.

A day is *stale* when one of its lake partitions is missing or was built from other inputs than
the day has now (new or late database rows, new drops, an accepted quarantine), or when the
rules in force were not built from its current partitions (``learned_days``). The next run
covers every stale day, so it ends exactly where a never-interrupted run ends.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from routing_pipelines import logs
from routing_pipelines.lake import QUARANTINE, Lake
from routing_pipelines.learning.statistics import STATS_VERSION
from routing_runtime.store import LearnedDay, Store
from routing_runtime.registry import LearningSettings, RegistryError

DAILY_MODEL_STATS = "daily_model_stats"


@dataclass
class LearningPlan:
    """What a run covers: ``start``..``end`` (its partition range) and why."""

    start: dt.date
    end: dt.date
    nothing_new: bool = False
    problems: list[str] = field(default_factory=list)
    #: Where the run's daily partitions start: the home's first day with evidence.
    first_day: dt.date | None = None


def stats_fingerprint(performance_built_from: str | None, held: str | None) -> str:
    return json.dumps({"performance": performance_built_from, "held": held, "statistics": STATS_VERSION}, sort_keys=True)


def _stats_current(stats_built_from: str | None, performance_built_from: str | None) -> bool:
    """Daily statistics built from the day's current outcome partition, with today's columns."""
    if stats_built_from is None:
        return False
    record = json.loads(stats_built_from)
    return record.get("performance") == performance_built_from and record.get("statistics") == STATS_VERSION


def learned_fingerprint(decisions: str | None, performance: str | None) -> str:
    return json.dumps([decisions, performance])


def stale_days(home: Path, store: Store, sources: dict[dt.date, dict]) -> list[dt.date]:
    lake = Lake(home)
    learned = store.learned_fingerprints()
    stale = []
    for day in sorted(set(sources) | {dt.date.fromisoformat(d) for d in learned}):
        expected = {t: logs.table_fingerprint(sources.get(day), t) for t in logs.TABLES}
        built = {t: lake.built_from(t, day) for t in logs.TABLES}
        stats = lake.built_from(DAILY_MODEL_STATS, day)
        stats_ok = _stats_current(stats, built[logs.PERFORMANCE])
        if (
            built != expected or not stats_ok
            or learned.get(day.isoformat()) != learned_fingerprint(expected[logs.DECISIONS], expected[logs.PERFORMANCE])
        ):
            stale.append(day)
    return stale


def plan_run(
    home: Path, store: Store, as_of: dt.date, learned_through: dt.date | None, *, explicit: bool,
    pending: set[dt.date] | frozenset[dt.date] = frozenset(),
) -> LearningPlan:
    """The range of the next run up to ``as_of``: from the earliest stale day (on a new home, the
    first day with evidence) to ``as_of``. ``nothing_new`` when ``as_of`` is learned already and
    nothing is stale, unless the day was asked for explicitly (a backfill). ``pending``: the days
    of drops still waiting in the inbox (:func:`routing_pipelines.logs.pending_days`), which the
    run's first step stages. Reads only: planning changes nothing."""
    sources = logs.source_fingerprints(store)
    stale = sorted(d for d in set(stale_days(home, store, sources)) | set(pending) if d <= as_of)
    sources = {**{d: {} for d in pending}, **sources}
    first = logs.FIRST_DAY.date()
    if learned_through is None:
        start = min([*(d for d in sources if d <= as_of), as_of])
    else:
        start = min([*stale, as_of])
    # Nothing new: nothing stale and no evidence after the learned frontier. A day without logs
    # changes the posteriors only by forgetting: the rules in force stay, no empty run is paid for.
    nothing_new = (
        not explicit and not stale and learned_through is not None
        and not any(learned_through < d <= as_of for d in sources)
    )
    problems = []
    try:
        max_run_days = store.registry().learning.max_run_days
    except RegistryError:  # a bad stored model fails the run's first step, which names it with the fix
        max_run_days = LearningSettings().max_run_days
    earliest = as_of - dt.timedelta(days=max_run_days - 1)
    if start < earliest:
        left_out = sorted(d for d in (set(stale) | set(sources)) if d < earliest and (d in stale or learned_through is None))
        if left_out:
            problems.append(
                f"{len(left_out)} day(s) with evidence before {earliest} ({left_out[0]} … {left_out[-1]}) are outside this"
                f" run's {max_run_days}-day window and not learned: `routing learn --as-of {left_out[-1]}` learns them"
                " (a backfill), then a plain `routing learn` brings the rules up to date"
            )
        start = earliest
    start = max(start, first)
    evidence = _first_day(home, set(sources))  # pending days are keys of sources already
    return LearningPlan(start=start, end=as_of, nothing_new=nothing_new, problems=problems,
                        first_day=min(evidence or start, start))


def learning_range(home: Path, as_of: dt.date, *, explicit: bool = False, first_day: dt.date | None = None) -> LearningPlan:
    """The next run's days up to ``as_of`` (see :func:`plan_run`), counting the drops still in
    the inbox; ``first_day``: where the Definitions' partitions start (a range never starts
    before it). Opens ``routing.db`` read-only: the schedule's tick and `routing learn` plan
    without changing anything."""
    with Store.open_home(home, read_only=True, needed_by="learning") as store:
        pending = logs.pending_days(home)
        planned = plan_run(home, store, as_of, store.learned_through(), explicit=explicit, pending=pending)
    if first_day is not None and planned.start < first_day:
        planned.problems.append(
            f"days before {first_day} gained evidence after the code location was loaded: reload it"
            " (Deployment → Reload in the UI) to learn them"
        )
        planned.start = min(first_day, planned.end)
        planned.first_day = first_day
    return planned


def days_to_build(home: Path, store: Store, keys: list[str]) -> list[tuple[dt.date, dict | None]]:
    """The days of a run's partition keys that have evidence, or partitions to clear, with their
    sources: a day without either costs nothing."""
    if not keys:
        return []
    sources = logs.source_fingerprints(store, (dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])))
    lake = Lake(home)
    result = []
    for key in keys:
        day = dt.date.fromisoformat(key)
        if day in sources or any(lake.has_partition(t, day) for t in (*logs.TABLES, DAILY_MODEL_STATS)):
            result.append((day, sources.get(day)))
    return result


def unlearned_days(home: Path, store: Store, as_of: dt.date) -> list[dt.date]:
    """The days up to ``as_of`` that the rules in force were not built from as they are now: what
    a publication as of ``as_of`` learns (and records with :func:`learned_days`)."""
    return [d for d in stale_days(home, store, logs.source_fingerprints(store)) if d <= as_of]


def first_evidence_day(home: Path, store: Store, pending: set[dt.date] | frozenset[dt.date] = frozenset()) -> dt.date | None:
    """The first UTC day with evidence: database rows, staged or waiting drops, lake partitions."""
    return _first_day(home, set(logs.source_fingerprints(store)) | set(pending))


def _first_day(home: Path, days: set[dt.date]) -> dt.date | None:
    lake = Lake(home)
    for table in logs.TABLES:
        days |= set(lake.partition_days(table))
    return min(days) if days else None


def learned_days(home: Path, keys: list[str]) -> list[LearnedDay]:
    """The days of the run, as the partitions the new rules are built from record them, with
    their quarantine counts and hold reasons: published with the rules (``routing status`` and
    the next run's plan read them)."""
    lake = Lake(home)
    rows = []
    for key in keys:
        built = {t: lake.built_from(t, key) for t in logs.TABLES}
        if all(b is None for b in built.values()):
            continue
        stats = lake.built_from(DAILY_MODEL_STATS, key)
        held = json.loads(stats).get("held") if stats else None
        quarantined = [lake.partition_rows(t, key, QUARANTINE) for t in logs.TABLES]
        rows.append(LearnedDay(key, learned_fingerprint(built[logs.DECISIONS], built[logs.PERFORMANCE]), *quarantined, held))
    return rows

