"""`routing init --dagster-postgres URL`: the home's Dagster instance (runs, event log, schedules)
in a real PostgreSQL server started by the tests, used by `routing learn` and `routing ui`."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("dagster")
psycopg2 = pytest.importorskip("psycopg2")

from routing_runtime import ModelRouter  # noqa: E402
from servers import free_port  # noqa: E402

D1 = dt.date(2026, 6, 1)
D3 = dt.date(2026, 6, 3)


def routing(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "routing_runtime.cli", *args], capture_output=True, text=True, timeout=timeout)


def fill(home: Path, first: dt.date, days: int, seed: int = 3) -> None:
    """Decisions and outcomes on ``days`` days from ``first``, recorded the way an agent does."""
    with ModelRouter.open(home, seed=seed) as router:
        for day in range(days):
            for i in range(20):
                at = dt.datetime.combine(first + dt.timedelta(days=day), dt.time(9, i))
                d = router.select_model("math" if i % 2 else "code_generation", "balanced", at=at)
                router.record_performance(d.decision_id, "success" if i % 3 else "failure", latency_ms=800 + i,
                                          tokens_used=900, cost_usd=0.001, at=at)


def runs_in(url: str) -> list[str]:
    """The run ids in the PostgreSQL run storage at ``url`` (the test reads the table itself)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT run_id FROM runs ORDER BY id")
        return [r[0] for r in cursor.fetchall()]


def sqlite_files(home: Path) -> list[str]:
    """SQLite databases Dagster would keep under the home's instance (runs, event logs, schedules)."""
    return sorted(str(p.relative_to(home)) for p in (home / "dagster_home").rglob("*.db"))


@pytest.fixture(scope="module")
def learned(postgres_server, tmp_path_factory):
    """A home whose instance is in PostgreSQL, after one `routing learn --as-of D3`: (home, url, run id)."""
    url = postgres_server.new_database()
    home = tmp_path_factory.mktemp("pg") / "home"
    init = routing("init", "--home", str(home), "--dagster-postgres", url)
    assert init.returncode == 0, init.stderr
    fill(home, D1, 3)
    learn = routing("learn", "--home", str(home), "--as-of", str(D3), "--json")
    assert learn.returncode == 0, learn.stderr
    result = json.loads(learn.stdout)
    assert result["status"] == "published", result
    return home, url, result["dagster_run_id"]


def test_learn_runs_land_in_postgres_not_in_a_sqlite_runs_db_under_the_home(learned):
    home, url, run_id = learned
    assert runs_in(url) == [run_id]
    assert sqlite_files(home) == [], "the instance still writes SQLite under the home"
    config = (home / "dagster_home" / "dagster.yaml").read_text()
    # With the driver dagster-postgres installs (a bare postgresql:// is psycopg 3 to SQLAlchemy 2.1).
    assert 'storage:\n  postgres:\n    postgres_url: "postgresql+psycopg2://' in config
    # The home's own settings stay: no telemetry, one learning run at a time.
    assert "telemetry:\n  enabled: false" in config and "default_limit: 1" in config


def test_the_event_log_and_the_concurrency_pool_are_in_postgres_too(learned):
    _, url, run_id = learned
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] > 0
        cursor.execute("SELECT to_regclass('jobs') IS NOT NULL")  # schedule storage
        assert cursor.fetchone()[0]


def test_routing_ui_on_the_postgres_instance_lists_the_run_of_routing_learn(learned):
    home, _, run_id = learned
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "routing_runtime.cli", "ui", "--home", str(home), "--port", str(port), "--no-daemon"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        query = json.dumps({"query": "{ runsOrError { __typename ... on Runs { results { runId status } } } }"}).encode()
        deadline = time.monotonic() + 180
        answer = None
        while answer is None:
            assert ui.poll() is None, ui.stderr.read() if ui.stderr else ""
            assert time.monotonic() < deadline, "routing ui never answered on /graphql"
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        runs = answer["data"]["runsOrError"]["results"]
        assert [(r["runId"], r["status"]) for r in runs] == [(run_id, "SUCCESS")]
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
    assert sqlite_files(home) == [], "routing ui wrote a SQLite instance under the home"


def test_a_second_learn_on_the_postgres_instance_records_its_own_run(postgres_url, tmp_path):
    home = tmp_path / "home"
    assert routing("init", "--home", str(home), "--dagster-postgres", postgres_url).returncode == 0
    fill(home, D1, 2)
    first = json.loads(routing("learn", "--home", str(home), "--as-of", str(D1 + dt.timedelta(days=1)), "--json").stdout)
    fill(home, D3, 1, seed=4)
    second = routing("learn", "--home", str(home), "--as-of", str(D3), "--json")
    assert second.returncode == 0, second.stderr
    second_result = json.loads(second.stdout)
    assert (first["status"], second_result["status"]) == ("published", "published")
    assert second_result["rule_set_version"] > first["rule_set_version"]
    assert runs_in(postgres_url) == [first["dagster_run_id"], second_result["dagster_run_id"]]
    assert sqlite_files(home) == []


