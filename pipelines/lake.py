"""The small hive-partitioned Parquet layer: ``ROUTING_HOME/lake``, or ``<hub>/lake`` for a home
tied to a hub (``routing init --hub``), where the learner keeps it so that nothing of it stays on
the learner's machine.

Layout (every path of the lake is built here and nowhere else; the same under a hub):

* ``lake/<table>/day=YYYY-MM-DD/part-0.parquet``: a daily partition (area ``MAIN``), and
  ``lake/_built_from/<table>/day=YYYY-MM-DD.json``: what it was built from, with its files' sizes;
* ``lake/quarantine/<table>/day=…/`` and ``lake/quarantine/<table>/undated/``: rows that failed;
* ``lake/_staged/<table>/day=…/<drop>.parquet``: inbox drops split by day, before ingestion;
* ``lake/<asset>/as_of=YYYY-MM-DD.parquet``: a learning step's value as of a day, and
  ``lake/<asset>/current.json``: which day its newest value is (what the next step loads);
* ``lake/model_routing_rules/version=N.parquet``: each published rule set.

Two places hold a lake, behind one interface (:class:`_Folder`, :class:`_ObjectStore`):

* a folder (the home's own, or a hub on a shared filesystem): a partition is replaced whole and
  atomically (a hidden temporary folder, then a rename), so a reader never sees half of one.
  Hidden names (``.tmp-*``, ``.old-*``) are never read, and what a killed run left of them is
  removed by :meth:`Lake.remove_leftovers`. No link is followed: see :mod:`routing_runtime.safe_fs`;
* an S3 prefix (:mod:`routing_runtime.hub`): each object is written whole; a partition's record of
  what it was built from is removed first and written last, with the sizes of its files, so a
  partition that a killed run left half-replaced is found stale and built again, never trusted.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import stat
import uuid
from pathlib import Path

import polars as pl

from routing_runtime import safe_fs
from routing_runtime.faults import crashpoint
from routing_runtime.home import DB_NAME, LAKE_DIR
from routing_runtime.hub import Hub
from routing_runtime.store import Store

MAIN = ""
QUARANTINE = "quarantine"
STAGED = "_staged"
UNDATED = "undated"
BUILT_FROM = "_built_from"
PART = "part-0.parquet"
CURRENT = "current.json"
_LEFTOVER_PREFIXES = (".tmp-", ".old-")


class Lake:
    """The lake of one home: in the home, or on the hub the home is tied to.

    >>> lake = Lake(Path("/srv/routing"))
    >>> lake.partition_dir("model_performance", dt.date(2026, 11, 30), QUARANTINE).as_posix()
    '/srv/routing/lake/quarantine/model_performance/day=2026-11-30'
    >>> Lake(Path("/srv/routing"), hub=Hub.parse("s3://fleet/prod")).location("model_performance")
    's3://fleet/prod/lake/model_performance'
    """

    def __init__(self, home: Path, *, hub: Hub | None = None) -> None:
        self.home = Path(home)
        if hub is None:
            hub = _tied_hub(self.home)
        self.hub = hub
        if hub is None:
            self._files: _Folder | _ObjectStore = _Folder(self.home)
        elif isinstance(hub.storage_options, dict):
            self._files = _ObjectStore(hub)
        else:
            self._files = _Folder(Path(hub.uri(LAKE_DIR)).parent)
        self.root = self._files.source(())
        self._staged: dict[tuple[str, str], set[str]] = {}

    @property
    def storage_options(self) -> dict[str, str] | None:
        """What Polars needs to read :meth:`location` and the files this lake lists."""
        return self._files.storage_options

    # ------------------------------------------------------------------ paths

    @staticmethod
    def _parts(area: str, table: str) -> tuple[str, ...]:
        return (area, table) if area else (table,)

    def table_dir(self, table: str, area: str = MAIN) -> Path | str:
        return self._files.source(self._parts(area, table))

    def location(self, table: str, area: str = MAIN) -> str:
        """Where ``table`` lives, as text (a path or an ``s3://`` URL), for reports."""
        return str(self.table_dir(table, area))

    def partition_dir(self, table: str, day: dt.date | str, area: str = MAIN) -> Path | str:
        return self._files.source((*self._parts(area, table), f"day={day}"))

    def prepare(self) -> None:
        """Make the lake's folders real folders of their place, setting aside links found in
        them, before anything writes there (a folder lake; nothing to do on an object store)."""
        self._files.prepare()

    # ------------------------------------------------------------------ partitions

    def write_partition(
        self, table: str, day: dt.date | str, frame: pl.DataFrame, area: str = MAIN, *, built_from: str | None = None,
    ) -> Path | str:
        """Replace the partition ``day`` of ``table`` with ``frame`` (an empty frame clears it).

        ``built_from`` (a fingerprint of the inputs) is recorded beside the partition with the sizes
        of its files, so a partition whose files are not the ones recorded is never trusted. The
        record is removed first and written last: a partition a killed run left half-replaced
        has none, and is built again. (Beside, not inside: a partition folder holds only Parquet
        files, so ``polars.scan_parquet(<lake>/<table>, hive_partitioning=True)`` reads the table.)
        """
        record = self._record_parts(table, day, area)
        self._files.remove(record)
        location, files = self._files.write_partition((*self._parts(area, table), f"day={day}"), frame)
        if built_from is not None:
            self._files.write(record, json.dumps({"built_from": built_from, "files": files}, sort_keys=True).encode())
        return location

    def _record_parts(self, table: str, day: dt.date | str, area: str) -> tuple[str, ...]:
        return (BUILT_FROM, *self._parts(area, table), f"day={day}.json")

    def has_partition(self, table: str, day: dt.date | str, area: str = MAIN) -> bool:
        return self._files.has_folder((*self._parts(area, table), f"day={day}"))

    def built_from(self, table: str, day: dt.date | str, area: str = MAIN) -> str | None:
        """The fingerprint the partition was built from; None when it is missing, was never
        recorded, or its files are not the ones written (deleted, truncated, replaced): such a
        partition is built again, never read as if its evidence were complete."""
        folder = (*self._parts(area, table), f"day={day}")
        try:
            record = json.loads(self._files.read(self._record_parts(table, day, area)))
            files = record["files"]
            sizes = self._files.file_sizes(folder, (".parquet",))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return record["built_from"] if isinstance(files, dict) and sizes == files else None

    def partition_files(self, table: str, day: dt.date | str, area: str = MAIN) -> list[Path | str]:
        folder = (*self._parts(area, table), f"day={day}")
        return [self._files.source((*folder, name)) for name in sorted(self._files.file_sizes(folder, (".parquet",)))]

    def read_partition(self, table: str, day: dt.date | str, area: str = MAIN) -> pl.DataFrame | None:
        files = self.partition_files(table, day, area)
        return pl.read_parquet(files, storage_options=self.storage_options) if files else None

    def partition_rows(self, table: str, day: dt.date | str, area: str = MAIN) -> int:
        """Rows of the partition (from the files' metadata), 0 when there is none."""
        files = self.partition_files(table, day, area)
        if not files:
            return 0
        return int(pl.scan_parquet(files, storage_options=self.storage_options).select(pl.len()).collect().item())

    def partition_days(self, table: str, area: str = MAIN) -> list[dt.date]:
        """Days that have a partition folder of ``table`` (hidden and linked ones left out)."""
        days = []
        for name in self._files.folders_in(self._parts(area, table), "day="):
            try:
                days.append(dt.date.fromisoformat(name[4:]))
            except ValueError:
                continue
        return sorted(days)

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
        return pl.scan_parquet(files, hive_partitioning=True, hive_schema={"day": pl.Date}, storage_options=self.storage_options)

    # ------------------------------------------------------------------ step values

    def write_value(self, asset: str, as_of: dt.date, frame: pl.DataFrame) -> Path | str:
        """Store ``asset``'s value as of ``as_of`` and make it the current one (each file replaced
        atomically: the pointer is written last, so it never names a missing file)."""
        location = self.write_file(asset, f"as_of={as_of}.parquet", frame=frame)
        self._files.write((asset, CURRENT), json.dumps({"as_of": str(as_of)}).encode())
        return location

    def read_value(self, asset: str) -> tuple[dt.date, pl.DataFrame]:
        """The current value of ``asset`` and its day; a clear error when none was stored."""
        try:
            as_of = dt.date.fromisoformat(json.loads(self._files.read((asset, CURRENT)))["as_of"])
        except (OSError, ValueError, KeyError, TypeError):
            raise FileNotFoundError(
                f"{asset} has no stored value in {self.location(asset)}: materialize {asset} first"
                " (or run the nightly_learning job, `routing learn`)"
            ) from None
        return as_of, self.read_file(asset, f"as_of={as_of}.parquet")

    def value_days(self, asset: str) -> list[dt.date]:
        """Days with a stored value of ``asset``, oldest first."""
        days = []
        for name in self._files.file_sizes((asset,), (".parquet",)):
            if name.startswith("as_of="):
                try:
                    days.append(dt.date.fromisoformat(name[len("as_of="):-len(".parquet")]))
                except ValueError:
                    continue
        return sorted(days)

    def read_value_as_of(self, asset: str, as_of: dt.date) -> pl.DataFrame | None:
        """``asset``'s value as of ``as_of`` exactly, or None when that day has none."""
        try:
            return self.read_file(asset, f"as_of={as_of}.parquet")
        except FileNotFoundError:
            return None

    def write_rule_set(self, asset: str, version: int, frame: pl.DataFrame) -> Path | str:
        """The snapshot of published rule set ``version``."""
        return self.write_file(asset, f"version={version}.parquet", frame=frame)

    # ------------------------------------------------------------------ staged drops

    def write_staged(self, table: str, day: dt.date | str, stem: str, frame: pl.DataFrame) -> Path | str:
        """Stage the rows one inbox drop has on ``day`` (read once, so written fast)."""
        location = self.write_file(STAGED, table, f"day={day}", f"{stem}.parquet", frame=frame, fast=True)
        self._staged.pop((table, str(day)), None)
        return location

    def has_staged(self, table: str, day: dt.date | str, stem: str) -> bool:
        return f"{safe_fs.safe_name(stem)}.parquet" in self._staged_names(table, day)

    def _staged_names(self, table: str, day: dt.date | str) -> set[str]:
        """The staged files of a day, listed once per lake object (a fleet stages thousands of
        segments; one listing per question would make planning quadratic on an object store)."""
        key = (table, str(day))
        if key not in self._staged:
            self._staged[key] = set(self._files.file_sizes((STAGED, table, f"day={day}"), (".parquet",)))
        return self._staged[key]

    def read_staged(self, table: str, day: dt.date | str, stems: list[str]) -> pl.DataFrame | None:
        """The staged rows of ``day`` from exactly the drops ``stems``; None when there are none.
        Raises :class:`FileNotFoundError` naming the drops whose staged rows are missing."""
        missing = [stem for stem in stems if not self.has_staged(table, day, stem)]
        if missing:
            raise FileNotFoundError(", ".join(f"{stem}.parquet" for stem in missing[:3]))
        files = [self._files.source((STAGED, table, f"day={day}", f"{safe_fs.safe_name(stem)}.parquet")) for stem in stems]
        return pl.read_parquet(files, storage_options=self.storage_options) if files else None

    def write_undated_quarantine(self, table: str, stem: str, frame: pl.DataFrame) -> Path | str:
        """The rows of one drop that cannot be dated (no day partition to put them in)."""
        return self.write_file(QUARANTINE, table, UNDATED, f"{stem}.parquet", frame=frame)

    # ------------------------------------------------------------------ single files

    def write_file(self, *parts: str, frame: pl.DataFrame, fast: bool = False) -> Path | str:
        """Write ``lake/<parts…>`` atomically; ``fast`` trades size for speed (files read once)."""
        *folders, name = parts
        return self._files.write_frame((*folders, safe_fs.safe_name(name)), frame, compression="lz4" if fast else "zstd")

    def read_file(self, *parts: str, columns: list[str] | None = None) -> pl.DataFrame:
        if self._files.file_size(parts) is None:
            raise FileNotFoundError(f"{self._files.source(parts)} is missing (or not a regular file): re-run `routing learn`")
        return pl.read_parquet(self._files.source(parts), columns=columns, storage_options=self.storage_options)

    # ------------------------------------------------------------------ housekeeping

    def remove_leftovers(self) -> int:
        """Delete the hidden temporary and replaced folders and files a killed run left behind.

        Call only while holding the home's learning lock: then no other writer is mid-write.
        """
        return self._files.remove_leftovers()


def _tied_hub(home: Path) -> Hub | None:
    """The hub ``home`` is tied to (``routing init --hub``), or None for a home with its own lake."""
    if not safe_fs.is_regular_file(home / DB_NAME):
        return None
    with Store.open(home / DB_NAME, read_only=True) as db:
        tie = db.hub_tie() if db.schema_version() else None
    return Hub.parse(tie[0]) if tie else None


def _frame_bytes(frame: pl.DataFrame, **options) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, **options)
    return buffer.getvalue()


