"""routing.db: migrations, idempotent init, rule-set publishing and live refresh."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from importlib import resources

import pytest

from conftest import db_connect
from routing_runtime import ModelRegistry, ModelRouter, RoutingPreference, TaskType
from routing_runtime import store
from routing_runtime.admin import initialise
from routing_runtime.rules import build_rules, registry_estimates
from routing_runtime.home import NotInitialisedError
from routing_runtime.store import LearnedDay, Store

SHIPPED_TOML = resources.files("routing_runtime").joinpath("default_registry.toml").read_text(encoding="utf-8")
N_SHIPPED = len(ModelRegistry.load_default().models)
FULL_COUNT = len(TaskType) * len(RoutingPreference) * N_SHIPPED


def shipped_with_disabled(model_id: str) -> str:
    marker = f'id = "{model_id}"'
    assert marker in SHIPPED_TOML
    head, tail = SHIPPED_TOML.split(marker, 1)
    return head + marker + "\nenabled = false" + tail


# ----------------------------------------------------------------------------- migration


LEGACY_RULES = [
    ("r1", "math", "old-math-model", 1, 1, 0.8, 0.02, 1),
    ("r2", "math", "gpt-4o", 2, 0, 0.8, 0.02, 1),
]
LEGACY_DECISIONS = [
    ("d1", "exec-1", "math", "old-math-model", "legacy reason", '["gpt-4o"]', "2024-01-02 03:04:05"),
    ("d2", "exec-2", "debugging", "gpt-4o", None, "[]", "2024-01-03 00:00:00"),
    ("d3", "exec-2", "general", "gpt-4o", "because", '["a", "b"]', "2024-01-04 23:59:59"),
]
LEGACY_PERFORMANCE = [
    ("p1", "old-math-model", "math", "success", 0.9, 1200, 800, 0.001, "2024-01-02 03:05:00"),
    ("p2", "gpt-4o", "debugging", "failure", None, None, None, None, "2024-01-03 00:01:00"),
]


def _make_schema_1_home(tmp_path):
    home = tmp_path / "legacy-home"
    home.mkdir()
    conn = store.connect(home / store.DB_NAME)
    assert store.migrate(conn, 1) == 1
    with store.transaction(conn):
        conn.executemany(
            "INSERT INTO model_routing_rules (id, task_type, model_id, priority, is_specialized, min_quality_score,"
            " max_cost_per_1k, is_enabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", LEGACY_RULES)
        conn.executemany(
            "INSERT INTO routing_decisions (id, agent_execution_id, task_type, selected_model, selection_reason,"
            " alternatives_considered, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", LEGACY_DECISIONS)
        conn.executemany(
            "INSERT INTO model_performance (id, model_id, task_type, outcome, quality_score, latency_ms, tokens_used,"
            " cost_usd, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", LEGACY_PERFORMANCE)
    conn.close()
    return home


def test_migration_from_schema_1_keeps_rows_and_legacy_rules(tmp_path):
    home = _make_schema_1_home(tmp_path)
    result = initialise(home)
    assert result.previous_schema_version == 1
    assert result.schema_version == store.SCHEMA_VERSION
    assert result.published

    conn = db_connect(home)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        decisions = conn.execute(
            "SELECT id, agent_execution_id, task_type, selected_model, selection_reason, alternatives_considered,"
            " created_at FROM routing_decisions ORDER BY id").fetchall()
        assert [tuple(r) for r in decisions] == LEGACY_DECISIONS
        performance = conn.execute(
            "SELECT id, model_id, task_type, outcome, quality_score, latency_ms, tokens_used, cost_usd, recorded_at"
            " FROM model_performance ORDER BY id").fetchall()
        assert [tuple(r) for r in performance] == LEGACY_PERFORMANCE
        # New columns exist on the old rows, empty.
        assert conn.execute("SELECT COUNT(*) FROM routing_decisions WHERE propensity IS NULL").fetchone()[0] == 3
        assert conn.execute("SELECT COUNT(*) FROM model_performance WHERE decision_id IS NULL").fetchone()[0] == 2

        rule_sets = {r["version"]: r["source"] for r in conn.execute("SELECT version, source FROM rule_sets")}
        assert rule_sets[0] == "legacy"
        assert result.rule_set_version in rule_sets and result.rule_set_version >= 1
        assert rule_sets[result.rule_set_version] == "registry"
        legacy = conn.execute(
            "SELECT id, task_type, model_id, priority, is_specialized, min_quality_score, max_cost_per_1k, is_enabled"
            " FROM model_routing_rules WHERE rule_set_version = 0 ORDER BY id").fetchall()
        assert [tuple(r) for r in legacy] == LEGACY_RULES
        served = conn.execute("SELECT DISTINCT rule_set_version FROM current_routing_rules").fetchall()
        assert [r[0] for r in served] == [result.rule_set_version]
        assert conn.execute(
            "SELECT COUNT(*) FROM current_routing_rules WHERE model_id = 'old-math-model'").fetchone()[0] == 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()

    with ModelRouter.open(home, seed=1) as router:
        assert router.rule_set.version == result.rule_set_version
        assert router.rule_set.source == "registry"
        assert len(router.rule_set.rows) == FULL_COUNT
        assert "old-math-model" not in {r.model_id for r in router.rule_set.rows}
        for _ in range(50):
            assert router.select_model("math").model_id != "old-math-model"


def test_migration_of_empty_schema_1_has_no_legacy_set(tmp_path):
    home = tmp_path / "empty-v1"
    home.mkdir()
    conn = store.connect(home / store.DB_NAME)
    store.migrate(conn, 1)
    conn.close()
    result = initialise(home)
    conn = db_connect(home)
    try:
        assert conn.execute("SELECT COUNT(*) FROM rule_sets WHERE source = 'legacy'").fetchone()[0] == 0
        assert result.rule_set_version == 1
    finally:
        conn.close()


def test_database_newer_than_the_package_is_refused(tmp_path):
    home = tmp_path / "future"
    initialise(home)
    conn = store.connect(home / store.DB_NAME)
    conn.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        initialise(home)


# ----------------------------------------------------------------------------- init


def test_initialise_is_idempotent(tmp_path, write_registry):
    home = tmp_path / "home"
    first = initialise(home)
    assert first.published and first.rule_set_version == 1
    assert first.previous_schema_version == 0 and first.schema_version == store.SCHEMA_VERSION
    assert first.models == N_SHIPPED
    with ModelRouter.open(home) as router:
        d = router.select_model("math")
        router.record_performance(d.decision_id, "success")
    second = initialise(home)
    assert not second.published
    assert second.rule_set_version == first.rule_set_version
    # The same registry content from a file is no change either.
    third = initialise(home, write_registry(SHIPPED_TOML, name="copy.toml"))
    assert not third.published and third.rule_set_version == first.rule_set_version
    conn = db_connect(home)
    try:
        assert conn.execute("SELECT COUNT(*) FROM rule_sets").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM model_routing_rules").fetchone()[0] == FULL_COUNT
        assert conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == N_SHIPPED
        assert conn.execute("SELECT COUNT(*) FROM routing_decisions").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM model_performance").fetchone()[0] == 1
    finally:
        conn.close()
    # The lake is made by the first learn (and never under a home tied to a hub).
    for sub in ("inbox/routing_decisions", "inbox/model_performance"):
        assert (home / sub).is_dir()


def test_changed_registry_publishes_a_new_version(home, write_registry):
    path = write_registry(shipped_with_disabled("deepseek-chat"), name="no-deepseek.toml")
    result = initialise(home, path)
    assert result.published and result.rule_set_version == 2
    with ModelRouter.open(home, seed=1) as router:
        rules = router.rule_set
        assert rules.version == 2
        deepseek = [r for r in rules.rows if r.model_id == "deepseek-chat"]
        assert len(deepseek) == len(TaskType) * len(RoutingPreference)
        assert all(not r.is_enabled and r.selection_probability == 0 for r in deepseek)
        others = [r for r in rules.rows if r.model_id != "deepseek-chat"]
        assert all(r.is_enabled for r in others)
        picks = Counter(router.select_model(t, "balanced").model_id for t in TaskType for _ in range(30))
        assert "deepseek-chat" not in picks
    # Re-running with the same file, or with none (the last applied stays), changes nothing;
    # going back to the shipped one publishes again.
    assert not initialise(home, path).published
    assert not initialise(home).published
    back = initialise(home, write_registry(SHIPPED_TOML, name="shipped.toml"))
    assert back.published and back.rule_set_version == 3
    conn = db_connect(home)
    try:
        old = conn.execute(
            "SELECT COUNT(*) FROM model_routing_rules WHERE rule_set_version = 1").fetchone()[0]
        assert old == FULL_COUNT, "history of rule sets is kept"
    finally:
        conn.close()


def test_journal_mode_is_wal(home):
    conn = db_connect(home)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        conn.close()


# ----------------------------------------------------------------------------- refresh and atomicity


def test_open_router_picks_up_a_new_rule_set_without_restart(home, write_registry):
    path = write_registry(shipped_with_disabled("gpt-4o-mini"), name="no-mini.toml")
    with ModelRouter.open(home, seed=1) as router:
        assert router.select_model("math").rule_set_version == 1
        proc = subprocess.run(
            [sys.executable, "-m", "routing_runtime.cli", "init", "--home", str(home), "--registry", str(path)],
            capture_output=True, text=True, timeout=60, cwd=home.parent,
        )
        assert proc.returncode == 0, proc.stderr
        published_at = time.monotonic()
        seen = None
        while time.monotonic() - published_at < 3.0:
            seen = router.select_model("math").rule_set_version
            if seen == 2:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - published_at
        assert seen == 2, "the open router never picked up rule set v2"
        assert elapsed <= 1.5, f"picked up after {elapsed:.2f} s"
        assert router.rule_set.version == 2
        for _ in range(200):
            assert router.select_model("general", "cost_efficient").model_id != "gpt-4o-mini"


def test_publishing_is_atomic_for_concurrent_readers(home):
    registry = ModelRegistry.load_default()
    rows = build_rules(registry_estimates(registry), registry)
    assert len(rows) == FULL_COUNT
    done = threading.Event()
    errors: list[BaseException] = []
    observations: list[tuple[int, int]] = []

    def reader():
        db = Store.open(home / store.DB_NAME)
        try:
            while True:
                finished = done.is_set()
                rule_set = db.load_rule_set(home=home)
                per_slot = Counter((r.task_type, r.preference) for r in rule_set.rows)
                observations.append((rule_set.version, len(rule_set.rows)))
                if len(rule_set.rows) != FULL_COUNT or set(per_slot.values()) != {N_SHIPPED}:
                    raise AssertionError(f"v{rule_set.version}: {len(rule_set.rows)} rows")
                if finished:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            db.close()

    thread = threading.Thread(target=reader)
    thread.start()
    writer = Store.open(home / store.DB_NAME)
    try:
        versions = []
        for i in range(20):
            versions.append(writer.publish_rule_set(rows, source="test", inputs={"i": i}))
            time.sleep(0.005)
    finally:
        writer.close()
        done.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert not errors, errors
    assert versions == list(range(2, 22))
    seen_versions = [v for v, _ in observations]
    assert all(n == FULL_COUNT for _, n in observations)
    assert seen_versions == sorted(seen_versions), "a reader never goes back to an older version"
    assert seen_versions[-1] == 21
    assert len(set(seen_versions)) >= 3, "the reader should have interleaved with the publisher"


# ----------------------------------------------------------------------------- registry change after learning


def _learned_then_disabled(home, write_registry, model_id):
    """Publish a 'learned' rule set (registry estimates stand in for posteriors), then run
    init with a registry that disables ``model_id``: the operator's path after a nightly run."""
    registry = ModelRegistry.load_default()
    with Store.open(home / store.DB_NAME) as db:
        learned = db.publish_rule_set(build_rules(registry_estimates(registry), registry),
                                      source="learned", as_of="2025-01-31", inputs={"test": True})
    result = initialise(home, write_registry(shipped_with_disabled(model_id), name="disable.toml"))
    assert result.published and result.rule_set_version == learned + 1
    return learned, result.rule_set_version


