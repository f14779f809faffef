"""The small hive-partitioned Parquet layer under ``ROUTING_HOME/lake``.

Layout (every path of the lake is built here and nowhere else):

* ``lake/<table>/day=YYYY-MM-DD/part-0.parquet``: a daily partition (area ``MAIN``);
* ``lake/quarantine/<table>/day=…/`` and ``lake/quarantine/<table>/undated/``: rows that failed;
* ``lake/_staged/<table>/day=…/<drop>.parquet``: inbox drops split by day, before ingestion;
* ``lake/<asset>/as_of=YYYY-MM-DD.parquet``: a learning step's value as of a day, and
  ``lake/<asset>/current.json``: which day its newest value is (what the next step loads);
* ``lake/model_routing_rules/version=N.parquet``: each published rule set.

A partition is replaced whole and atomically (write a hidden temporary folder, then rename), so a
re-run of a day gives the same files and a reader never sees a half-written partition. Hidden
names (``.tmp-*``, ``.old-*``) are never read, and what a killed run left of them is removed by
:meth:`Lake.remove_leftovers`. No link is followed: see :mod:`routing_runtime.safe_fs`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import uuid
from pathlib import Path

import polars as pl

from routing_runtime import safe_fs
from routing_runtime.faults import crashpoint
from routing_runtime.home import LAKE_DIR

MAIN = ""
QUARANTINE = "quarantine"
STAGED = "_staged"
UNDATED = "undated"
BUILT_FROM = "_built_from.json"
PART = "part-0.parquet"
CURRENT = "current.json"
_LEFTOVER_PREFIXES = (".tmp-", ".old-")


class Lake:
    """The lake of one home.

    >>> lake = Lake(Path("/srv/routing"))
    >>> lake.partition_dir("model_performance", dt.date(2026, 11, 30), QUARANTINE).as_posix()
    '/srv/routing/lake/quarantine/model_performance/day=2026-11-30'
    """

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.root = self.home / LAKE_DIR

    # ------------------------------------------------------------------ paths

    def _parts(self, area: str, table: str) -> tuple[str, ...]:
        return (LAKE_DIR, area, table) if area else (LAKE_DIR, table)

    def table_dir(self, table: str, area: str = MAIN) -> Path:
        return self.home.joinpath(*self._parts(area, table))

    def partition_dir(self, table: str, day: dt.date | str, area: str = MAIN) -> Path:
        return self.table_dir(table, area) / f"day={day}"

    def folders(self) -> list[tuple[str, ...]]:
        """The lake's folders below the home, each a tuple of parts, for a sweep at start.
        Partition folders included: a link can hide at any level."""
        found = [(LAKE_DIR,), (LAKE_DIR, QUARANTINE), (LAKE_DIR, STAGED)]
        for folder, dirs, _ in os.walk(self.root, followlinks=False):
            relative = os.path.relpath(folder, self.home).split(os.sep)
            for name in dirs:
                if not name.startswith("."):
                    found.append((*relative, name))
        return found

    # ------------------------------------------------------------------ partitions

    def write_partition(
        self, table: str, day: dt.date | str, frame: pl.DataFrame, area: str = MAIN, *, built_from: str | None = None,
    ) -> Path:
        """Replace the partition ``day`` of ``table`` with ``frame`` (an empty frame clears it).

        ``built_from`` (a fingerprint of the inputs) is stored inside the partition, in the same
        rename, so the partition and the record of what it was built from never disagree.
        """
        parent = safe_fs.ensure_dir(self.home, *self._parts(area, table))
        target = parent / f"day={day}"
        staging = parent / f".tmp-{target.name}-{uuid.uuid4().hex}"
        os.mkdir(staging, safe_fs.dir_mode(self.home))
        try:
            files = {}
            if frame.height:
                self._write(frame, staging / PART, statistics=True)
                files[PART] = os.path.getsize(staging / PART)
            if built_from is not None:
                record = {"built_from": built_from, "files": files}
                (staging / BUILT_FROM).write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
            old = None
            info = _lstat(target)
            if info is not None:
                if not stat.S_ISDIR(info.st_mode):
                    safe_fs.set_aside(self.home, target, "a symlink or file where a partition belongs")
                else:
                    old = parent / f".old-{target.name}-{uuid.uuid4().hex}"
                    os.replace(target, old)
                    crashpoint("lake:partition_moved_aside")
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def has_partition(self, table: str, day: dt.date | str, area: str = MAIN) -> bool:
        info = _lstat(self.partition_dir(table, day, area))
        return info is not None and stat.S_ISDIR(info.st_mode)

    def built_from(self, table: str, day: dt.date | str, area: str = MAIN) -> str | None:
        """The fingerprint the partition was built from; None when it is missing, was never
        recorded, or its files are not the ones written (deleted, truncated, replaced): such a
        partition is built again, never read as if its evidence were complete."""
        folder = self.partition_dir(table, day, area)
        path = folder / BUILT_FROM
        if not self.has_partition(table, day, area) or not safe_fs.is_regular_file(path):
            return None
        try:
            record = json.loads(safe_fs.read_bytes(path))
            files = record["files"]
            intact = all(_size(folder / name) == size for name, size in files.items())
            intact = intact and {f.name for f in self.partition_files(table, day, area)} == set(files)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return record["built_from"] if intact else None

    def partition_files(self, table: str, day: dt.date | str, area: str = MAIN) -> list[Path]:
        return safe_fs.list_files(self.home, self.partition_dir(table, day, area), (".parquet",))

    def read_partition(self, table: str, day: dt.date | str, area: str = MAIN) -> pl.DataFrame | None:
        files = self.partition_files(table, day, area)
        return pl.read_parquet(files) if files else None

    def partition_days(self, table: str, area: str = MAIN) -> list[dt.date]:
        """Days that have a partition folder of ``table`` (hidden and linked ones left out)."""
        days = []
        for folder in safe_fs.list_dirs(self.table_dir(table, area), "day="):
            try:
                days.append(dt.date.fromisoformat(folder.name[4:]))
            except ValueError:
                continue
        return days

    def scan_days(self, table: str, last_day: dt.date | None = None) -> pl.LazyFrame | None:
        """All partitions of ``table`` (up to ``last_day``) with ``day`` as a Date column.

        Files are listed here (not by a glob, which would match hidden and linked files).
        """
        files = [
            f for day in self.partition_days(table) if last_day is None or day <= last_day
            for f in self.partition_files(table, day)
        ]
        if not files:
            return None
        return pl.scan_parquet(files, hive_partitioning=True, hive_schema={"day": pl.Date})

    # ------------------------------------------------------------------ step values

    def write_value(self, asset: str, as_of: dt.date, frame: pl.DataFrame) -> Path:
        """Store ``asset``'s value as of ``as_of`` and make it the current one (each file replaced
        atomically: the pointer is written last, so it never names a missing file)."""
        path = self.write_file(asset, f"as_of={as_of}.parquet", frame=frame)
        self._write_text(self.file_path(asset, CURRENT), json.dumps({"as_of": str(as_of)}))
        return path

    def read_value(self, asset: str) -> tuple[dt.date, pl.DataFrame]:
        """The current value of ``asset`` and its day; a clear error when none was stored."""
        pointer = self.file_path(asset, CURRENT)
        try:
            as_of = dt.date.fromisoformat(json.loads(safe_fs.read_bytes(pointer))["as_of"])
        except (OSError, ValueError, KeyError, TypeError):
            raise FileNotFoundError(
                f"{asset} has no stored value in {self.root / asset}: materialize {asset} first"
                " (or run the nightly_learning job, `routing learn`)"
            ) from None
        return as_of, self.read_file(asset, f"as_of={as_of}.parquet")

    def value_days(self, asset: str) -> list[dt.date]:
        """Days with a stored value of ``asset``, oldest first."""
        days = []
        for path in self.files(asset):
            if path.name.startswith("as_of="):
                try:
                    days.append(dt.date.fromisoformat(path.name[len("as_of="):-len(".parquet")]))
                except ValueError:
                    continue
        return sorted(days)

    def read_value_as_of(self, asset: str, as_of: dt.date) -> pl.DataFrame | None:
        """``asset``'s value as of ``as_of`` exactly, or None when that day has none."""
        path = self.file_path(asset, f"as_of={as_of}.parquet")
        return pl.read_parquet(path) if safe_fs.is_regular_file(path) else None

    def write_rule_set(self, asset: str, version: int, frame: pl.DataFrame) -> Path:
        """The snapshot of published rule set ``version``."""
        return self.write_file(asset, f"version={version}.parquet", frame=frame)

    # ------------------------------------------------------------------ single files

    def staged_file(self, table: str, day: dt.date | str, stem: str) -> Path:
        """The rows one inbox drop has on ``day``, as staged."""
        return self.file_path(STAGED, table, f"day={day}", f"{stem}.parquet")

    def write_staged(self, table: str, day: dt.date | str, stem: str, frame: pl.DataFrame) -> Path:
        """Stage the rows one inbox drop has on ``day`` (read once, so written fast)."""
        return self.write_file(STAGED, table, f"day={day}", f"{stem}.parquet", frame=frame, fast=True)

    def write_undated_quarantine(self, table: str, stem: str, frame: pl.DataFrame) -> Path:
        """The rows of one drop that cannot be dated (no day partition to put them in)."""
        return self.write_file(QUARANTINE, table, UNDATED, f"{stem}.parquet", frame=frame)

    def file_path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def write_file(self, *parts: str, frame: pl.DataFrame, fast: bool = False) -> Path:
        """Write ``lake/<parts…>`` atomically; ``fast`` trades size for speed (files read once)."""
        *folders, name = parts
        parent = safe_fs.ensure_dir(self.home, LAKE_DIR, *folders)
        name = safe_fs.safe_name(name)
        tmp = parent / f".tmp-{uuid.uuid4().hex}"
        try:
            self._write(frame, tmp, compression="lz4" if fast else "zstd")
            os.replace(tmp, parent / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return parent / name

    def read_file(self, *parts: str, columns: list[str] | None = None) -> pl.DataFrame:
        path = self.file_path(*parts)
        if not safe_fs.is_regular_file(path):
            raise FileNotFoundError(f"{path} is missing (or not a regular file): re-run `routing learn`")
        return pl.read_parquet(path, columns=columns)

    def files(self, *parts: str) -> list[Path]:
        return safe_fs.list_files(self.home, self.file_path(*parts), (".parquet",))

    def remove(self, path: Path) -> None:
        """Delete one file of the lake (never through a link)."""
        if safe_fs.is_regular_file(path):
            path.unlink()

    # ------------------------------------------------------------------ housekeeping

    def remove_leftovers(self) -> int:
        """Delete the hidden temporary and replaced folders and files a killed run left behind.

        Call only while holding the home's learning lock: then no other writer is mid-write.
        """
        removed = 0
        if _lstat(self.root) is None:
            return 0
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            for name in [*dirs, *files]:
                if name.startswith(_LEFTOVER_PREFIXES):
                    path = os.path.join(folder, name)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)
                    removed += 1
            dirs[:] = [d for d in dirs if not d.startswith(_LEFTOVER_PREFIXES)]
        return removed

    def _write_text(self, path: Path, text: str) -> None:
        parent = safe_fs.ensure_dir(self.home, *path.parent.relative_to(self.home).parts)
        tmp = parent / f".tmp-{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, safe_fs.file_mode(self.home))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _write(self, frame: pl.DataFrame, path: Path, **options) -> None:
        frame.write_parquet(path, **options)
        os.chmod(path, safe_fs.file_mode(self.home))


def _size(path: Path) -> int | None:
    info = _lstat(path)
    return info.st_size if info is not None and stat.S_ISREG(info.st_mode) else None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
