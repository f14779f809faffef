"""Files under ``ROUTING_HOME``: nothing outside the home is read or written through it.

Every folder the product writes is walked from the home down, one component at a time, and a
component that is a symlink (or not a folder) is *set aside*: renamed into ``set_aside/`` (the
link itself moves, never its target) and reported, then a real folder takes its place. Files
are listed without following links, and read through ``O_NOFOLLOW``. Modes come from the home
itself: a home created by ``routing init`` is private (``0700``, files ``0600``); a home given
group access (``routing init --group-access``, mode ``2770``) shares with its group.

Standard library only: the runtime uses it for ``routing init`` and ``routing status``.
"""

from __future__ import annotations

import contextlib
import os
import stat

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

SET_ASIDE = "set_aside"
PRIVATE_DIR_MODE = 0o700
GROUP_DIR_MODE = 0o2770  # setgid: files created inside keep the home's group
#: Longest file name written under the home; most filesystems allow 255 bytes.
MAX_NAME_BYTES = 200

_set_aside_log: list[str] = []


class UnsafePathError(OSError):
    """A path the product would read or write leaves the home; the message names it."""


def is_read_only(path: Path) -> bool:
    """Whether ``path`` cannot be written: a read-only mount, or no write permission."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY) or not os.access(path, os.W_OK)
    except OSError:
        return False


def group_access(home: Path) -> bool:
    """Whether ``home`` shares with its group (its own mode has group bits)."""
    try:
        return bool(os.lstat(home).st_mode & stat.S_IRWXG)
    except FileNotFoundError:
        return False


def dir_mode(home: Path) -> int:
    return GROUP_DIR_MODE if group_access(home) else PRIVATE_DIR_MODE


def file_mode(home: Path) -> int:
    return 0o660 if group_access(home) else 0o600


def umask_for(home: Path) -> int:
    return 0o007 if group_access(home) else 0o077


@contextlib.contextmanager
def home_umask(home: Path):
    """Files created in the block (also by libraries: SQLite, Dagster) get the home's modes.

    The umask is per process: use this around whole commands (``routing learn``), not in a
    multi-threaded agent process.
    """
    previous = os.umask(umask_for(home))
    try:
        yield
    finally:
        os.umask(previous)


def set_aside(home: Path, path: Path, why: str) -> Path:
    """Move the entry ``path`` (a link, or a file where a folder belongs) into ``home/set_aside``
    without following it, and remember it for the next report."""
    import uuid
    from pathlib import Path as _Path

    target_dir = _Path(home, SET_ASIDE)
    try:
        info = os.lstat(target_dir)
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(target_dir)  # a link here is removed itself; its target is never touched
            raise FileNotFoundError
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            os.mkdir(target_dir, dir_mode(home))
    name = safe_name(f"{uuid.uuid4().hex[:12]}-{path.name}")
    target = _Path(target_dir, name)
    os.rename(path, target)
    relative = _display(path, home)
    _set_aside_log.append(f"{relative}: {why}; moved to {SET_ASIDE}/{name}, not read")
    return target


def drain_set_aside() -> list[str]:
    """What was set aside since the last call (``routing learn`` reports it as problems)."""
    items = list(_set_aside_log)
    _set_aside_log.clear()
    return items


def ensure_dir(home: Path, *parts: str) -> Path:
    """``home/parts...`` as real folders: created with the home's mode where missing; a component
    that is a link or a file is set aside and replaced by a folder."""
    from pathlib import Path as _Path

    current = _Path(home)
    mode = dir_mode(home)
    for part in (p for given in parts for p in str(given).split("/") if p):
        if part in (".", ".."):
            raise UnsafePathError(f"{part!r} in a path under {home}: paths must stay inside the home")
        current = current / part
        for _ in range(3):  # another process may create or replace it at the same moment
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                try:
                    os.mkdir(current, mode)
                    _apply_mode(current, mode)
                except FileExistsError:
                    continue
                break
            if stat.S_ISDIR(info.st_mode):
                break
            what = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a folder"
            set_aside(home, current, f"{what} where a folder belongs")
        else:
            raise UnsafePathError(f"{current} keeps changing under the home: is another program writing there?")
    return current


def _apply_mode(path: Path, mode: int) -> None:
    # mkdir's mode is cut by the umask; setgid needs an explicit chmod.
    try:
        os.chmod(path, mode)
    except PermissionError:
        pass


def is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def list_files(home: Path, folder: Path, suffixes: tuple[str, ...] = (), *, set_aside_links: bool = True) -> list[Path]:
    """Regular files in ``folder`` (not hidden: those are uploads and writes in progress), sorted;
    ``suffixes`` compared case-insensitively. Links are set aside (or skipped), never followed."""
    from pathlib import Path as _Path

    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(info.st_mode):
        return []
    files = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                if set_aside_links:
                    set_aside(home, _Path(entry.path), "a symlink")
                continue
            if entry.is_file(follow_symlinks=False) and (not suffixes or entry.name.lower().endswith(suffixes)):
                files.append(_Path(entry.path))
    return sorted(files)


def list_dirs(folder: Path, prefix: str = "") -> list[Path]:
    """Real (not linked, not hidden) sub-folders of ``folder`` whose names start with ``prefix``."""
    from pathlib import Path as _Path

    try:
        with os.scandir(folder) as entries:
            return sorted(
                _Path(e.path) for e in entries
                if not e.name.startswith(".") and e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


def special_entries(folder: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Names in ``folder`` that are neither regular files, links nor hidden (folders, pipes,
    devices): never read, reported."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                e.name for e in entries
                if not e.name.startswith(".") and e.name not in skip and not e.is_symlink() and not e.is_file(follow_symlinks=False)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


def sweep_links(home: Path, *folders: str) -> None:
    """Set aside every link found below ``home/folder`` (files or folders, at any depth), so that
    no library writing there (SQLite, Dagster) can be led outside the home."""
    for name in folders:
        root = os.path.join(home, name)
        if not os.path.lexists(root):
            continue
        if os.path.islink(root):
            set_aside(home, _path(root), "a symlink")
            continue
        for folder, dirs, files in os.walk(root, followlinks=False):
            for entry in [*dirs, *files]:
                path = os.path.join(folder, entry)
                if os.path.islink(path):
                    set_aside(home, _path(path), "a symlink")
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]


def _path(text: str) -> Path:
    from pathlib import Path as _Path

    return _Path(text)


def read_bytes(path: Path, *, single_link: bool = False) -> bytes:
    """The content of a regular file, refusing links (``O_NOFOLLOW``) and special files; with
    ``single_link``, also a file with other hard links (its other name may be outside the home)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePathError(f"{path} is not a regular file")
        if single_link and info.st_nlink > 1:
            raise UnsafePathError("a hard link (the same file has another name, maybe outside the home)")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def refuse_linked_database(home: Path, db_name: str) -> None:
    """SQLite follows a link in place of its database or its journal files, and would write
    outside the home: refuse, naming the link and the fix."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = os.path.join(home, db_name + suffix)
        if os.path.islink(path):
            raise UnsafePathError(
                f"{path} is a symlink: routing never writes through links under the home; replace it with the file"
                " it points to (or remove it, for -wal/-shm/-journal, when no router is running)"
            )


def create_private_file(home: Path, path: Path) -> None:
    """Create ``path`` (if missing) with the home's file mode, so that SQLite and its WAL files
    are never readable by others; refuses a link in its place."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, file_mode(home))
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafePathError(f"{path} is a symlink: routing never writes through links under the home") from None
        raise exc
    try:
        os.fchmod(fd, file_mode(home))  # the umask may have cut the mode given to open
    except PermissionError:
        pass  # another user's file in a shared home: its owner set the mode
    finally:
        os.close(fd)