def test_disabling_a_model_after_learning_is_published_and_respected(home, write_registry):
    learned, version = _learned_then_disabled(home, write_registry, "gpt-4o")
    with ModelRouter.open(home, seed=1) as router:
        rules = router.rule_set
        assert rules.version == version and rules.source != "legacy"
        assert rules.as_of == "2025-01-31", "learned evidence day is carried over"
        gpt4o = [r for r in rules.rows if r.model_id == "gpt-4o"]
        assert len(gpt4o) == len(TaskType) * len(RoutingPreference)
        assert all(not r.is_enabled for r in gpt4o)
        picks = Counter()
        for i in range(2000):
            picks[router.select_model(list(TaskType)[i % 8], list(RoutingPreference)[i % 4]).model_id] += 1
        assert "gpt-4o" not in picks


def test_disabled_model_after_learning_has_zero_probability(home, write_registry):
    _learned_then_disabled(home, write_registry, "gpt-4o")
    with ModelRouter.open(home, seed=1) as router:
        rules = router.rule_set
        assert all(r.selection_probability == 0 for r in rules.rows if r.model_id == "gpt-4o")
        probabilities = {r.model_id: r.selection_probability
                         for r in rules.models_for(TaskType.MATH, RoutingPreference.BALANCED)}
        d = router.select_model(TaskType.MATH, RoutingPreference.BALANCED)
        assert d.propensity == pytest.approx(probabilities[d.model_id], abs=1e-5)


