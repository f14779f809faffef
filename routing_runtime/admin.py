"""Creating and upgrading a ``ROUTING_HOME``: ``routing init`` as a function."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from routing_runtime import safe_fs
from routing_runtime.home import NotInitialisedError, db_path, resolve_home
from routing_runtime.registry import ModelRegistry
from routing_runtime.rules import ModelEstimate, build_rules, registry_estimates
from routing_runtime.compiled_rules import RuleSet
from routing_runtime.hub import Hub
from routing_runtime.classifier import LOW_CONFIDENCE
from routing_runtime.router import CLASSIFIED_MARK, LOW_CONFIDENCE_MARK
from routing_runtime.store import DB_NAME, Store, utc_timestamp
from routing_runtime.types import RoutingPreference, TaskType

#: Folders inside ROUTING_HOME.
INBOX_TABLES = ("routing_decisions", "model_performance")


@dataclass(frozen=True)
class InitResult:
    home: Path
    schema_version: int
    previous_schema_version: int
    models: int
    rule_set_version: int
    published: bool
    registry_source: str = ""
    registry_kept: bool = False  # no --registry: the one last applied to this home stays
    hub: str | None = None
    host_id: str | None = None
    dagster_postgres: str | None = None  # the Dagster instance's PostgreSQL URL, password masked (None: SQLite)


def initialise(
    home: str | os.PathLike | None = None, registry_path: str | os.PathLike | None = None, *, group_access: bool = False,
    hub: str | None = None,
    dagster_postgres: str | None = None,
) -> InitResult:
    """Create or upgrade ``home``; upsert the registry; publish rules when none are usable or the
    registry changed what they are built from. Idempotent; never deletes logs or history.

    Without ``registry_path`` the registry last applied to ``home`` is kept (the shipped one
    only for a new home): re-running ``routing init`` never undoes a ``--registry`` change.
    The registry file is validated whole before anything is created or written. When the
    newest rule set is unusable, a new one is published from the newest usable one (or from
    the registry), so ``routing init`` also repairs a home.

    A new home is private (``0700``; files ``0600``) whatever the umask; ``group_access`` makes
    it ``2770`` (files ``0660``) for a team that shares it: everything created in it then
    follows the home's mode.

    ``hub`` ties the home to a hub (``s3://bucket/prefix`` or an absolute path, see
    :mod:`routing_runtime.hub`): the hub is checked first (this home is registered there, and
    read back), so a hub that is down or refuses the credentials changes nothing. The home's
    host id, its name on the hub, is made once and kept.

    ``dagster_postgres`` (a ``postgresql://`` URL) moves the home's Dagster instance (runs, event
    log, schedules) into that database, checked to answer before anything is written; without it
    the instance stays where it is (SQLite under ``dagster_home/`` unless set before).
    """
    given = ModelRegistry.load(Path(registry_path)) if registry_path else None
    hub_ref = Hub.parse(hub) if hub is not None else None
    postgres_url = check_dagster_postgres(dagster_postgres) if dagster_postgres is not None else None
    home_path = resolve_home(home)
    host_id = _register_on_hub(home_path, hub_ref) if hub_ref is not None else None
    _create_home(home_path, group_access)
    for table in INBOX_TABLES:
        safe_fs.ensure_dir(home_path, "inbox", table)
    safe_fs.refuse_linked_database(home_path, DB_NAME)
    safe_fs.create_private_file(home_path, db_path(home_path))

    with Store.open(db_path(home_path)) as db:
        previous = db.schema_version()
        version = db.migrate()
        with db.transaction():
            # Read inside the write transaction: of two first inits at once, one applies the shipped registry.
            kept = given is None and db.has_models()
            if not kept:
                db.upsert_registry(given or ModelRegistry.load_default())
            if postgres_url is not None:
                db.set_dagster_postgres_url(postgres_url)
        effective = db.registry()
        rule_set_version, published = _publish_if_changed(db, effective)
        count = db.model_counts()[1]
        if hub_ref is not None and host_id is not None:
            db.tie_to_hub(hub_ref.url, host_id)
        tie = db.hub_tie()
        stored_url = db.dagster_postgres_url()
    masked = masked_url(stored_url) if stored_url else None
    return InitResult(home_path, version, previous, count, rule_set_version, published, effective.source, kept,
                      hub=tie[0] if tie else None, host_id=tie[1] if tie else None, dagster_postgres=masked)


def _register_on_hub(home: Path, hub: Hub) -> str:
    """Write this home's entry on ``hub`` before anything local changes: a hub that is down or
    refuses the credentials fails ``routing init`` with nothing written. Returns the host id
    (the home's own when it already has one)."""
    tie = None
    if db_path(home).exists():
        with Store.open(db_path(home), read_only=True) as db:
            tie = db.hub_tie() if db.schema_version() else None
    host_id = tie[1] if tie else new_host_id()
    hub.register_host(host_id, {"host_id": host_id, "hostname": socket.gethostname(), "home": str(home),
                                "registered_at": utc_timestamp()})
    return host_id


def new_host_id() -> str:
    """A home's name on a hub: the machine's name (readable in the hub's listing) and a random
    suffix (two homes on one machine, or cloned containers, never share a name)."""
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40].strip("-") or "host"
    return f"{name}-{uuid.uuid4().hex[:8]}"