class _Folder:
    """A lake in a folder: ``<anchor>/lake``. Nothing is read or written through a link."""

    storage_options = None

    def __init__(self, anchor: Path) -> None:
        self.anchor = anchor
        self.root = anchor / LAKE_DIR

    def source(self, parts: tuple[str, ...]) -> Path:
        return self.root.joinpath(*parts)

    def prepare(self) -> None:
        safe_fs.sweep_links(self.anchor, LAKE_DIR)
        found = [(), (QUARANTINE,), (STAGED,)]
        for folder, dirs, _ in os.walk(self.root, followlinks=False):
            relative = os.path.relpath(folder, self.root)
            for name in dirs:
                if not name.startswith("."):
                    found.append((*([] if relative == "." else relative.split(os.sep)), name))
        for parts in found:
            safe_fs.ensure_dir(self.anchor, LAKE_DIR, *parts)

    def write_partition(self, parts: tuple[str, ...], frame: pl.DataFrame) -> tuple[Path, dict[str, int]]:
        """Replace the folder ``parts`` by one holding ``frame`` in one rename; its files' sizes."""
        *folders, name = parts
        parent = safe_fs.ensure_dir(self.anchor, LAKE_DIR, *folders)
        target = parent / name
        staging = parent / f".tmp-{name}-{uuid.uuid4().hex}"
        os.mkdir(staging, safe_fs.dir_mode(self.anchor))
        try:
            files = {}
            if frame.height:
                self._write(frame, staging / PART, statistics=True)
                files[PART] = os.path.getsize(staging / PART)
            old = None
            info = _lstat(target)
            if info is not None:
                if not stat.S_ISDIR(info.st_mode):
                    safe_fs.set_aside(self.anchor, target, "a symlink or file where a partition belongs")
                else:
                    old = parent / f".old-{name}-{uuid.uuid4().hex}"
                    os.replace(target, old)
                    crashpoint("lake:partition_moved_aside")
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target, files

    def remove(self, parts: tuple[str, ...]) -> None:
        path = self.source(parts)
        if safe_fs.is_regular_file(path):
            path.unlink()

    def has_folder(self, parts: tuple[str, ...]) -> bool:
        info = _lstat(self.source(parts))
        return info is not None and stat.S_ISDIR(info.st_mode)

    def folders_in(self, parts: tuple[str, ...], prefix: str) -> list[str]:
        return [folder.name for folder in safe_fs.list_dirs(self.source(parts), prefix)]

    def file_sizes(self, parts: tuple[str, ...], suffixes: tuple[str, ...]) -> dict[str, int]:
        """Regular files of the folder ``parts`` by name (links set aside, hidden ones left out)."""
        return {f.name: f.lstat().st_size for f in safe_fs.list_files(self.anchor, self.source(parts), suffixes)}

    def file_size(self, parts: tuple[str, ...]) -> int | None:
        return _size(self.source(parts))

    def read(self, parts: tuple[str, ...]) -> bytes:
        return safe_fs.read_bytes(self.source(parts))

    def write(self, parts: tuple[str, ...], data: bytes) -> Path:
        return self._atomic(parts, lambda tmp: _write_private(tmp, data, safe_fs.file_mode(self.anchor)))

    def write_frame(self, parts: tuple[str, ...], frame: pl.DataFrame, **options) -> Path:
        return self._atomic(parts, lambda tmp: self._write(frame, tmp, **options))

    def _atomic(self, parts: tuple[str, ...], write) -> Path:
        *folders, name = parts
        parent = safe_fs.ensure_dir(self.anchor, LAKE_DIR, *folders)
        tmp = parent / f".tmp-{uuid.uuid4().hex}"
        try:
            write(tmp)
            os.replace(tmp, parent / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return parent / name

    def _write(self, frame: pl.DataFrame, path: Path, **options) -> None:
        frame.write_parquet(path, **options)
        os.chmod(path, safe_fs.file_mode(self.anchor))

    def remove_leftovers(self) -> int:
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


class _ObjectStore:
    """A lake under ``<hub>/lake`` on an object store: keys instead of folders, each object whole."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.storage_options = hub.storage_options

    @staticmethod
    def _key(parts: tuple[str, ...]) -> str:
        return "/".join((LAKE_DIR, *parts))

    def source(self, parts: tuple[str, ...]) -> str:
        return self.hub.uri(self._key(parts))

    def prepare(self) -> None:
        """Nothing: an object store has no folders to make and no links to follow."""

    def write_partition(self, parts: tuple[str, ...], frame: pl.DataFrame) -> tuple[str, dict[str, int]]:
        """Replace the objects below ``parts`` by one holding ``frame``; their sizes."""
        files = {}
        if frame.height:
            data = _frame_bytes(frame, statistics=True)
            self.hub.put(self._key((*parts, PART)), data)
            files[PART] = len(data)
        for name in self.file_sizes(parts, (".parquet",)):
            if name not in files:
                self.hub.delete(self._key((*parts, name)))
        crashpoint("lake:partition_moved_aside")
        return self.source(parts), files

    def remove(self, parts: tuple[str, ...]) -> None:
        self.hub.delete(self._key(parts))

    def has_folder(self, parts: tuple[str, ...]) -> bool:
        return bool(self.hub.list(self._key(parts)))

    def folders_in(self, parts: tuple[str, ...], prefix: str) -> list[str]:
        base = self._key(parts) + "/"
        names = {obj.key[len(base):].split("/", 1)[0] for obj in self.hub.list(self._key(parts)) if "/" in obj.key[len(base):]}
        return sorted(n for n in names if n.startswith(prefix))

    def file_sizes(self, parts: tuple[str, ...], suffixes: tuple[str, ...]) -> dict[str, int]:
        base = self._key(parts) + "/"
        return {
            obj.key[len(base):]: obj.size for obj in self.hub.list(self._key(parts))
            if "/" not in obj.key[len(base):] and (not suffixes or obj.key.lower().endswith(suffixes))
        }

    def file_size(self, parts: tuple[str, ...]) -> int | None:
        *folder, name = parts
        return self.file_sizes(tuple(folder), ()).get(name)

    def read(self, parts: tuple[str, ...]) -> bytes:
        return self.hub.get(self._key(parts))

    def write(self, parts: tuple[str, ...], data: bytes) -> str:
        self.hub.put(self._key(parts), data)
        return self.source(parts)

    def write_frame(self, parts: tuple[str, ...], frame: pl.DataFrame, **options) -> str:
        return self.write(parts, _frame_bytes(frame, **options))

    def remove_leftovers(self) -> int:
        return 0  # nothing is written under a temporary name on an object store


def _write_private(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _size(path: Path) -> int | None:
    info = _lstat(path)
    return info.st_size if info is not None and stat.S_ISREG(info.st_mode) else None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
