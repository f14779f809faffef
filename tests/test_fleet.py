"""A fleet on a real S3 server: two agent hosts (each its own processes) and a learner share one
hub over several simulated days.

Every decision and outcome of both hosts lands in the hub lake exactly once, both hosts serve the
learner's version (the hub's number) after a sync, and neither a sync killed at each of its five
crash points nor the hub stopped in the middle of a sync loses or doubles a row.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dagster")
pytest.importorskip("pyarrow")
import polars as pl

from routing_pipelines.simulation.scenarios import load_scenario
from routing_runtime.faults import CRASH_EXIT_CODE
from routing_runtime.store import Store

DAYS = [dt.date(2026, 5, 1) + dt.timedelta(days=i) for i in range(3)]
SHIP_POINTS = ("sync:after_plan", "sync:after_put", "sync:after_mark")
PULL_POINTS = ("sync:pull_after_fetch", "sync:after_import")
ROUTING = [sys.executable, "-m", "routing_runtime.cli"]


class Fleet:
    """Homes on one hub, driven through the command line as an operator would."""

    def __init__(self, tmp_path: Path, server) -> None:
        self.env = {**os.environ, **server.env}
        self.hub = server.new_bucket_url()
        self.server = server
        registry = tmp_path / "registry.toml"
        registry.write_text(load_scenario("stationary").registry.to_toml())
        self.homes = {name: tmp_path / name for name in ("host-a", "host-b", "learner")}
        for home in self.homes.values():
            self.routing("init", "--home", str(home), "--registry", str(registry), "--hub", self.hub)

    def routing(self, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*ROUTING, *args], env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"routing {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done

    def traffic(self, host: str, day: dt.date, requests: int) -> None:
        subprocess.run(
            [sys.executable, "-m", "routing_pipelines.simulation.fleet", "traffic", "--home", str(self.homes[host]),
             "--day", day.isoformat(), "--requests", str(requests), "--seed", str(day.toordinal() + len(host))],
            env=self.env, check=True, capture_output=True, timeout=300,
        )

    def sync(self, host: str, **kwargs) -> subprocess.CompletedProcess:
        return self.routing("sync", "--home", str(self.homes[host]), "--json", **kwargs)

    def served_version(self, host: str) -> int:
        return json.loads(self.routing("rules", "--home", str(self.homes[host]), "--json").stdout)["rule_set_version"]

    def host_ids(self, table: str) -> list[str]:
        ids = []
        for host in ("host-a", "host-b"):
            with Store.open(self.homes[host] / "routing.db", read_only=True) as db:
                ids += [row[0] for day in DAYS for row in db.log_rows(table, day, ["id"])]
        return ids

    def lake(self, table: str) -> pl.DataFrame:
        options = {"aws_endpoint_url": self.env["AWS_ENDPOINT_URL"], "aws_access_key_id": self.env["AWS_ACCESS_KEY_ID"],
                   "aws_secret_access_key": self.env["AWS_SECRET_ACCESS_KEY"], "aws_region": self.env["AWS_REGION"],
                   "aws_allow_http": "true"}
        return pl.scan_parquet(f"{self.hub}/lake/{table}/", hive_partitioning=True, storage_options=options).collect()


def test_two_hosts_and_a_learner_share_one_hub_with_every_row_once(tmp_path, seaweed):
    fleet = Fleet(tmp_path, seaweed)
    published = []
    for index, day in enumerate(DAYS):
        fleet.traffic("host-a", day, 160)
        fleet.traffic("host-b", day, 120)
        if index == 1:
            # Day 2: host-a's sync is killed at each point of shipping in turn, each followed by
            # more traffic, and the next sync delivers it all.
            for point in SHIP_POINTS:
                killed = fleet.sync("host-a", env={"ROUTING_CRASH_AT": point}, check=False)
                assert killed.returncode == CRASH_EXIT_CODE, (point, killed.stderr)
                fleet.traffic("host-a", day, 7)
        if index == 2:
            # Day 3: the hub stops while host-b's sync is under way (paused after planning its
            # first segment); the sync fails saying so, and the next one, hub back, delivers.
            paused = subprocess.Popen(
                [*ROUTING, "sync", "--home", str(fleet.homes["host-b"]), "--json"],
                env={**fleet.env, "ROUTING_PAUSE_AT": "sync:after_plan", "ROUTING_PAUSE_SECONDS": "3"},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            seaweed.stop()
            _, stderr = paused.communicate(timeout=120)
            seaweed.start()
            assert paused.returncode == 1, stderr
            assert "hub" in stderr and "Traceback" not in stderr
        for host in ("host-a", "host-b"):
            shipped = json.loads(fleet.sync(host).stdout)
            assert set(shipped["shipped"]) == {"routing_decisions", "model_performance"}
        result = json.loads(fleet.routing("learn", "--home", str(fleet.homes["learner"]), "--as-of", day.isoformat(), "--json").stdout)
        assert result["status"] == "published", result["problems"]
        published.append(result["rule_set_version"])
        if index == 1:
            # ... and at each point of pulling the new rules: the next sync serves them.
            for point in PULL_POINTS:
                killed = fleet.sync("host-a", env={"ROUTING_CRASH_AT": point}, check=False)
                assert killed.returncode == CRASH_EXIT_CODE, (point, killed.stderr)
        for host in ("host-a", "host-b"):
            pulled = json.loads(fleet.sync(host).stdout)
            assert pulled["rule_set_version"] == result["rule_set_version"]
            assert fleet.served_version(host) == result["rule_set_version"]

    assert published == sorted(published) and len(set(published)) == len(DAYS)
    assert not (fleet.homes["learner"] / "lake").exists()
    for table in ("routing_decisions", "model_performance"):
        expected = fleet.host_ids(table)
        lake = fleet.lake(table)
        assert len(expected) == len(set(expected)) > 0
        assert lake.height == len(expected), f"{table}: {lake.height} rows in the hub lake, {len(expected)} recorded"
        assert sorted(lake["id"]) == sorted(expected)