#: URL schemes of ``--dagster-postgres`` (SQLAlchemy, under dagster-postgres, knows only the first).
POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_EXTRA_HINT = "--dagster-postgres needs the [postgres] extra: pip install 'routing-runtime[postgres]'"


def parse_postgres_url(value: str) -> str:
    """``--dagster-postgres``'s URL, checked for a scheme, a host and a database name, and spelled
    ``postgresql://`` (SQLAlchemy refuses ``postgres://``). Errors show the password masked.

    >>> parse_postgres_url("postgres://dagster:pw@db.internal:5432/routing")
    'postgresql://dagster:pw@db.internal:5432/routing'
    >>> parse_postgres_url("mysql://u:secret@h/db")
    Traceback (most recent call last):
    ...
    ValueError: --dagster-postgres='mysql://u:***@h/db': the scheme must be postgresql:// (or postgres://)
    """
    from urllib.parse import urlsplit

    shown = masked_url(value)
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"--dagster-postgres={shown!r} is not a URL ({exc}): use postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ValueError(f"--dagster-postgres={shown!r}: the scheme must be postgresql:// (or postgres://)")
    if not parts.hostname:
        raise ValueError(f"--dagster-postgres={shown!r} names no host: use postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    if not parts.path.strip("/") or "/" in parts.path.strip("/"):
        raise ValueError(f"--dagster-postgres={shown!r} names no database: end it with /DATABASE")
    if port == 0:
        raise ValueError(f"--dagster-postgres={shown!r}: port 0 is not a server's port")
    return "postgresql" + value[len(parts.scheme):]


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and ``routing status``.

    >>> masked_url("postgresql://dagster:s3cret@db:5432/routing")
    'postgresql://dagster:***@db:5432/routing'
    >>> masked_url("postgresql://db/routing")
    'postgresql://db/routing'
    """
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{location}"


def check_dagster_postgres(value: str) -> str:
    """``value`` parsed (:func:`parse_postgres_url`) and its server shown to answer: it accepts the
    user and password and has the database. One line that names the flag when it does not."""
    url = parse_postgres_url(value)
    reason = postgres_refusal(url)
    if reason is not None:
        raise ValueError(
            f"--dagster-postgres={masked_url(url)!r}: the server does not answer ({reason}):"
            " check the host, port, user, password and that the database exists; nothing was changed"
        )
    return url


def postgres_refusal(url: str) -> str | None:
    """Why the PostgreSQL server at ``url`` does not take a connection (libpq's reason, which names
    the host and user but never the password, on one line), or None when it does."""
    try:
        import psycopg2  # the [postgres] extra's driver: only a home with a PostgreSQL instance loads it
    except ImportError:
        raise RuntimeError(POSTGRES_EXTRA_HINT) from None
    try:
        psycopg2.connect(url, connect_timeout=10).close()
    except psycopg2.Error as exc:
        return " ".join(str(exc).split())
    return None


def _create_home(home: Path, group_access: bool) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(home, safe_fs.PRIVATE_DIR_MODE)
        os.chmod(home, safe_fs.PRIVATE_DIR_MODE)  # mkdir's mode is cut by the umask, never widened
    except FileExistsError:
        if not home.is_dir():
            raise NotADirectoryError(f"{home} exists and is not a folder: choose another ROUTING_HOME") from None
    if group_access:
        os.chmod(home, safe_fs.GROUP_DIR_MODE)
        for path in [p for p in home.rglob("*") if not p.is_symlink()]:
            os.chmod(path, safe_fs.GROUP_DIR_MODE if path.is_dir() else safe_fs.file_mode(home))


def registry_fingerprint(registry: ModelRegistry) -> str:
    payload = {
        "models": [asdict(m) for m in registry.models],
        "policies": {t.value: asdict(p) for t, p in sorted(registry.task_policies.items())},
        "learning": asdict(registry.learning),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _publish_if_changed(db: Store, registry: ModelRegistry) -> tuple[int, bool]:
    fingerprint = registry_fingerprint(registry)
    newest = db.published_marker()  # read first: a publish after it is seen by the precondition below
    usable, note = db.load_usable_rule_set()
    if db.has_hub_rule_set():
        # A host that took a rule set from its hub takes every version from there (a local one would
        # take a number the hub gives to another set); the router applies the registry's enabled
        # flags to the served set, and falls back to registry order if it cannot serve it.
        return (usable.version if usable.version is not None else newest[1] or 0), False
    # Registry-order rules (no usable set) are not published ones: publish them.
    current = usable if usable.version is not None else None
    if current is not None and not note and current.inputs.get("registry_fingerprint") == fingerprint:
        return current.version, False
    inputs = {"registry_fingerprint": fingerprint, "registry_source": registry.source}

    def nobody_published_meanwhile(locked: Store) -> None:
        # Several `routing init` at once on a new home: the first publishes, the others see it.
        if locked.published_marker() != newest:
            raise _PublishedMeanwhile()

    try:
        if current is None or current.source == "registry":
            rows = build_rules(registry_estimates(registry), registry)
            return db.publish_rule_set(rows, source="registry", inputs=inputs, precondition=nobody_published_meanwhile), True
        estimates, probabilities = _carry_over(current, registry)
        inputs["carried_over_from"] = current.version
        rows = build_rules(estimates, registry, probabilities)
        return db.publish_rule_set(
            rows, source="registry-update", as_of=current.as_of, inputs=inputs, precondition=nobody_published_meanwhile,
        ), True
    except _PublishedMeanwhile:
        return _publish_if_changed(db, registry)


class _PublishedMeanwhile(Exception):
    """Another process published between our read and our write transaction: decide again."""


def _carry_over(current: RuleSet, registry: ModelRegistry):
    """Keep learned estimates, apply the registry's enabled flags, policies and new models."""
    priors = registry_estimates(registry)
    learned = {(r.task_type, r.model_id): r for r in current.rows if r.preference is RoutingPreference.QUALITY}
    estimates: dict[TaskType, list[ModelEstimate]] = {}
    for task, task_priors in priors.items():
        estimates[task] = []
        for prior in task_priors:
            row = learned.get((task, prior.model_id))
            if row is None:
                estimates[task].append(prior)
                continue
            estimates[task].append(ModelEstimate(
                model_id=prior.model_id, task_type=task, expected_quality=row.expected_quality,
                expected_cost_usd=row.expected_cost_usd, expected_latency_ms=row.expected_latency_ms,
                expected_cost_per_1k=row.expected_cost_per_1k, is_specialized=prior.is_specialized,
                is_enabled=prior.is_enabled,
            ))
    enabled = {m.id for m in registry.models if m.enabled}
    probabilities: dict = {}
    for r in current.rows:
        if r.selection_probability > 0 and r.model_id in enabled:
            probabilities.setdefault((r.task_type, r.preference), {})[r.model_id] = r.selection_probability
    return estimates, probabilities


def home_status(home: str | os.PathLike | None = None) -> dict:
    """What an operator wants to know about a home, read-only (works on a read-only home)."""
    from routing_runtime import safe_fs

    home_path = resolve_home(home)
    if not db_path(home_path).exists():
        raise NotInitialisedError(f"{home_path} is not initialised: run `routing init --home {home_path}`")
    with Store.open(db_path(home_path), read_only=True) as db:
        rule_set, note = db.load_usable_rule_set(home_path)
        settings = db.settings()
        enabled, total = db.model_counts()
        logs = db.log_summary()
        classified = db.classification_summary(CLASSIFIED_MARK, LOW_CONFIDENCE_MARK)
        version = db.schema_version()
        quarantined, held = db.quarantine_summary()
        last_learn = db.last_learn()
        postgres_url = db.dagster_postgres_url()
    inbox = {
        table: len(safe_fs.list_files(home_path, home_path / "inbox" / table, set_aside_links=False))
        for table in INBOX_TABLES
    }
    return {
        "home": str(home_path), "schema_version": version,
        "rule_set": {"version": rule_set.version, "source": rule_set.source, "as_of": rule_set.as_of,
                     "created_at": rule_set.created_at, "note": note},
        "learned_through": settings.get("learned_through"),
        "hub": {"url": settings["hub_url"], "host_id": settings.get("host_id")} if "hub_url" in settings else None,
        "models": {"enabled": enabled, "disabled": total - enabled},
        "logs": logs, "inbox": inbox,
        "classified_decisions": {**classified, "low_confidence_below": LOW_CONFIDENCE},
        "last_learn": None if last_learn is None else {
            k: last_learn.get(k) for k in ("status", "as_of", "finished_at", "problems", "rule_set_version", "tables")
        },
        "quarantined": quarantined,
        "held_days": held,
        "dagster_storage": {"kind": "postgres", "url": masked_url(postgres_url)} if postgres_url
        else {"kind": "sqlite", "url": None},
        "set_aside": len(safe_fs.list_files(home_path, home_path / safe_fs.SET_ASIDE, set_aside_links=False))
        + len(safe_fs.list_dirs(home_path / safe_fs.SET_ASIDE)),
    }
