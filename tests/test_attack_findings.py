"""Attack findings against the trust contract (README.md, "What it promises"; issue 7).

Each test is expected to FAIL on the current main: it pins one reproducible fault."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dagster")
pl = pytest.importorskip("polars")

import routing_pipelines.assets.learning_assets as learning_assets  # noqa: E402
from routing_pipelines.learn import learn  # noqa: E402
from routing_runtime import ModelRouter  # noqa: E402
from routing_runtime.admin import initialise  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_trust_pipeline import D1, D2, D3, D4, current_rules, drop, outcome_lines, outcomes_seen, small_disk, traffic  # noqa: E402,F401


@pytest.fixture(scope="module")
def _base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("attack") / "base"
    initialise(base)
    for day in (D1, D2, D3):
        traffic(base, day)
    assert learn(base, D3, quiet=True).success
    return base


@pytest.fixture
def home(_base: Path, tmp_path: Path) -> Path:
    h = tmp_path / "home"
    shutil.copytree(_base, h, symlinks=True)
    return h


def learn_cli(home: Path, as_of) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "routing_runtime.cli", "learn", "--home", str(home), "--as-of", str(as_of), "--json"],
        capture_output=True, text=True, timeout=300,
    )


# 1 ---------------------------------------------------------------------------------------------
def test_absurd_but_finite_cost_is_refused_and_never_blocks_learning(home):
    """Regression: cost_usd=1e100 was accepted, and the posteriors it made blocked every later learn."""
    with ModelRouter.open(home) as router:
        at = dt.datetime(2026, 5, 4, 9)
        d = router.select_model("math", at=at)
        for field, value in (("cost_usd", 1e100), ("latency_ms", 1e308), ("tokens_used", 10**12)):
            with pytest.raises(ValueError, match=field):
                router.record_performance(d.decision_id, "success", **{field: value}, at=at)
    rows = [{"id": f"huge-{i}", "model_id": "gpt-4o", "task_type": "math", "outcome": "success",
             "recorded_at": "2026-05-04T10:00:00Z", field: value}
            for i, (field, value) in enumerate((("cost_usd", 1e100), ("latency_ms", 1e308), ("latency_ms", 1e308)))]
    drop(home, "huge.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    traffic(home, D4)
    result = learn(home, D4, quiet=True)
    assert result.status == "published", (result.status, result.problems)
    assert result.tables["model_performance"]["quarantined"] == 3


def test_deeply_nested_json_line_is_quarantined_not_wedging_learn(home: Path):
    drop(home, "deep.jsonl", '{"a":' * 1000 + "1" + "}" * 1000 + "\n" + outcome_lines("gpt-4o", D1, 3))
    run = learn_cli(home, D3)
    assert run.returncode == 0, run.stderr[-500:]
    doc = json.loads(run.stdout)
    assert doc["tables"]["model_performance"]["quarantined"] >= 1


# 3 ---------------------------------------------------------------------------------------------
def test_parquet_drop_with_a_list_column_is_quarantined_without_a_traceback(home: Path):
    pl.DataFrame({
        "id": ["p1"], "model_id": ["gpt-4o"], "task_type": ["math"], "outcome": ["success"],
        "latency_ms": [[1, 2]], "recorded_at": ["2026-05-01T10:00:00Z"],
    }).write_parquet(home / "inbox" / "model_performance" / "list_col.parquet")
    run = learn_cli(home, D3)
    assert "Traceback" not in run.stderr
    assert run.stdout.strip(), "--json printed nothing"
    assert json.loads(run.stdout)["status"] == "published"


# 4 ---------------------------------------------------------------------------------------------
def test_rule_row_naming_a_model_not_in_the_registry_is_never_served(home: Path):
    conn = sqlite3.connect(home / "routing.db")
    conn.execute(
        "UPDATE model_routing_rules SET model_id = 'evil-model', selection_probability = 1.0"
        " WHERE rule_set_version = (SELECT MAX(version) FROM rule_sets) AND model_id = 'gpt-4o'"
    )
    conn.commit()
    conn.close()
    with ModelRouter.open(home) as router:
        chosen = collections.Counter(router.select_model("math", "balanced").model_id for _ in range(100))
        assert "evil-model" not in chosen, chosen
        router.select_model("math", "balanced", exclude=["gpt-4o"])  # a registered model


# 5 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sub", ["history", "storage", "schedules"])
def test_symlinked_folder_inside_dagster_home_is_set_aside_not_written_through(home: Path, tmp_path: Path, sub: str):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(home / "dagster_home" / sub)
    (home / "dagster_home" / sub).symlink_to(outside)
    learn(home, D3, quiet=True)
    assert list(outside.iterdir()) == [], f"written outside the home: {sorted(p.name for p in outside.iterdir())}"


# 6 ---------------------------------------------------------------------------------------------
def test_hardlinked_drop_is_set_aside_unread_and_its_mode_untouched(home: Path, tmp_path: Path):
    outside = tmp_path / "outside.jsonl"
    outside.write_text(outcome_lines("gpt-4o", D1, 5, prefix="hard"))
    outside.chmod(0o644)
    os.link(outside, home / "inbox" / "model_performance" / "hard.jsonl")
    result = learn(home, D3, quiet=True)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644, "the learner chmod-ed a file outside the home"
    rows = pl.read_parquet(home / "lake" / "model_performance" / f"day={D1}" / "part-0.parquet")
    assert rows.filter(pl.col("id").str.starts_with("hard-")).height == 0, "rows of a file outside the home learned"
    assert any("hard.jsonl" in p for p in result.problems)


# 7 ---------------------------------------------------------------------------------------------
def test_deleted_daily_stats_file_is_rebuilt_not_a_silent_loss(_base: Path, tmp_path: Path):
    ref, victim = tmp_path / "ref", tmp_path / "victim"
    for h in (ref, victim):
        shutil.copytree(_base, h, symlinks=True)
        traffic(h, D4)
    (victim / "lake" / "daily_model_stats" / f"day={D1}" / "part-0.parquet").unlink()
    assert learn(ref, D4, quiet=True).success
    result = learn(victim, D4, quiet=True)
    assert result.status != "published" or current_rules(victim) == current_rules(ref), (
        f"published with {outcomes_seen(victim)} outcomes instead of {outcomes_seen(ref)}, problems={result.problems}"
    )


# 8 ---------------------------------------------------------------------------------------------
def test_truncated_lake_file_is_rebuilt_not_wedging_learning(home: Path):
    part = home / "lake" / "daily_model_stats" / f"day={D1}" / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:100])
    traffic(home, D4)
    first = learn(home, D4, quiet=True)
    second = learn(home, D4, quiet=True)
    # The lake is derived from routing.db and inbox/*/ingested: it can be rebuilt; at least name the file.
    assert second.status == "published" or any("daily_model_stats" in p and D1.isoformat() in p for p in first.problems), first.problems


# 9 ---------------------------------------------------------------------------------------------
def test_plain_learn_after_as_of_today_with_a_late_drop_keeps_todays_evidence(tmp_path: Path):
    today = dt.datetime.now(dt.timezone.utc).date()
    yday = today - dt.timedelta(days=1)
    h = tmp_path / "home"
    initialise(h)
    traffic(h, yday)
    with ModelRouter.open(h) as router:
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        for i in range(20):
            at = now - dt.timedelta(minutes=i + 1)
            if at.date() != today:
                break
            d = router.select_model("math", at=at)
            router.record_performance(d.decision_id, "success", quality_score=0.9, at=at)
    assert learn(h, str(today), quiet=True).status == "published"
    in_force = outcomes_seen(h)
    drop(h, "late.jsonl", outcome_lines("gpt-4o", yday, 3))
    learn(h, None, quiet=True)  # no backfill asked for
    conn = sqlite3.connect(h / "routing.db")
    as_of = conn.execute("SELECT as_of FROM rule_sets ORDER BY version DESC LIMIT 1").fetchone()[0]
    conn.close()
    assert as_of == str(today), f"rules now built through {as_of} ({outcomes_seen(h)} outcomes), were {today} ({in_force})"


# 10 --------------------------------------------------------------------------------------------
def test_model_disabled_by_init_while_a_learn_runs_is_not_served(home: Path, monkeypatch):
    text = (Path(__file__).parents[1] / "routing_runtime" / "default_registry.toml").read_text()
    disabled = re.sub(r'(id = "gpt-4o".*\n)', r"\1enabled = false\n", text, count=1)
    registry = home.parent / "no-gpt-4o.toml"
    registry.write_text(disabled)
    original = learning_assets.crashpoint

    def at_point(name):
        if name == "publish:before":
            initialise(home, str(registry))  # the operator disables gpt-4o now
        original(name)

    monkeypatch.setattr(learning_assets, "crashpoint", at_point)
    learn(home, D3, quiet=True)
    conn = sqlite3.connect(home / "routing.db")
    enabled = conn.execute(
        "SELECT COUNT(*) FROM current_routing_rules WHERE model_id = 'gpt-4o' AND is_enabled = 1"
    ).fetchone()[0]
    conn.close()
    assert enabled == 0, f"gpt-4o, disabled by `routing init`, is enabled in {enabled} rows of the rules in force"


# 11 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fifo", "dir", "chardev"])
def test_special_entries_named_jsonl_in_the_inbox_are_reported(home: Path, kind: str):
    path = home / "inbox" / "model_performance" / "thing.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
        (path / "inner.jsonl").write_text(outcome_lines("gpt-4o", D1, 3))
    else:
        if os.geteuid() != 0:
            pytest.skip("mknod needs root")
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    result = learn(home, D3, quiet=True)
    assert any("thing.jsonl" in p for p in result.problems), result.problems


# 12 --------------------------------------------------------------------------------------------
def test_rule_set_row_with_the_largest_version_does_not_wedge_learn(home: Path):
    conn = sqlite3.connect(home / "routing.db")
    conn.execute("INSERT INTO rule_sets VALUES (9223372036854775807, 'x', NULL, 'learned', '{}', 'c')")
    conn.commit()
    conn.close()
    assert learn(home, D3, quiet=True).status == "published"


# 8 ---------------------------------------------------------------------------------------------
def test_full_disk_learn_json_prints_a_failed_result_not_a_traceback(_base: Path, small_disk: Path):  # noqa: F811
    home = small_disk / "home"
    shutil.copytree(_base, home, symlinks=True)
    traffic(home, D4)
    with open(small_disk / "ballast", "wb") as handle:
        try:
            handle.write(b"\0" * shutil.disk_usage(small_disk).free)
        except OSError:
            pass
    run = learn_cli(home, D4)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-1500:]
    result = json.loads(run.stdout)
    assert result["status"] == "failed" and result["problems"], result


# 11c -------------------------------------------------------------------------------------------
def test_a_file_that_is_not_a_drop_is_reported_once_per_learn(home: Path):
    (home / "inbox" / "model_performance" / "note.txt").write_text("not a drop")
    problems = learn(home, D3, quiet=True).problems
    assert [p for p in problems if "note.txt" in p] == ["inbox/model_performance/note.txt: not a *.parquet or *.jsonl drop, left in place"]


# 12b -------------------------------------------------------------------------------------------
def test_garbage_learned_through_setting_is_named_with_the_fix(home: Path, capsys):
    from routing_runtime.cli import main

    conn = sqlite3.connect(home / "routing.db")
    conn.execute("UPDATE settings SET value = 'garbage' WHERE key = 'learned_through'")
    conn.commit()
    conn.close()
    assert main(["learn", "--home", str(home), "--as-of", str(D3)]) == 2
    err = capsys.readouterr().err
    assert "settings.learned_through" in err and "YYYY-MM-DD" in err


# 13, 14 ----------------------------------------------------------------------------------------
def test_concurrent_first_inits_publish_one_registry_rule_set(tmp_path: Path):
    home = tmp_path / "new-home"
    runs = [subprocess.Popen([sys.executable, "-m", "routing_runtime.cli", "init", "--home", str(home)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    assert [p.wait(timeout=120) for p in runs] == [0, 0, 0, 0], [p.stderr.read() for p in runs]
    conn = sqlite3.connect(home / "routing.db")
    assert conn.execute("SELECT COUNT(*) FROM rule_sets").fetchone()[0] == 1
    conn.close()


@pytest.mark.parametrize("name", ["routing.db-wal", "routing.db-journal", ".learn.lock"])
def test_symlink_beside_the_database_is_refused_or_set_aside_naming_it(home: Path, tmp_path: Path, capsys, name: str):
    from routing_runtime.cli import main

    outside = tmp_path / "outside"
    outside.write_text("")
    link = home / name
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    if name == ".learn.lock":
        assert learn(home, D3, quiet=True).success
        assert not link.is_symlink() and outside.read_text() == ""
        return
    assert main(["select", "--home", str(home), "--task", "math", "x"]) == 2
    assert f"{name} is a symlink" in capsys.readouterr().err
    assert outside.read_text() == ""


# 12c -------------------------------------------------------------------------------------------
def test_text_in_a_stored_model_number_is_named_with_the_fix_and_selection_survives(home: Path):
    conn = sqlite3.connect(home / "routing.db")
    conn.execute("UPDATE models SET prior_quality = 'high' WHERE id = 'gpt-4o'")
    conn.commit()
    conn.close()
    result = learn(home, D3, quiet=True)
    assert result.status == "failed"
    assert any("prior_quality" in p and "'high'" in p and "routing init --registry" in p for p in result.problems), result.problems
    with ModelRouter.open(home) as router:
        assert router.select_model("math").model_id
