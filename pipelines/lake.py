"""The small hive-partitioned Parquet layer: ``lake/<table>/day=YYYY-MM-DD/part-0.parquet``.

A partition is replaced whole and atomically (write a temporary file, then rename), so a
re-run of a day gives the same files and a reader never sees a half-written partition.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from pathlib import Path

import polars as pl

QUARANTINE = "quarantine"


def partition_dir(lake: Path, table: str, day: dt.date | str) -> Path:
    return lake / table / f"day={day}"


def write_partition(lake: Path, table: str, day: dt.date | str, frame: pl.DataFrame) -> Path:
    """Replace the partition ``day`` of ``table`` with ``frame`` (an empty frame clears it)."""
    target = partition_dir(lake, table, day)
    staging = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    if frame.height:
        frame.write_parquet(staging / "part-0.parquet", statistics=True)
    old = None
    if target.exists():
        old = target.parent / f".old-{target.name}-{uuid.uuid4().hex}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def read_partition(lake: Path, table: str, day: dt.date | str) -> pl.DataFrame | None:
    files = sorted(partition_dir(lake, table, day).glob("*.parquet"))
    return pl.read_parquet(files) if files else None


def scan_days(lake: Path, table: str, last_day: dt.date | None = None) -> pl.LazyFrame | None:
    """All partitions of ``table`` (up to ``last_day``) with ``day`` as a Date column."""
    root = lake / table
    if not any(root.glob("day=*/*.parquet")):
        return None
    frame = pl.scan_parquet(root / "day=*" / "*.parquet", hive_partitioning=True, hive_schema={"day": pl.Date})
    return frame if last_day is None else frame.filter(pl.col("day") <= last_day)


def write_file(path: Path, frame: pl.DataFrame, *, fast: bool = False) -> Path:
    """Write one Parquet file atomically; ``fast`` trades size for speed (files read once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    frame.write_parquet(tmp, compression="lz4" if fast else "zstd")
    os.replace(tmp, path)
    return path
