"""Creating and upgrading a ``ROUTING_HOME``: ``routing init`` as a function."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from routing_runtime import safe_fs, store
from routing_runtime.home import LAKE_DIR, NotInitialisedError, db_path, resolve_home
from routing_runtime.registry import LearningSettings, ModelConfig, ModelRegistry, RegistryError, TaskPolicy, model_from_table
from routing_runtime.rules import ModelEstimate, build_rules, registry_estimates
from routing_runtime.ruleset import RuleSet, load_usable_rule_set, publish_rule_set, published_marker
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


def initialise(
    home: str | os.PathLike | None = None, registry_path: str | os.PathLike | None = None, *, group_access: bool = False,
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
    """
    given = ModelRegistry.load(Path(registry_path)) if registry_path else None
    home_path = resolve_home(home)
    _create_home(home_path, group_access)
    for table in INBOX_TABLES:
        safe_fs.ensure_dir(home_path, "inbox", table)
    safe_fs.ensure_dir(home_path, LAKE_DIR)
    safe_fs.refuse_linked_database(home_path, store.DB_NAME)
    safe_fs.create_private_file(home_path, db_path(home_path))

    conn = store.connect(db_path(home_path))
    try:
        previous = store.schema_version(conn)
        version = store.migrate(conn)
        with store.transaction(conn):
            # Read inside the write transaction: of two first inits at once, one applies the shipped registry.
            kept = given is None and conn.execute("SELECT EXISTS (SELECT 1 FROM models)").fetchone()[0] == 1
            if not kept:
                _upsert_registry(conn, given or ModelRegistry.load_default())
        effective = registry_from_db(conn)
        rule_set_version, published = _publish_if_changed(conn, effective)
        count = conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    finally:
        conn.close()
    return InitResult(home_path, version, previous, count, rule_set_version, published, effective.source, kept)


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


def _upsert_registry(conn: sqlite3.Connection, registry: ModelRegistry) -> None:
    now = store.utc_timestamp()
    conn.executemany(
        """INSERT INTO models (id, provider, specialized_for, input_cost_per_1k, output_cost_per_1k, prior_quality,
               off_specialty_prior_quality, typical_latency_ms, enabled, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, specialized_for = excluded.specialized_for,
               input_cost_per_1k = excluded.input_cost_per_1k, output_cost_per_1k = excluded.output_cost_per_1k,
               prior_quality = excluded.prior_quality, off_specialty_prior_quality = excluded.off_specialty_prior_quality,
               typical_latency_ms = excluded.typical_latency_ms, enabled = excluded.enabled, updated_at = excluded.updated_at""",
        [(m.id, m.provider, json.dumps([t.value for t in m.specialized_for]), m.input_cost_per_1k, m.output_cost_per_1k,
          m.prior_quality, m.off_specialty_prior_quality, m.typical_latency_ms, int(m.enabled), now) for m in registry.models],
    )
    conn.executemany(
        """INSERT INTO task_policies
               (task_type, min_quality_score, max_cost_per_1k, typical_input_tokens, typical_output_tokens, updated_at)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (task_type) DO UPDATE SET min_quality_score = excluded.min_quality_score,
               max_cost_per_1k = excluded.max_cost_per_1k, typical_input_tokens = excluded.typical_input_tokens,
               typical_output_tokens = excluded.typical_output_tokens, updated_at = excluded.updated_at""",
        [(t.value, p.min_quality_score, p.max_cost_per_1k, p.typical_input_tokens, p.typical_output_tokens, now)
         for t, p in registry.task_policies.items()],
    )
    conn.executemany(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [("learning", json.dumps(asdict(registry.learning))), ("registry_source", registry.source)],
    )


def registry_from_db(conn: sqlite3.Connection) -> ModelRegistry:
    """The effective registry: every model and task policy ``routing init`` has stored."""
    models = [
        _stored_model(r)
        for r in conn.execute(
            "SELECT id, provider, specialized_for, input_cost_per_1k, output_cost_per_1k, prior_quality,"
            " off_specialty_prior_quality, typical_latency_ms, enabled FROM models ORDER BY rowid"
        )
    ]
    policies = {
        TaskType(r[0]): TaskPolicy(min_quality_score=r[1], max_cost_per_1k=r[2], typical_input_tokens=r[3], typical_output_tokens=r[4])
        for r in conn.execute(
            "SELECT task_type, min_quality_score, max_cost_per_1k, typical_input_tokens, typical_output_tokens FROM task_policies"
        )
    }
    settings = dict(conn.execute("SELECT key, value FROM settings"))
    learning = LearningSettings(**json.loads(settings["learning"])) if "learning" in settings else LearningSettings()
    return ModelRegistry.from_models(models, policies, learning, settings.get("registry_source", "routing.db"))


