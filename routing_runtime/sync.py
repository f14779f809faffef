"""``routing sync``: an agent host ships its logs to the hub and takes the rule sets published there.

Selection and recording stay local (SQLite, no network); a sync moves what is new, and a sync
cut short anywhere, or one that finds the hub down, loses and doubles nothing:

* **Shipping** (:func:`ship`). Each log table goes up in sealed Parquet segments,
  ``inbox/<host>/<table>/<first rowid>-<last rowid>.parquet`` (:func:`routing_runtime.hub.inbox_key`).
  A segment is first *planned* in ``routing.db`` (its own transaction: the rows above the last
  planned segment, at most :data:`SEGMENT_ROWS`), then written whole to the hub, then marked
  shipped. A segment planned but not marked (a kill, a hub that went down) is shipped again by the
  next sync with the same name and the same rows: the hub holds every row once, and the learner
  counts rows by id anyway. Timestamps ship as the stored ISO text.
* **Pulling** (:func:`pull`). ``rules/current.json`` names the hub's newest version N; when N is
  above the home's newest, ``rules/v<N>.json`` is checked as a router would check it (every
  field, every model registered here, something servable) and stored as version N in one
  transaction; running routers switch to it within a second. A set that fails the check is not
  stored: routers keep serving what they serve and the sync says why.
* **Pushing** (:func:`push_rule_sets`), for the learner: every local version above the hub's
  current goes up, the pointer last, so a host reads a whole version or the one before.

Standard library at import; pyarrow (the ``[hub]`` extra) is imported when a segment is written.
"""

from __future__ import annotations

import io
import sys

from routing_runtime.compiled_rules import STORED_RULE_FIELDS, RuleSet, UnusableRuleSet, check_usable, parse_rule_set, with_registry
from routing_runtime.faults import crashpoint
from routing_runtime.home import NotInitialisedError, resolve_home
from routing_runtime.hub import CURRENT_RULES, Hub, HubError, inbox_key, rule_set_key
from routing_runtime.store import LOG_COLUMNS, HubSegment, Store, StoreError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence
    from pathlib import Path

__all__ = ["SEGMENT_ROWS", "SyncError", "pull", "push_rule_sets", "segment_parquet", "ship", "sync", "sync_once"]

#: Rows per shipped segment at most: a segment is one object on the hub, read whole by the learner.
SEGMENT_ROWS = 50_000
#: How often a ``--every`` loop ships, at the most (seconds): see :func:`sync`.
SHIP_EVERY = 30.0
SHIPPED_TABLES = tuple(LOG_COLUMNS)
SYNC_EXTRA_HINT = "routing sync needs the [hub] extra (pyarrow writes the Parquet segments): pip install 'routing-runtime[hub]'"


class SyncError(RuntimeError):
    """A sync that cannot finish; the message says why and what to do. Nothing is lost: the next
    sync delivers what this one did not."""


# ---------------------------------------------------------------------- shipping


def ship(home: Path, hub: Hub, store: Store, *, segment_rows: int = SEGMENT_ROWS) -> dict[str, int]:
    """Ship every decision and outcome of ``store`` not yet on ``hub``; rows shipped per table.

    Segments a cut-short sync planned are shipped first (same names, same rows), then new ones
    are planned and shipped until none is left. A hub error stops at the segment it happened on:
    that segment stays planned and the next sync ships it.
    """
    host = _tie(home, store)[1]
    shipped = {}
    for table in LOG_COLUMNS:
        rows = sum(_ship_segment(hub, store, host, segment) for segment in store.unshipped_hub_segments(table))
        while (segment := store.plan_hub_segment(table, segment_rows)) is not None:
            crashpoint("sync:after_plan")
            rows += _ship_segment(hub, store, host, segment)
        shipped[table] = rows
    return shipped


def _ship_segment(hub: Hub, store: Store, host: str, segment: HubSegment) -> int:
    rows = store.hub_segment_rows(segment)
    hub.put(inbox_key(host, segment.table, segment.name), segment_parquet(segment.table, rows))
    crashpoint("sync:after_put")
    store.mark_hub_segment_shipped(segment)
    crashpoint("sync:after_mark")
    return len(rows)


