"""Issue 7, the learning half: nothing let in from outside the home, nothing wedged, nothing lost
silently. Every test is named after the fault it pins; all go through `routing learn` (API or
CLI), `routing status` and the files under a temporary ROUTING_HOME."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dagster")
pl = pytest.importorskip("polars")

from routing_pipelines import logs, plan  # noqa: E402
from routing_pipelines.lake import Lake  # noqa: E402
from routing_pipelines.learn import learn  # noqa: E402
from routing_runtime import ModelRouter  # noqa: E402
from routing_runtime.admin import initialise  # noqa: E402
from routing_runtime.cli import main  # noqa: E402
from routing_runtime.faults import CRASH_EXIT_CODE  # noqa: E402
from routing_runtime.store import Store  # noqa: E402
from routing_runtime.registry import LearningSettings  # noqa: E402

D1, D2, D3, D4 = (dt.date(2026, 5, d) for d in (1, 2, 3, 4))
MODELS = ("gpt-4o", "gpt-4o-mini", "codestral-2508")
SECRET = "sk-routing-test-secret-0123456789"


def traffic(home: Path, day: dt.date, n: int = 30, seed: int = 0) -> None:
    """``n`` decisions with outcomes on ``day``; quality depends on the model (deterministic)."""
    quality = {"gpt-4o": 0.9, "gpt-4o-mini": 0.6, "codestral-2508": 0.8}
    with ModelRouter.open(home, seed=seed + day.toordinal()) as router:
        for i in range(n):
            at = dt.datetime.combine(day, dt.time(8, 0)) + dt.timedelta(minutes=7 * i)
            d = router.select_model(("math", "debugging", "general")[i % 3], "balanced", at=at)
            router.record_performance(
                d.decision_id, "success", quality_score=quality.get(d.model_id, 0.7), latency_ms=800 + 10 * i,
                tokens_used=1200, cost_usd=0.002, at=at + dt.timedelta(seconds=5),
            )


def outcome_lines(model: str, day: dt.date, n: int, *, prefix: str = "late", time_key: str = "recorded_at", q: float = 0.95) -> str:
    rows = [
        {"id": f"{prefix}-{i}", "model_id": model, "task_type": "math", "outcome": "success", "quality_score": q,
         "latency_ms": 700, "tokens_used": 900, "cost_usd": 0.001,
         time_key: f"{day}T1{i % 10}:00:00Z"}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows)


def drop(home: Path, name: str, text: str, table: str = "model_performance") -> Path:
    path = home / "inbox" / table / name
    path.write_text(text, encoding="utf-8")
    return path


def current_rules(home: Path) -> list[tuple]:
    """The rule set in force, without its version and ids: what a router would serve."""
    conn = sqlite3.connect(home / "routing.db")
    try:
        return conn.execute(
            "SELECT task_type, preference, model_id, priority, selection_probability, round(expected_quality, 9),"
            " round(expected_latency_ms, 6), is_eligible FROM current_routing_rules ORDER BY 1, 2, 4"
        ).fetchall()
    finally:
        conn.close()


def outcomes_seen(home: Path) -> int:
    conn = sqlite3.connect(home / "routing.db")
    try:
        inputs = conn.execute("SELECT inputs FROM rule_sets ORDER BY version DESC LIMIT 1").fetchone()[0]
    finally:
        conn.close()
    return json.loads(inputs).get("outcomes_seen", 0)


def cli_json(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def learn_subprocess(home: Path, as_of: dt.date, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "routing_runtime.cli", "learn", "--home", str(home), "--as-of", str(as_of), "--json"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def learned_home(tmp_path: Path) -> Path:
    """Three days of traffic, learned through D3."""
    home = tmp_path / "home"
    initialise(home)
    for day in (D1, D2, D3):
        traffic(home, day)
    assert learn(home, D3, quiet=True).success
    return home


# ----------------------------------------------------------------------------- item 1: links

def test_symlinked_drop_to_proc_environ_is_set_aside_never_read(learned_home: Path, capsys, monkeypatch):
    monkeypatch.setenv("ROUTING_TEST_API_KEY", SECRET)
    (learned_home / "inbox" / "model_performance" / "evil.jsonl").symlink_to("/proc/self/environ")
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--as-of", str(D3), "--json")
    assert code == 0 and result["status"] == "published"
    assert any("evil.jsonl" in p and "symlink" in p for p in result["problems"])
    for path in learned_home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), path
    assert not (learned_home / "inbox" / "model_performance" / "evil.jsonl").exists()
    assert [p.is_symlink() for p in (learned_home / "set_aside").iterdir()] == [True]


def test_symlinked_drop_to_a_file_outside_the_home_is_not_learned(learned_home: Path, tmp_path: Path):
    outside = tmp_path / "outside.jsonl"
    outside.write_text(outcome_lines("gpt-4o-mini", D2, 50, prefix="outside"))
    (learned_home / "inbox" / "model_performance" / "outside.jsonl").symlink_to(outside)
    before = outcomes_seen(learned_home)
    result = learn(learned_home, D3, quiet=True)
    assert result.status == "published" and outcomes_seen(learned_home) == before
    assert outside.read_text().count("\n") == 50  # the target is never moved or touched


@pytest.mark.parametrize("linked", [
    "inbox/model_performance/ingested", "inbox/model_performance", "inbox", "lake/model_performance",
    "lake/_staged", "lake/quarantine", "lake/model_posteriors", "lake/daily_model_stats/day=2026-05-02",
])
def test_symlinked_folder_under_the_home_is_set_aside_and_nothing_is_written_outside(learned_home: Path, tmp_path: Path, linked: str):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    target = learned_home / linked
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(outside, target_is_directory=True)
    if linked.startswith("inbox"):
        ingested = learned_home / "inbox" / "model_performance"
        if not ingested.is_symlink():
            ingested.mkdir(parents=True, exist_ok=True)
            drop(learned_home, "late.jsonl", outcome_lines("gpt-4o", D2, 5))
    before = files_under(outside)
    result = learn(learned_home, D3, quiet=True)
    assert result.status == "published", result.problems
    assert files_under(outside) == before
    assert any("symlink" in p for p in result.problems)
    assert not (learned_home / linked).is_symlink()


# ----------------------------------------------------------------------------- item 2: modes

def _loose_entries(home: Path, allowed: int) -> list[str]:
    return [
        f"{p.relative_to(home)} {stat.filemode(p.lstat().st_mode)}" for p in [home, *home.rglob("*")]
        if not p.is_symlink() and p.lstat().st_mode & 0o777 & ~allowed
    ]


def test_home_files_are_not_readable_by_other_users_by_default(tmp_path: Path, capsys):
    home = tmp_path / "home"
    old = os.umask(0o022)
    try:
        assert main(["init", "--home", str(home)]) == 0
        traffic(home, D1)
        drop(home, "late.jsonl", outcome_lines("gpt-4o", D1, 3) + "not json\n")
        assert main(["learn", "--home", str(home), "--as-of", str(D1)]) == 0
    finally:
        os.umask(old)
    assert (home / "lake" / "quarantine").is_dir()
    assert _loose_entries(home, 0o700) == []


def test_learn_called_as_a_library_under_a_loose_umask_keeps_files_private(tmp_path: Path):
    home = tmp_path / "home"
    old = os.umask(0o000)
    try:
        initialise(home)
        traffic(home, D1)
        assert learn(home, D1, quiet=True).success
    finally:
        os.umask(old)
    assert _loose_entries(home, 0o700) == []


def test_home_initialised_with_group_access_is_shared_with_its_group_only(tmp_path: Path):
    home = tmp_path / "team-home"
    old = os.umask(0o022)
    try:
        assert main(["init", "--home", str(home), "--group-access"]) == 0
        traffic(home, D1)
        drop(home, "late.jsonl", outcome_lines("gpt-4o", D1, 3))
        assert main(["learn", "--home", str(home), "--as-of", str(D1)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(home.stat().st_mode) == 0o2770
    assert _loose_entries(home, 0o2770) == []
    assert (home / "routing.db").stat().st_mode & 0o060 == 0o060
    assert all(p.stat().st_mode & 0o060 for p in (home / "lake").rglob("*.parquet"))


# ----------------------------------------------------------------------------- item 3: odd home paths

@pytest.mark.parametrize("name", ["we?ird", "has#hash", "per%20cent", "all ?#% of them"])
def test_home_path_with_question_mark_hash_or_percent_learns_and_writes_nothing_outside(tmp_path: Path, name: str):
    parent = tmp_path / "parent"
    parent.mkdir()
    home = parent / name
    initialise(home)
    traffic(home, D1)
    result = learn(home, D1, quiet=True)
    assert result.success, result.problems
    assert sorted(p.name for p in parent.iterdir()) == [name]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "default-routing-home") == ["parent"]


# ----------------------------------------------------------------------------- items 5, 6: names and leftovers

@pytest.mark.parametrize("name", [
    "x" * 249 + ".jsonl",                       # 255 bytes: the longest name a filesystem allows
    "é" * 121 + ".jsonl",                       # 248 bytes of two-byte characters
    "line\nbreak and spaces.jsonl",
    "UPPER.JSONL",
    "-leading-dash.jsonl",
])
def test_drop_with_a_long_or_odd_name_is_learned(learned_home: Path, name: str):
    drop(learned_home, name, outcome_lines("gpt-4o", D2, 7, prefix=f"odd{len(name)}"))
    before = outcomes_seen(learned_home)
    result = learn(learned_home, D3, quiet=True)
    assert result.success, result.problems
    assert outcomes_seen(learned_home) == before + 7
    assert list((learned_home / "inbox" / "model_performance").glob("*.*")) == []
    for path in (learned_home / "inbox" / "model_performance" / "ingested").iterdir():
        assert len(path.name.encode()) <= 255


def test_drop_with_undecodable_bytes_in_its_name_is_learned(learned_home: Path):
    name = os.fsencode(learned_home / "inbox" / "model_performance") + b"/bad\xff\xfe-name.jsonl"
    with open(name, "wb") as handle:
        handle.write(outcome_lines("gpt-4o", D2, 4, prefix="bytes").encode())
    before = outcomes_seen(learned_home)
    result = learn(learned_home, D3, quiet=True)
    assert result.success, result.problems
    assert outcomes_seen(learned_home) == before + 4


def test_tmp_parquet_left_by_a_killed_write_is_never_read_and_is_cleaned(learned_home: Path):
    partition = Lake(learned_home).partition_dir("model_performance", D2)
    leftover = partition / ".tmp-0123-part-0.parquet"
    shutil.copy(partition / "part-0.parquet", leftover)
    stale_dir = partition.parent / f".old-day={D2}-abc"
    shutil.copytree(partition, stale_dir)
    before = outcomes_seen(learned_home)
    result = learn(learned_home, D3, quiet=True)
    assert result.success and outcomes_seen(learned_home) == before
    assert not leftover.exists() and not stale_dir.exists()


# ----------------------------------------------------------------------------- item 7: interruptions

KILL_POINTS = [
    "stage:after_staged_files", "stage:before_move",
    "ingest:routing_decisions:between_quarantine_and_rows", "ingest:model_performance:between_quarantine_and_rows",
    "lake:partition_moved_aside", "stats:after_day", "model_posteriors:after_write", "candidate_routing_rules:after_write",
    "publish:before", "after_publish", "publish:after_ledger", "publish:after_snapshot",
]


@pytest.fixture(scope="module")
def interrupted_base(tmp_path_factory) -> tuple[Path, list[tuple]]:
    """A home learned through D3, then a late drop for D1 and D4's traffic; and the rules an
    uninterrupted `routing learn --as-of D4` publishes from it."""
    base = tmp_path_factory.mktemp("interrupted") / "base"
    initialise(base)
    for day in (D1, D2, D3):
        traffic(base, day)
    assert learn(base, D3, quiet=True).success
    drop(base, "late.jsonl", outcome_lines("gpt-4o-mini", D1, 40, q=0.99))
    traffic(base, D4)
    reference = base.parent / "reference"
    shutil.copytree(base, reference, symlinks=True)
    assert learn(reference, D4, quiet=True).success
    return base, current_rules(reference)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_at_any_point_of_a_learn_then_the_next_learn_equals_an_uninterrupted_one(interrupted_base, tmp_path: Path, point: str):
    base, reference = interrupted_base
    home = tmp_path / "home"
    shutil.copytree(base, home, symlinks=True)
    killed = learn_subprocess(home, D4, ROUTING_CRASH_AT=point)
    assert killed.returncode == CRASH_EXIT_CODE, f"{point} was never reached: {killed.stdout}{killed.stderr[-2000:]}"
    result = learn(home, D4, quiet=True)
    assert result.success, result.problems
    assert current_rules(home) == reference
    late = Lake(home).read_partition("model_performance", D1)
    assert late.filter(pl.col("id").str.starts_with("late-")).height == 40
    # Nothing is left stale: a later learn of D4 would find nothing new.
    with Store.open(home / "routing.db", read_only=True) as db:
        assert plan.stale_days(home, db, logs.source_fingerprints(db)) == []


def test_killed_learn_run_is_not_left_started_in_dagster(interrupted_base, tmp_path: Path):
    import dagster as dg

    from routing_pipelines.learn import dagster_instance

    base, _ = interrupted_base
    home = tmp_path / "home"
    shutil.copytree(base, home, symlinks=True)
    assert learn_subprocess(home, D4, ROUTING_CRASH_AT="model_posteriors:after_write").returncode == CRASH_EXIT_CODE
    assert learn(home, D4, quiet=True).success
    with dagster_instance(home) as instance:
        statuses = [r.status for r in instance.get_runs()]
    assert dg.DagsterRunStatus.STARTED not in statuses and dg.DagsterRunStatus.FAILURE in statuses


def test_interrupted_learn_on_a_late_drop_day_is_completed_by_a_plain_learn(interrupted_base, tmp_path: Path):
    """The fault as reported: after a kill, the next learn returned 0 with the late day stale."""
    base, reference = interrupted_base
    home = tmp_path / "home"
    shutil.copytree(base, home, symlinks=True)
    assert learn_subprocess(home, D4, ROUTING_CRASH_AT="stats:after_day").returncode == CRASH_EXIT_CODE
    conn = sqlite3.connect(home / "routing.db")
    conn.execute("UPDATE settings SET value = ? WHERE key = 'learned_through'", (str(D4),))  # as if the frontier had moved
    conn.commit()
    conn.close()
    result = learn(home, D4, quiet=True)
    assert result.success and current_rules(home) == reference


def test_deleted_lake_is_rebuilt_from_the_database_and_the_ingested_drops(interrupted_base, tmp_path: Path):
    base, reference = interrupted_base
    home = tmp_path / "home"
    shutil.copytree(base, home, symlinks=True)
    assert learn(home, D4, quiet=True).success
    seen = outcomes_seen(home)
    shutil.rmtree(home / "lake")
    result = learn(home, D4, quiet=True)
    assert result.success, result.problems
    assert outcomes_seen(home) == seen and current_rules(home) == reference


def test_deleted_partition_is_rebuilt_not_learned_as_missing(learned_home: Path):
    seen = outcomes_seen(learned_home)
    shutil.rmtree(Lake(learned_home).partition_dir("model_performance", D2))
    result = learn(learned_home, D3, quiet=True)
    assert result.status == "published" and outcomes_seen(learned_home) == seen


def test_evidence_lost_everywhere_is_an_error_naming_the_drop_then_forget_missing_learns_the_rest(learned_home: Path, capsys):
    drop(learned_home, "gone.jsonl", outcome_lines("gpt-4o", D2, 5, prefix="gone"))
    assert learn(learned_home, D3, quiet=True).success
    shutil.rmtree(learned_home / "lake")
    shutil.rmtree(learned_home / "inbox" / "model_performance" / "ingested")
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--as-of", str(D3), "--json")
    assert code == 1 and result["status"] == "failed"
    assert any("gone.jsonl" in p and "--forget-missing" in p for p in result["problems"])
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--as-of", str(D3), "--json", "--forget-missing")
    assert code == 0 and result["status"] == "published"


# ----------------------------------------------------------------------------- item 8: a bad drop

def test_mostly_quarantined_drop_holds_its_day_out_and_the_rest_is_published(learned_home: Path, capsys):
    bad = "".join(json.dumps({"id": f"bad-{i}", "model_id": "no-such-model", "task_type": "math", "outcome": "success",
                              "recorded_at": f"{D4}T10:00:00Z"}) + "\n" for i in range(30))
    drop(learned_home, "bad.jsonl", bad)
    traffic(learned_home, D4, n=6)
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--as-of", str(D4), "--json")
    assert code == 0 and result["status"] == "published"
    assert any(str(D4) in p and "--accept-quarantine" in p for p in result["problems"])
    code, status = cli_json(capsys, "status", "--home", str(learned_home), "--json")
    assert [h["day"] for h in status["held_days"]] == [str(D4)]
    assert status["quarantined"]["model_performance"] == 30
    # A second learn is not wedged by it.
    assert learn(learned_home, D4, quiet=True).status == "published"
    # Accepting the quarantine releases the day: its valid rows are learned.
    seen = outcomes_seen(learned_home)
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--json", "--accept-quarantine", str(D4), "--as-of", str(D4))
    assert code == 0 and result["status"] == "published" and outcomes_seen(learned_home) == seen + 6
    code, status = cli_json(capsys, "status", "--home", str(learned_home), "--json")
    assert status["held_days"] == []


def test_held_day_is_released_by_dropping_the_fixed_file_again(learned_home: Path):
    bad = outcome_lines("no-such-model", D4, 30, prefix="fix")
    drop(learned_home, "bad.jsonl", bad)
    traffic(learned_home, D4, n=6)
    assert any("held out" in p for p in learn(learned_home, D4, quiet=True).problems)
    drop(learned_home, "bad.jsonl", bad.replace("no-such-model", "gpt-4o"))
    seen = outcomes_seen(learned_home)
    result = learn(learned_home, D4, quiet=True)
    assert result.success and not any("held out" in p for p in result.problems)
    assert outcomes_seen(learned_home) == seen + 36


# ----------------------------------------------------------------------------- item 9: the truth

def test_learn_that_fails_after_publishing_says_it_published(learned_home: Path, capsys, monkeypatch):
    monkeypatch.setenv("ROUTING_FAIL_AT", "publish:after_snapshot")
    traffic(learned_home, D4, n=5)
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--as-of", str(D4), "--json")
    assert result["status"] == "published" and result["rule_set_version"] == 3
    assert code == 1 and any("injected failure" in p for p in result["problems"])
    monkeypatch.delenv("ROUTING_FAIL_AT")
    capsys.readouterr()
    assert main(["learn", "--home", str(learned_home), "--as-of", str(D4)]) == 0
    code, status = cli_json(capsys, "status", "--home", str(learned_home), "--json")
    assert status["rule_set"]["version"] >= 3


def test_learn_that_fails_before_publishing_says_failed_and_keeps_the_rules(learned_home: Path, capsys, monkeypatch):
    monkeypatch.setenv("ROUTING_FAIL_AT", "model_posteriors:after_write")
    traffic(learned_home, D4, n=5)
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--as-of", str(D4), "--json")
    assert (code, result["status"], result["rule_set_version"]) == (1, "failed", 2)


# ----------------------------------------------------------------------------- item 10: loud quarantine

def test_drop_with_at_instead_of_recorded_at_is_reported_not_silently_quarantined(learned_home: Path, capsys):
    drop(learned_home, "wrong-column.jsonl", outcome_lines("gpt-4o", D2, 40, prefix="at", time_key="at"))
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--as-of", str(D3), "--json")
    table = result["tables"]["model_performance"]
    assert table["quarantined"] == 40
    assert table["reasons"] == {"recorded_at: missing, unparseable, before 2020-01-01 or in the future": 40}
    capsys.readouterr()
    assert main(["learn", "--home", str(learned_home), "--as-of", str(D3)]) == 0
    code, status = cli_json(capsys, "status", "--home", str(learned_home), "--json")
    assert status["quarantined"]["model_performance"] == 40
    assert status["last_learn"]["status"] in ("published", "nothing_new")


def test_learn_prints_rows_ingested_and_quarantined_per_table_with_reasons(learned_home: Path, capsys):
    drop(learned_home, "mixed.jsonl", outcome_lines("gpt-4o", D3, 4) + outcome_lines("nobody", D3, 2, prefix="x"))
    capsys.readouterr()
    assert main(["learn", "--home", str(learned_home), "--as-of", str(D3)]) == 0
    out = capsys.readouterr().out
    assert "model_performance: 34 rows ingested, 2 quarantined — model_id: not a registered model (2)" in out
    assert "routing_decisions: 30 rows ingested, 0 quarantined" in out


def test_inbox_accepts_bom_upper_case_suffix_and_loose_iso_timestamps(learned_home: Path):
    rows = [
        {"id": "bom-1", "recorded_at": "2026-05-02t10:00z"},
        {"id": "bom-2", "recorded_at": "2026-05-02T10:00"},
        {"id": "bom-3", "recorded_at": "2026-05-02 10:00+02:00"},
        {"id": "bom-4", "recorded_at": "2026-05-02T10:00:00.5Z"},
    ]
    text = "".join(json.dumps({"model_id": "gpt-4o", "task_type": "math", "outcome": "success", **r}) + "\n" for r in rows)
    (learned_home / "inbox" / "model_performance" / "BOM.JSONL").write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = learn(learned_home, D3, quiet=True)
    assert result.tables["model_performance"]["quarantined"] == 0, result.tables
    hours = Lake(learned_home).read_partition("model_performance", D2).filter(pl.col("id").str.starts_with("bom")).sort("id")
    assert hours["recorded_at"].dt.hour().to_list() == [10, 10, 8, 10]


def test_duplicate_ids_are_counted_and_reported_not_dropped_silently(learned_home: Path):
    lines = outcome_lines("gpt-4o", D2, 5, prefix="dup")
    drop(learned_home, "a.jsonl", lines)
    drop(learned_home, "b.jsonl", lines + outcome_lines("gpt-4o", D2, 1, prefix="other"))
    seen = outcomes_seen(learned_home)
    result = learn(learned_home, D3, quiet=True)
    assert outcomes_seen(learned_home) == seen + 6
    reasons = result.tables["model_performance"]["reasons"]
    assert reasons == {"duplicate: id seen in an earlier row, counted once": 5}


def test_three_outcomes_recorded_for_one_decision_are_learned_once(tmp_path: Path):
    home = tmp_path / "home"
    initialise(home)
    with ModelRouter.open(home, seed=3) as router:
        d = router.select_model("math", at=dt.datetime(2026, 5, 1, 9))
        router.record_performance(d.decision_id, "success", quality_score=1.0, at=dt.datetime(2026, 5, 1, 9, 1))
    conn = sqlite3.connect(home / "routing.db")  # rows written by an older client, bypassing the check
    for i in range(2):
        conn.execute(
            "INSERT INTO model_performance (id, model_id, task_type, outcome, quality_score, recorded_at, decision_id)"
            " VALUES (?, ?, 'math', 'failure', 0.0, ?, ?)", (f"again-{i}", d.model_id, f"2026-05-01 09:0{2 + i}:00", d.decision_id),
        )
    conn.commit()
    conn.close()
    result = learn(home, D1, quiet=True)
    assert outcomes_seen(home) == 1
    assert result.tables["model_performance"]["reasons"] == {"duplicate: another outcome of this decision came first, counted once": 2}


# ----------------------------------------------------------------------------- items 14, 16: no evidence, time

def test_learn_with_no_evidence_keeps_the_registry_top_model_in_every_cell(tmp_path: Path):
    home = tmp_path / "home"
    initialise(home)
    registry_rules = current_rules(home)
    assert learn(home, D1, quiet=True).success
    learned = current_rules(home)
    top = lambda rules: {(t, p): m for t, p, m, _, prob, *_ in rules if prob == max(r[4] for r in rules if r[:2] == (t, p))}  # noqa: E731
    assert top(learned) == top(registry_rules)
    assert [r[4] for r in learned] == [r[4] for r in registry_rules]


def test_plain_learn_after_as_of_today_does_not_publish_older_evidence(tmp_path: Path, capsys):
    home = tmp_path / "home"
    initialise(home)
    today = dt.datetime.now(dt.timezone.utc).date()
    traffic(home, today - dt.timedelta(days=1), n=6)
    code, result = cli_json(capsys, "learn", "--home", str(home), "--as-of", str(today), "--json")
    assert code == 0 and result["status"] == "published" and result["partial_day"] is True
    version = result["rule_set_version"]
    code, result = cli_json(capsys, "learn", "--home", str(home), "--json")
    assert (code, result["status"], result["rule_set_version"]) == (0, "nothing_new", version)


def test_first_learn_starts_where_the_evidence_starts_and_skips_empty_days(tmp_path: Path):
    home = tmp_path / "home"
    initialise(home)
    traffic(home, D1 - dt.timedelta(days=60), n=3)
    traffic(home, D3, n=3)
    result = learn(home, D3, quiet=True)
    assert result.success and result.start == str(D1 - dt.timedelta(days=60))
    assert Lake(home).partition_days("model_performance") == [D1 - dt.timedelta(days=60), D3]
    assert outcomes_seen(home) == 6


def test_the_run_window_is_the_registrys_max_run_days(tmp_path: Path):
    import dataclasses

    from routing_runtime.registry import ModelRegistry

    default = ModelRegistry.load_default()
    registry = dataclasses.replace(default, learning=dataclasses.replace(default.learning, max_run_days=10))
    registry_file = tmp_path / "registry.toml"
    registry_file.write_text(registry.to_toml())
    home = tmp_path / "home"
    initialise(home, registry_file)
    traffic(home, D3 - dt.timedelta(days=30), n=3)
    traffic(home, D3, n=3)
    with Store.open_home(home) as db:
        planned = plan.plan_run(home, db, D3, None, explicit=False)
    assert planned.start == D3 - dt.timedelta(days=9)
    assert any("10-day window" in p for p in planned.problems), planned.problems


def test_one_decision_stamped_long_ago_does_not_make_the_first_learn_cover_years(tmp_path: Path):
    """Regression: one decision stamped 2025-01-01 made the first learn cover 700 days (148 s)."""
    home = tmp_path / "home"
    initialise(home)
    traffic(home, dt.date(2025, 1, 1), n=3)
    traffic(home, D3, n=3)
    result = learn(home, D3, quiet=True)
    assert result.success and result.start == str(D3 - dt.timedelta(days=LearningSettings().max_run_days - 1))
    assert any("2025-01-01" in p and "--as-of 2025-01-01" in p for p in result.problems)
    assert outcomes_seen(home) == 3
    # Asked for, the old day is learned (a backfill), and a plain learn then keeps both.
    assert learn(home, dt.date(2025, 1, 1), quiet=True).success
    assert learn(home, D3, quiet=True).success and outcomes_seen(home) == 6


# ----------------------------------------------------------------------------- full disk, read-only home

def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(mount, "6m"):
        pytest.skip("needs root and tmpfs mounts to make a small disk")
    yield mount
    _umount(mount)


def test_full_disk_learn_fails_cleanly_keeps_the_rules_and_the_next_learn_completes(small_disk: Path, tmp_path: Path):
    home = small_disk / "home"
    initialise(home)
    for day in (D1, D2):
        traffic(home, day, n=10)
    before = current_rules(home)
    ballast = small_disk / "ballast"
    free = shutil.disk_usage(small_disk).free
    with open(ballast, "wb") as handle:
        try:
            handle.write(b"\0" * (free - 64 * 1024))
        except OSError:
            pass
    result = subprocess.run(
        [sys.executable, "-m", "routing_runtime.cli", "learn", "--home", str(home), "--as-of", str(D2), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0, result.stdout
    ballast.unlink()
    assert current_rules(home) == before
    reference = tmp_path / "reference"
    shutil.copytree(home, reference, symlinks=True)
    shutil.rmtree(reference / "lake", ignore_errors=True)
    assert learn(home, D2, quiet=True).success
    assert learn(reference, D2, quiet=True).success
    assert current_rules(home) == current_rules(reference)


def test_read_only_home_still_shows_rules_and_status(tmp_path: Path, capsys):
    mount = tmp_path / "ro"
    if os.geteuid() != 0 or not _mount_tmpfs(mount, "20m"):
        pytest.skip("needs root and tmpfs mounts to make a read-only home")
    try:
        home = mount / "home"
        initialise(home)
        traffic(home, D1, n=5)
        assert learn(home, D1, quiet=True).success
        assert subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True).returncode == 0
        capsys.readouterr()
        assert main(["rules", "--home", str(home), "--task", "math"]) == 0
        assert "math / balanced" in capsys.readouterr().out
        code, status = cli_json(capsys, "status", "--home", str(home), "--json")
        assert code == 0 and status["rule_set"]["version"] == 2 and status["last_learn"]["status"] == "published"
        capsys.readouterr()
        assert main(["learn", "--home", str(home), "--as-of", str(D1)]) == 2
        assert "read-only" in capsys.readouterr().err.lower()
    finally:
        _umount(mount)


# ----------------------------------------------------------------------------- item 4: poisoned rule sets

POISONED = {
    "unknown_task_type_after_a_rollback": "unknown_task_type",
    "text_nan_probability": "text_nan_probability",
    "null_expected_quality": "null_expected_quality",
    "inputs_not_json": "inputs_not_json",
    "every_row_disabled": "every_row_disabled",
}


@pytest.mark.parametrize("poison", [*POISONED, "current_rule_sets_row_deleted"])
def test_poisoned_current_rule_set_does_not_block_learning_and_is_replaced_by_a_good_one(learned_home: Path, capsys, poison: str):
    from test_trust_runtime import POISONS, copy_rule_set, sql

    if poison == "current_rule_sets_row_deleted":
        bad = copy_rule_set(learned_home, sql("DELETE FROM rule_sets WHERE version = {v}"))
    else:
        bad = copy_rule_set(learned_home, POISONS[POISONED[poison]])
    traffic(learned_home, D4, n=6)
    code, status = cli_json(capsys, "status", "--home", str(learned_home), "--json")
    assert code == 0 and status["rule_set"]["version"] == 2
    code, result = cli_json(capsys, "learn", "--home", str(learned_home), "--as-of", str(D4), "--json")
    assert code == 0 and result["status"] == "published" and result["rule_set_version"] == bad + 1, result
    with ModelRouter.open(learned_home) as router:
        decision = router.select_model("math", "quality")
    assert decision.rule_set_version == bad + 1 and "unusable" not in decision.selection_reason
    code, status = cli_json(capsys, "status", "--home", str(learned_home), "--json")
    assert status["rule_set"]["version"] == bad + 1 and status["rule_set"]["note"] == ""
