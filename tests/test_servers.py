"""The tests' own PostgreSQL and SeaweedFS servers work: what the hub and instance tests build on."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import polars as pl
import psycopg2
import pytest


def test_polars_writes_and_reads_parquet_on_the_s3_server(seaweed):
    url = seaweed.new_bucket_url()
    frame = pl.DataFrame({"day": ["2026-01-01", "2026-01-02"], "n": [1, 2]})
    frame.write_parquet(f"{url}/day=2026-01-01/part.parquet", storage_options=seaweed.storage_options())
    read = pl.scan_parquet(f"{url}/**/*.parquet", storage_options=seaweed.storage_options(), hive_partitioning=True).collect()
    assert read.select("n").to_series().to_list() == [1, 2]


def test_s3_hub_sets_the_standard_aws_variables(s3_hub, seaweed):
    assert s3_hub.startswith("s3://")
    assert {k: os.environ[k] for k in seaweed.env} == seaweed.env
    # Polars finds the endpoint and credentials in those variables alone.
    pl.DataFrame({"x": [7]}).write_parquet(f"{s3_hub}/x.parquet")
    assert pl.read_parquet(f"{s3_hub}/x.parquet")["x"].to_list() == [7]


def test_the_s3_server_keeps_its_data_across_stop_and_start(seaweed):
    url = seaweed.new_bucket_url()
    pl.DataFrame({"x": [1, 2, 3]}).write_parquet(f"{url}/kept.parquet", storage_options=seaweed.storage_options())
    seaweed.stop()
    assert not seaweed.running
    with pytest.raises(urllib.error.URLError):  # down: nothing answers on the S3 port
        urllib.request.urlopen(seaweed.endpoint + "/", timeout=5)
    seaweed.start()
    assert pl.read_parquet(f"{url}/kept.parquet", storage_options=seaweed.storage_options())["x"].to_list() == [1, 2, 3]
    # and takes new writes on the same port
    pl.DataFrame({"x": [4]}).write_parquet(f"{url}/after.parquet", storage_options=seaweed.storage_options())


def test_the_s3_server_refuses_wrong_credentials(seaweed):
    url = seaweed.new_bucket_url()
    wrong = {**seaweed.storage_options(), "aws_secret_access_key": "not-the-secret"}
    with pytest.raises(Exception, match="(?i)403|signature|access denied|forbidden"):
        pl.DataFrame({"x": [1]}).write_parquet(f"{url}/x.parquet", storage_options=wrong)


def test_sql_round_trip_on_the_postgres_server(postgres_server, postgres_url):
    assert postgres_url.startswith(f"postgresql://{postgres_server.user}:{postgres_server.password}@127.0.0.1:")
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id integer PRIMARY KEY, name text)")
        cursor.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT name FROM t ORDER BY id")
        assert [r[0] for r in cursor.fetchall()] == ["one", "two"]
        cursor.execute("SHOW server_version")
        assert cursor.fetchone()[0].startswith("15")


def test_the_postgres_server_wants_the_password(postgres_server):
    wrong = postgres_server.url.replace(postgres_server.password, "wrong-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong)