def segment_parquet(table: str, rows: Sequence[tuple]) -> bytes:
    """``rows`` of ``table`` (its :data:`~routing_runtime.store.LOG_COLUMNS`, as stored) as Parquet bytes.

    Columns have their kind's type (text, float64, int64; timestamps as their ISO text). A column
    holding a value of another type (written by hand or by another program) ships as text, so
    the learner quarantines that row by name instead of the sync failing on it for ever.
    """
    pa, pq = _pyarrow()
    types = {"text": pa.string(), "timestamp": pa.string(), "integer": pa.int64(), "real": pa.float64()}
    columns = {}
    for index, (name, kind) in enumerate(LOG_COLUMNS[table]):
        values = [r[index] for r in rows]
        if all(v is None or _conforms(v, kind) for v in values):
            typed = [None if v is None else float(v) for v in values] if kind == "real" else values
            columns[name] = pa.array(typed, type=types[kind])
        else:
            columns[name] = pa.array([None if v is None else _as_text(v) for v in values], type=pa.string())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, compression="zstd")
    return sink.getvalue()


def _conforms(value: object, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    if kind in ("text", "timestamp"):
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int)
    return isinstance(value, (int, float))


def _as_text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SyncError(SYNC_EXTRA_HINT) from None
    return pa, pq


# ---------------------------------------------------------------------- rule sets


def pull(home: Path, hub: Hub, store: Store) -> int | None:
    """Take the hub's newest rule set into ``store`` when it is newer than the home's; return
    the hub's current version (None when the hub has none yet).

    The set is stored with the hub's version number, after the checks a router makes (so a
    router is never handed a set it cannot serve). Raises :class:`SyncError` when the hub's set
    is not usable here, or when this home holds a different set under the hub's number (a host
    tied to a hub takes its versions from the hub).
    """
    version = _current_version(hub)
    if version is None:
        return None
    local = store.published_versions()
    if local and version <= local[0]:
        mine = store.rule_set_document(version)
        if mine is not None and not _is_hub_copy(mine, hub):
            theirs = _fetch(hub, version)
            if not _same_rules(mine, theirs):
                raise SyncError(
                    f"this home's rule set v{version} ({mine['source']}) is not the hub's v{version} ({hub.url}):"
                    " a host tied to a hub takes its versions from the hub. Give every home of the fleet the same"
                    " registry, or start this host from a new home (`routing init --home NEW --hub URL`)"
                )
        return version
    document = _fetch(hub, version)
    crashpoint("sync:pull_after_fetch")
    rule_set = _checked(document, version, hub, store)
    if not store.import_rule_set(rule_set, code_version=str(document.get("code_version") or "unknown"), hub_url=hub.url):
        return pull(home, hub, store)  # another sync stored v<version> meanwhile: check it is the hub's
    crashpoint("sync:after_import")
    return version


def push_rule_sets(home: Path, hub: Hub, store: Store) -> list[int]:
    """For the learner: put every local rule set above the hub's current version on ``hub``
    (``rules/v<N>.json`` each), then ``rules/current.json`` last; return the versions pushed.

    Raises :class:`SyncError` when the hub's current version is not this home's (another learner
    publishes to this hub): one learner per hub.
    """
    current = _current_version(hub) or 0
    local = sorted(store.published_versions())
    newest = local[-1] if local else 0
    if current > newest:
        raise SyncError(
            f"the hub {hub.url} serves rule set v{current}, above this home's newest v{newest}: another learner"
            f" publishes to this hub. One learner per hub: stop the other, or tie {home} to another hub"
        )
    if current:
        mine = store.rule_set_document(current)
        if mine is None or not _same_rules(mine, _fetch(hub, current), created_at_too=True):
            raise SyncError(
                f"the hub {hub.url}'s rule set v{current} is not this home's v{current}: another learner publishes"
                f" to this hub. One learner per hub: stop the other, or tie {home} to another hub"
            )
    pushed = [v for v in local if v > current]
    for version in pushed:
        document = store.rule_set_document(version)
        if document is not None:
            hub.put_json(rule_set_key(version), document)
    if pushed:
        hub.put_json(CURRENT_RULES, {"version": newest})
    return pushed