def _stored_model(row: tuple) -> ModelConfig:
    """A ``models`` row checked as a registry file's entry is: a value written there by hand
    (text in a number column) is named with the fix, never a crash deep in learning."""
    names = ("id", "provider", "specialized_for", "input_cost_per_1k", "output_cost_per_1k", "prior_quality",
             "off_specialty_prior_quality", "typical_latency_ms", "enabled")
    table = {k: v for k, v in zip(names, row) if v is not None}
    try:
        table["specialized_for"] = json.loads(table.get("specialized_for", "[]"))
        table["enabled"] = {0: False, 1: True}.get(table.get("enabled", 1), table.get("enabled"))
        return model_from_table(table, "routing.db: models")
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"{exc}: run `routing init --registry FILE` to store a valid registry") from None


def registry_fingerprint(registry: ModelRegistry) -> str:
    payload = {
        "models": [asdict(m) for m in registry.models],
        "policies": {t.value: asdict(p) for t, p in sorted(registry.task_policies.items())},
        "learning": asdict(registry.learning),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _publish_if_changed(conn: sqlite3.Connection, registry: ModelRegistry) -> tuple[int, bool]:
    fingerprint = registry_fingerprint(registry)
    newest = published_marker(conn)  # read first: a publish after it is seen by the precondition below
    usable, note = load_usable_rule_set(conn)
    # Registry-order rules (no usable set) are not published ones: publish them.
    current = usable if usable.version is not None else None
    if current is not None and not note and current.inputs.get("registry_fingerprint") == fingerprint:
        return current.version, False
    inputs = {"registry_fingerprint": fingerprint, "registry_source": registry.source}

    def nobody_published_meanwhile(locked: sqlite3.Connection) -> None:
        # Several `routing init` at once on a new home: the first publishes, the others see it.
        if published_marker(locked) != newest:
            raise _PublishedMeanwhile()

    try:
        if current is None or current.source == "registry":
            rows = build_rules(registry_estimates(registry), registry)
            return publish_rule_set(conn, rows, source="registry", inputs=inputs, precondition=nobody_published_meanwhile), True
        estimates, probabilities = _carry_over(current, registry)
        inputs["carried_over_from"] = current.version
        rows = build_rules(estimates, registry, probabilities)
        return publish_rule_set(
            conn, rows, source="registry-update", as_of=current.as_of, inputs=inputs, precondition=nobody_published_meanwhile,
        ), True
    except _PublishedMeanwhile:
        return _publish_if_changed(conn, registry)


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
    conn = store.connect_readonly(db_path(home_path))
    try:
        rule_set, note = load_usable_rule_set(conn, home_path)
        settings = dict(conn.execute("SELECT key, value FROM settings"))
        enabled, total = conn.execute("SELECT COALESCE(SUM(enabled), 0), COUNT(*) FROM models").fetchone()
        logs = {
            table: dict(zip(("rows", "last"), conn.execute(f"SELECT COUNT(*), MAX({column}) FROM {table}").fetchone()))
            for table, column in (("routing_decisions", "created_at"), ("model_performance", "recorded_at"))
        }
        version = store.schema_version(conn)
        quarantined, held = _quarantine_summary(conn) if version >= 4 else ({}, [])
    finally:
        conn.close()
    inbox = {
        table: len(safe_fs.list_files(home_path, home_path / "inbox" / table, set_aside_links=False))
        for table in INBOX_TABLES
    }
    last_learn = json.loads(settings["last_learn"]) if "last_learn" in settings else None
    return {
        "home": str(home_path), "schema_version": version,
        "rule_set": {"version": rule_set.version, "source": rule_set.source, "as_of": rule_set.as_of,
                     "created_at": rule_set.created_at, "note": note},
        "learned_through": settings.get("learned_through"),
        "models": {"enabled": enabled, "disabled": total - enabled},
        "logs": logs, "inbox": inbox,
        "last_learn": None if last_learn is None else {
            k: last_learn.get(k) for k in ("status", "as_of", "finished_at", "problems", "rule_set_version", "tables")
        },
        "quarantined": quarantined,
        "held_days": held,
        "set_aside": len(safe_fs.list_files(home_path, home_path / safe_fs.SET_ASIDE, set_aside_links=False))
        + len(safe_fs.list_dirs(home_path / safe_fs.SET_ASIDE)),
    }


def _quarantine_summary(conn: sqlite3.Connection) -> tuple[dict[str, int], list[dict]]:
    """Rows quarantined per table (learned days plus undatable rows of staged drops), and the
    days held out of learning with the reason and the command that releases them."""
    decisions, performance = conn.execute(
        "SELECT COALESCE(SUM(decisions_quarantined), 0), COALESCE(SUM(performance_quarantined), 0) FROM learned_days"
    ).fetchone()
    quarantined = {"routing_decisions": decisions, "model_performance": performance}
    for table, n in conn.execute("SELECT table_name, SUM(quarantined) FROM inbox_drops GROUP BY table_name"):
        quarantined[table] = quarantined.get(table, 0) + n
    held = [{"day": day, "reason": reason} for day, reason in conn.execute(
        "SELECT day, held FROM learned_days WHERE held IS NOT NULL ORDER BY day"
    )]
    return quarantined, held