def safe_name(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes (whole characters), with path separators, NUL,
    control characters and undecodable bytes replaced, so it is a valid file name anywhere.

    >>> safe_name("a/b\\x00c")
    'a_b_c'
    >>> len(safe_name("é" * 300).encode())
    200

    Leading dots go too, so a name can neither climb out of its folder nor hide in it:

    >>> safe_name("../etc/passwd"), safe_name("")
    ('_etc_passwd', '_')
    """
    cleaned = "".join(
        "_" if c in "/\\\x00" or ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF else c for c in name
    ).lstrip(".") or "_"
    encoded = cleaned.encode("utf-8")
    if len(encoded) <= limit:
        return cleaned
    return encoded[:limit].decode("utf-8", errors="ignore")


def display_name(name: str) -> str:
    """A file name as printable text (undecodable bytes escaped), for reports and quarantine rows.

    A name listed from disk may hold bytes that are not UTF-8 (``os.listdir`` keeps them as
    surrogates); they would make a report or a Parquet string column fail to encode:

    >>> display_name("caf\\udce9.jsonl")
    'caf\\\\xe9.jsonl'
    >>> display_name("café.jsonl")
    'café.jsonl'
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _display(path: Path, home: Path) -> str:
    try:
        return display_name(str(path.relative_to(home)))
    except ValueError:
        return display_name(str(path))