def _current_version(hub: Hub) -> int | None:
    pointer = hub.get_json(CURRENT_RULES)
    if pointer is None:
        return None
    version = pointer.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SyncError(
            f"{hub.url}/{CURRENT_RULES}: version={version!r} is not a positive integer: write"
            ' {"version": N} there, N the newest rules/v<N>.json on the hub'
        )
    return version


def _fetch(hub: Hub, version: int) -> dict:
    key = rule_set_key(version)
    document = hub.get_json(key)
    if document is None:
        raise SyncError(f"{hub.url}/{CURRENT_RULES} names v{version} but {key} is missing: the learner's next publication writes it")
    return document


def _checked(document: dict, version: int, hub: Hub, store: Store) -> RuleSet:
    """The hub's ``document`` as a rule set this home's routers can serve, or SyncError saying why not."""
    import json

    try:
        if document.get("version") != version:
            raise UnusableRuleSet(f"version={document.get('version')!r} is not {version}")
        rows = document.get("rows")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise UnusableRuleSet("rows is not a list of objects")
        inputs = document.get("inputs")
        meta = (document.get("created_at"), document.get("as_of"), document.get("source"),
                json.dumps(inputs) if isinstance(inputs, dict) else inputs)
        if not isinstance(meta[2], str) or not meta[2]:
            raise UnusableRuleSet(f"source={meta[2]!r} must be a non-empty text")
        rule_set = parse_rule_set(version, meta, [(f"{i}", *(r.get(f) for f in STORED_RULE_FIELDS)) for i, r in enumerate(rows)])
        check_usable(with_registry(rule_set, {m.id: int(m.enabled) for m in store.registry().models}))
    except (UnusableRuleSet, ValueError, TypeError) as exc:
        served = store.load_usable_rule_set()[0].version
        keeps = f"v{served}" if served is not None else "registry order"
        raise SyncError(
            f"{hub.url}/{rule_set_key(version)} is not a usable rule set ({exc}): not imported; this home keeps serving {keeps}"
        ) from None
    return rule_set


def _is_hub_copy(document: dict, hub: Hub) -> bool:
    """Whether a local rule-set document was imported from ``hub`` (:meth:`Store.import_rule_set`)."""
    inputs = document.get("inputs")
    return isinstance(inputs, dict) and inputs.get("hub") == hub.url


def _same_rules(mine: dict, theirs: dict, *, created_at_too: bool = False) -> bool:
    """Whether two rule-set documents hold the same rules; their creation times aside unless
    ``created_at_too`` (a host and the learner build the same registry set each on their own; a
    learner's sets on the hub are its own, to the microsecond)."""
    def rows(document: dict) -> list[tuple]:
        raw = document.get("rows")
        listed = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
        keyed = [(tuple(str(r.get(f)) for f in STORED_RULE_FIELDS[:3]), tuple(r.get(f) for f in STORED_RULE_FIELDS)) for r in listed]
        return sorted(keyed, key=lambda pair: pair[0])

    if created_at_too and mine.get("created_at") != theirs.get("created_at"):
        return False
    return mine.get("source") == theirs.get("source") and rows(mine) == rows(theirs)


# ---------------------------------------------------------------------- the command


def _tie(home: Path, store: Store) -> tuple[str, str]:
    """(hub URL, host id) of ``home``, or SyncError naming the command that ties it."""
    tie = store.hub_tie()
    if tie is None:
        raise SyncError(f"{home} is not tied to a hub: run `routing init --home {home} --hub URL` first")
    return tie


def sync_once(home: str | os.PathLike | None = None, *, hubs: dict[str, Hub] | None = None, ship_logs: bool = True,
              on_shipped: Callable[[], None] | None = None) -> dict:
    """Ship, then pull, once: ``{"shipped": {table: rows}, "rule_set_version": v}`` (v: the
    version the home serves now, None for registry order). Raises on any failure (nothing lost).
    ``hubs`` keeps the hub clients of a loop across syncs: making an S3 client costs more CPU
    than a sync of a busy host's last second. ``ship_logs=False`` only pulls (a loop between
    its shipments); ``on_shipped()`` is called once the logs are on the hub, also when the pull
    after it fails (a loop then waits its ship period, not shipping a new segment each retry)."""
    home_path = resolve_home(home)
    with Store.open_home(home_path, needed_by="`routing sync`") as store:
        url = _tie(home_path, store)[0]
        hub = hubs[url] if hubs is not None and url in hubs else Hub.parse(url)
        if hubs is not None:
            hubs[url] = hub
        shipped = ship(home_path, hub, store) if ship_logs else {table: 0 for table in SHIPPED_TABLES}
        if ship_logs and on_shipped is not None:
            on_shipped()
        pull(home_path, hub, store)
        served = store.load_usable_rule_set(home_path)[0].version
    return {"shipped": shipped, "rule_set_version": served}


