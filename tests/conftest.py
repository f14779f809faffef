"""Shared fixtures for the routing_runtime test suite.

Every ROUTING_HOME lives under pytest's ``tmp_path``; nothing is written into the repository.
"""

from __future__ import annotations

import os
import random
import sqlite3
import textwrap
from pathlib import Path

import pytest

from routing_runtime import ModelRouter
from routing_runtime.admin import initialise

# LiteLLM (tests of the [litellm] integration) must not fetch its price map: no network here.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TESTS_DATA = PROJECT_ROOT / "tests" / "data"
#: Real outcome data shared beside the project (``../shared/data``); optional.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_shared_data() -> Path:
    """SHARED_DATA, or skip the calling test cleanly when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


# A small registry in the documented format, used by several test modules.
BASE_MODELS_TOML = """
[[models]]
id = "spec-code"
provider = "acme"
specialized_for = ["code_generation", "debugging"]
input_cost_per_1k = 0.0003
output_cost_per_1k = 0.0009
prior_quality = 0.86
off_specialty_prior_quality = 0.60
typical_latency_ms = 900

[[models]]
id = "spec-math"
provider = "acme"
specialized_for = ["math"]
input_cost_per_1k = 0.0009
output_cost_per_1k = 0.0009
prior_quality = 0.90
typical_latency_ms = 2200

[[models]]
id = "big"
provider = "acme"
specialized_for = []
input_cost_per_1k = 0.003
output_cost_per_1k = 0.015
prior_quality = 0.88
typical_latency_ms = 2600

[[models]]
id = "mid"
provider = "acme"
specialized_for = []
input_cost_per_1k = 0.001
output_cost_per_1k = 0.005
prior_quality = 0.78
typical_latency_ms = 1000

[[models]]
id = "cheap"
provider = "acme"
specialized_for = []
input_cost_per_1k = 0.00015
output_cost_per_1k = 0.0006
prior_quality = 0.72
typical_latency_ms = 700
"""


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path, monkeypatch):
    """Seed the global RNG and point $ROUTING_HOME into tmp_path, so that a code path that
    falls back to the default home can never write into the repository or the user's home."""
    random.seed(12345)
    monkeypatch.setenv("ROUTING_HOME", str(tmp_path / "default-routing-home"))


@pytest.fixture
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture
def home(tmp_path) -> Path:
    """An initialised ROUTING_HOME (shipped registry) in tmp_path."""
    path = tmp_path / "home"
    initialise(path)
    return path


@pytest.fixture
def router(home):
    r = ModelRouter.open(home, seed=1)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def write_registry(tmp_path):
    """``write_registry(text, name="registry.toml") -> Path``: a registry TOML in tmp_path."""

    def write(text: str, name: str = "registry.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def db_connect(home: Path) -> sqlite3.Connection:
    """A plain read connection to ``home``'s routing.db (the test's own, not the product's)."""
    conn = sqlite3.connect(home / "routing.db", timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def count_rows(home: Path, table: str) -> int:
    conn = db_connect(home)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


# ------------------------------------------------------------------ real servers (tests/servers.py)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL 15 cluster on 127.0.0.1 for the whole session (``PostgresServer``: ``url``,
    ``host``, ``port``, ``user``, ``password``, ``database``, ``new_database()``, ``superuser(sql)``)."""
    from servers import PostgresServer

    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """``postgresql://user:password@127.0.0.1:PORT/db`` of a database of this test alone."""
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def seaweed_server():
    """SeaweedFS with its S3 gateway on 127.0.0.1 for the whole session; see ``seaweed``."""
    from servers import SeaweedServer

    server = SeaweedServer()
    try:
        yield server.start()
    finally:
        server.remove()


@pytest.fixture
def seaweed(seaweed_server):
    """The session's SeaweedFS, running (a test that stopped it and failed does not leave it down
    for the next): ``SeaweedServer`` with ``env`` (the AWS variables), ``endpoint``, ``access_key``,
    ``secret_key``, ``stop()``, ``start()``, ``new_bucket_url()``, ``storage_options()``, ``filesystem()``."""
    return seaweed_server.start()


@pytest.fixture
def s3_hub(seaweed, monkeypatch) -> str:
    """A new ``s3://bucket/prefix`` on the session's SeaweedFS, with its AWS variables set in this
    test's environment (and so in the subprocesses it starts)."""
    for key, value in seaweed.env.items():
        monkeypatch.setenv(key, value)
    return seaweed.new_bucket_url()