def test_registry_update_after_learning_keeps_ineligible_models_at_zero(home, write_registry):
    learned, _ = _learned_then_disabled(home, write_registry, "gpt-4o")
    with Store.open(home / store.DB_NAME) as db:
        before = {(r.task_type, r.preference, r.model_id): r.selection_probability
                  for r in db.load_rule_set(learned).rows}
        after = db.load_rule_set(home=home)
    leaked = [(r.task_type.value, r.preference.value, r.model_id, r.selection_probability)
              for r in after.rows
              if r.is_enabled and not r.is_eligible and before[(r.task_type, r.preference, r.model_id)] == 0
              and r.selection_probability > 0]
    assert not leaked, leaked[:5]


def test_a_database_made_from_the_story_schema_by_hand_is_upgraded(tmp_path):
    """Regression: tables from the story's SQL but user_version 0 made `routing init` crash."""
    home = tmp_path / "hand-made"
    home.mkdir()
    conn = sqlite3.connect(home / "routing.db")
    conn.executescript(store.MIGRATIONS[0])
    conn.execute("INSERT INTO routing_decisions (id, agent_execution_id, task_type, selected_model) VALUES ('d1', 'a', 'math', 'gpt-4o')")
    conn.commit()
    conn.close()
    result = initialise(home)
    assert result.schema_version == store.SCHEMA_VERSION
    conn = sqlite3.connect(home / "routing.db")
    assert conn.execute("SELECT id FROM routing_decisions").fetchall() == [("d1",)]