def sync(home: str | os.PathLike | None = None, *, every: float | None = None, ship_every: float | None = None,
         as_json: bool = False) -> int:
    """``routing sync``: one sync (or one every ``every`` seconds until SIGTERM/SIGINT), one line
    (``as_json``: one JSON line) per sync. Returns the exit code: 0; 1 when a single sync failed
    (the hub down, credentials refused: the next one delivers); 2 when the home cannot sync at
    all (not initialised, not tied to a hub, the [hub] extra missing).

    A loop pulls every ``every`` seconds but ships every ``ship_every`` seconds (default: the
    larger of ``every`` and :data:`SHIP_EVERY`): rule sets reach the host within seconds, while
    the hub gets one segment per table per period, not one a second (the learner reads each
    segment once; a busy fleet shipping every second would make it read tens of thousands)."""
    home_path = resolve_home(home)
    try:
        _preflight(home_path)
    except (NotInitialisedError, SyncError, ValueError, StoreError) as exc:
        print(f"routing sync: error: {exc}", file=sys.stderr)
        return 2
    if every is None:
        return 0 if _report(home_path, as_json) else 1
    if not every > 0:
        print(f"routing sync: error: --every={every!r} must be a positive number of seconds", file=sys.stderr)
        return 2
    ship_period = max(every, SHIP_EVERY) if ship_every is None else ship_every
    if not ship_period > 0:
        print(f"routing sync: error: --ship-every={ship_every!r} must be a positive number of seconds", file=sys.stderr)
        return 2
    return _loop(home_path, every, ship_period, as_json)


def _preflight(home: Path) -> None:
    """What no retry can fix, checked once before the first sync."""
    with Store.open_home(home, read_only=True, needed_by="`routing sync`") as store:
        _tie(home, store)
    _pyarrow()


def _report(home: Path, as_json: bool, hubs: dict[str, Hub] | None = None, ship_logs: bool = True,
            on_shipped: Callable[[], None] | None = None) -> bool:
    """One sync, reported in one line; False when it failed (the message says why)."""
    import json

    try:
        result = sync_once(home, hubs=hubs, ship_logs=ship_logs, on_shipped=on_shipped)
    except (HubError, SyncError, NotInitialisedError, OSError, StoreError, ValueError) as exc:
        print(f"routing sync: error: {_one_line(exc)}", file=sys.stderr, flush=True)
        return False
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        shipped = result["shipped"]
        version = result["rule_set_version"]
        print(
            f"shipped {shipped['routing_decisions']} decision(s) and {shipped['model_performance']} outcome(s);"
            f" serving {f'rule set v{version}' if version is not None else 'registry order'}",
            flush=True,
        )
    return True


def _loop(home: Path, every: float, ship_every: float, as_json: bool) -> int:
    """Sync every ``every`` seconds until SIGTERM or SIGINT (then exit 0, after the sync under
    way, if any, finished); a failed sync is reported and retried at the next period."""
    import functools
    import signal
    import threading
    import time

    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    hubs: dict[str, Hub] = {}
    shipped_at: list[float] = []
    try:
        while not stop.is_set():
            started = time.monotonic()
            ship_logs = not shipped_at or started - shipped_at[-1] >= ship_every - 1e-3
            try:
                _report(home, as_json, hubs, ship_logs, on_shipped=functools.partial(shipped_at.append, started))
            except Exception as exc:  # noqa: BLE001 - the loop outlives any one failed sync; the next one retries
                print(f"routing sync: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr, flush=True)
            stop.wait(max(0.0, every - (time.monotonic() - started)))
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