def test_plain_init_keeps_the_postgres_instance_and_status_masks_the_password(postgres_server, postgres_url, tmp_path):
    home = tmp_path / "home"
    assert routing("init", "--home", str(home), "--dagster-postgres", postgres_url).returncode == 0
    again = routing("init", "--home", str(home))
    assert again.returncode == 0, again.stderr
    assert "Dagster instance on postgresql://routing:***@127.0.0.1" in again.stdout
    status = routing("status", "--home", str(home), "--json")
    assert status.returncode == 0, status.stderr
    masked = postgres_url.replace(postgres_server.password, "***")
    assert json.loads(status.stdout)["dagster_storage"] == {"kind": "postgres", "url": masked}
    text = routing("status", "--home", str(home))
    assert "dagster storage:   PostgreSQL postgresql://routing:***@" in text.stdout
    for output in (again.stdout, status.stdout, text.stdout):
        assert postgres_server.password not in output


def test_status_of_a_home_without_postgres_says_sqlite(tmp_path):
    home = tmp_path / "home"
    assert routing("init", "--home", str(home)).returncode == 0
    status = json.loads(routing("status", "--home", str(home), "--json").stdout)
    assert status["dagster_storage"] == {"kind": "sqlite", "url": None}


def unreachable_url() -> str:
    return f"postgresql://routing:hunter2-secret@127.0.0.1:{free_port()}/routing"


def test_an_unreachable_server_is_one_clear_line_and_creates_no_home(tmp_path):
    home = tmp_path / "home"
    proc = routing("init", "--home", str(home), "--dagster-postgres", unreachable_url())
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--dagster-postgres=" in line and "does not answer" in line and "nothing was changed" in line
    assert "hunter2-secret" not in proc.stderr and "routing:***@127.0.0.1" in line
    assert not home.exists()


def test_an_unreachable_server_leaves_a_home_on_its_previous_instance(postgres_url, tmp_path):
    home = tmp_path / "home"
    assert routing("init", "--home", str(home), "--dagster-postgres", postgres_url).returncode == 0
    fill(home, D1, 1)
    db_before = (home / "routing.db").read_bytes()
    proc = routing("init", "--home", str(home), "--dagster-postgres", unreachable_url())
    assert proc.returncode == 2 and "does not answer" in proc.stderr
    assert (home / "routing.db").read_bytes() == db_before
    assert json.loads(routing("status", "--home", str(home), "--json").stdout)["dagster_storage"]["url"].endswith(
        postgres_url.rsplit("@", 1)[1])


def test_a_wrong_password_is_refused_before_anything_is_written(postgres_server, tmp_path):
    home = tmp_path / "home"
    wrong = postgres_server.url.replace(postgres_server.password, "not-the-password")
    proc = routing("init", "--home", str(home), "--dagster-postgres", wrong)
    assert proc.returncode == 2
    assert "password authentication failed" in proc.stderr and "not-the-password" not in proc.stderr
    assert not home.exists()


@pytest.mark.parametrize("url, reason", [
    ("mysql://u:pw-secret@127.0.0.1/db", "the scheme must be postgresql://"),
    ("postgresql://u:pw-secret@/db", "names no host"),
    ("postgresql://u:pw-secret@127.0.0.1:5432", "names no database"),
    ("postgresql://u:pw-secret@127.0.0.1:port/db", "is not a URL"),
])
def test_a_malformed_url_names_the_flag_and_masks_the_password(tmp_path, url, reason):
    home = tmp_path / "home"
    proc = routing("init", "--home", str(home), "--dagster-postgres", url)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("routing init: error: --dagster-postgres=") and reason in line
    assert "pw-secret" not in line and "u:***@" in line
    assert not home.exists()


def test_a_postgres_scheme_url_is_stored_as_postgresql_which_sqlalchemy_reads(postgres_url, tmp_path):
    home = tmp_path / "home"
    proc = routing("init", "--home", str(home), "--dagster-postgres", "postgres" + postgres_url[len("postgresql"):])
    assert proc.returncode == 0, proc.stderr
    from routing_pipelines.learn import dagster_instance

    with dagster_instance(home) as instance:  # SQLAlchemy has no `postgres://` dialect: this would fail
        assert instance.get_runs() == []
    assert 'postgres_url: "postgresql+psycopg2://' in (home / "dagster_home" / "dagster.yaml").read_text()


def test_plain_init_and_import_load_neither_dagster_nor_psycopg2(tmp_path):
    probe = (
        "import json, sys\n"
        "from routing_runtime import cli\n"
        "code = cli.main(['init', '--home', sys.argv[1]])\n"
        "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'psycopg2', 'sqlalchemy'})]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "home")], capture_output=True, text=True, timeout=60,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [0, []]


def test_learn_on_a_vanished_instance_database_is_one_line_not_retries_of_an_unnamed_connection(postgres_server, postgres_url, tmp_path):
    home = tmp_path / "home"
    assert routing("init", "--home", str(home), "--dagster-postgres", postgres_url).returncode == 0
    fill(home, D1, 1)
    postgres_server.superuser(f"DROP DATABASE {postgres_url.rsplit('/', 1)[1]}")
    proc = routing("learn", "--home", str(home), "--as-of", str(D1))
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.strip().splitlines() if not x.startswith("learning from ")]
    assert "Dagster instance in PostgreSQL (postgresql://routing:***@127.0.0.1" in line and "does not exist" in line
    assert "routing init --dagster-postgres URL" in line and postgres_server.password not in proc.stderr
    assert json.loads(routing("status", "--home", str(home), "--json").stdout)["learned_through"] is None
    ui = routing("ui", "--home", str(home), "--port", str(free_port()), "--no-daemon", timeout=60)
    assert ui.returncode == 2 and "does not answer" in ui.stderr, ui.stderr