# ----------------------------------------------------------------------------- publishing what was learned


def _learned_day(day: str, fingerprint: str | None = "built-from") -> LearnedDay:
    return LearnedDay(day, fingerprint, decisions_quarantined=1, performance_quarantined=2, held=None)


def test_rules_frontier_and_learned_days_are_published_together(home):
    registry = ModelRegistry.load_default()
    rows = build_rules(registry_estimates(registry), registry)
    with Store.open_home(home) as db:
        version = db.publish_rule_set(
            rows, source="learned", as_of="2025-01-05", learned_through="2025-01-05",
            learned_days=[_learned_day("2025-01-04"), _learned_day("2025-01-05")],
        )
        assert db.load_rule_set().version == version
        assert str(db.learned_through()) == "2025-01-05"
        assert db.learned_fingerprints() == {"2025-01-04": "built-from", "2025-01-05": "built-from"}
        assert db.quarantine_summary()[0] == {"routing_decisions": 2, "model_performance": 4}
        # A backfill of an earlier day publishes its rules but never moves the frontier back.
        db.publish_rule_set(rows, source="learned", as_of="2025-01-02", learned_through="2025-01-02",
                            learned_days=[_learned_day("2025-01-02")])
        assert str(db.learned_through()) == "2025-01-05"
        assert set(db.learned_fingerprints()) == {"2025-01-02", "2025-01-04", "2025-01-05"}


def test_a_learned_day_that_cannot_be_recorded_publishes_nothing(home):
    """One transaction: when the ledger write fails, neither the rules nor the frontier move."""
    registry = ModelRegistry.load_default()
    rows = build_rules(registry_estimates(registry), registry)
    with Store.open_home(home) as db:
        before = db.published_marker()
        with pytest.raises(store.StoreError, match="NOT NULL"):
            db.publish_rule_set(rows, source="learned", as_of="2025-01-05", learned_through="2025-01-05",
                                learned_days=[_learned_day("2025-01-05", fingerprint=None)])
        assert db.published_marker() == before
        assert db.learned_through() is None and db.learned_fingerprints() == {}


def test_open_home_names_routing_init_for_a_missing_or_old_database(tmp_path):
    with pytest.raises(NotInitialisedError, match=r"is not initialised: run `routing init --home"):
        Store.open_home(tmp_path / "nowhere")
    home = tmp_path / "old"
    home.mkdir()
    with Store.open(home / store.DB_NAME) as db:
        db.migrate(1)
    for read_only in (False, True):
        with pytest.raises(NotInitialisedError, match=rf"schema version 1, the pipeline needs {store.SCHEMA_VERSION}: run `routing init"):
            Store.open_home(home, read_only=read_only, needed_by="the pipeline")


# ----------------------------------------------------------------------------- one place for SQL


def test_no_sql_outside_the_store():
    """routing_runtime/store.py is the only module of the product that imports sqlite3 or runs
    SQL: a second store (a hub) then replaces one module, not nine."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    allowed = root / "routing_runtime" / "store.py"
    offences = []
    for folder in ("routing_runtime", "pipelines", "assets"):
        for path in sorted((root / folder).rglob("*.py")):
            if path == allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
                if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlite3" for a in node.names):
                    offences.append(f"{where}: import sqlite3")
                elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
                    offences.append(f"{where}: from sqlite3 import")
                elif (
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute", "executemany", "executescript")
                ):
                    offences.append(f"{where}: .{node.func.attr}(")
    assert not offences, "SQL outside routing_runtime/store.py (move it into a Store method):\n" + "\n".join(offences)
