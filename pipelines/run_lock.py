"""One learning run per home at a time, whoever starts it: `routing learn`, the daemon's
schedule, or **Materialize** in the UI.

The lock is an ``flock`` on ``ROUTING_HOME/.learn.lock``, held for the whole run: the kernel drops
it when the process dies, so a killed run never wedges the home. Its holder records a *lease*
beside it (``.learn.holder``): the Dagster run id, or for `routing learn` a token it configures
on its run (the ``routing_home`` resource's ``lease``).

Who gets in:

* the process that holds the lock, again (``reentrant``): `routing learn` takes it before it
  plans and then starts the run in-process;
* a step of the run that holds it, from another process (``lease``): the steps of
  `routing learn --workers N` run in child processes of the holder. An admitted step holds a
  shared ``flock`` on ``.learn.steps`` while it runs, so a step orphaned by a killed holder keeps
  the next run out until it ends;
* nobody else: any other run or process gets :class:`HomeBusyError` at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from routing_runtime import safe_fs

LOCK_NAME = ".learn.lock"
HOLDER_NAME = ".learn.holder"
STEPS_NAME = ".learn.steps"

_held: dict[str, int] = {}
_guard = threading.Lock()


class HomeBusyError(RuntimeError):
    """Another learning run holds the home."""


def _busy(home: Path, who: str, why: str = "") -> HomeBusyError:
    return HomeBusyError(f"another learning run is using {home} ({who} cannot start){why}; try again when it has finished")


@contextlib.contextmanager
def exclusive(home: Path, who: str = "`routing learn`", *, reentrant: bool = False, lease: str | None = None) -> Iterator[str]:
    """Hold ``home``'s learning lock, or raise :class:`HomeBusyError` at once (never wait: a
    nightly run that finds the home busy says so, and the next one learns the same days).
    ``reentrant``: also succeed when this process holds it already. ``lease``: the caller is a step
    of the run with this lease; it is admitted while that run holds the lock in another process.
    Yields the holder's lease (a new token when ``lease`` is None): a run started under this lock
    is configured with it, so its steps in other processes are admitted."""
    home = Path(home)
    key = str(home)
    with _guard:
        if key in _held and not reentrant:
            raise _busy(home, who)
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield _read_lease(home) or ""
        finally:
            with _guard:
                _held[key] -= 1
        return
    mine = lease or uuid.uuid4().hex
    with _open(home, LOCK_NAME) as lock:
        if not _try(lock, fcntl.LOCK_EX):
            if lease is None:
                raise _busy(home, who)
            with _admitted_step(home, who, lease):
                yield lease
            return
        try:
            _record(home, who, mine)
        except BaseException:
            fcntl.flock(lock, fcntl.LOCK_UN)
            raise
        with _guard:
            _held[key] = 1
        try:
            yield mine
        finally:
            with _guard:
                del _held[key]
            fcntl.flock(lock, fcntl.LOCK_UN)


def _record(home: Path, who: str, lease: str) -> None:
    """Record ``lease`` as the holder's (we hold the lock). A new holder first makes sure no step of
    an earlier holder still runs, and keeps admissions out until its lease is recorded."""
    if _read_lease(home) == lease:  # another step of our own run held it before: its steps may run
        _write_lease(home, lease)
        return
    with _open(home, STEPS_NAME) as steps:
        if not _try(steps, fcntl.LOCK_EX):
            raise _busy(home, who, ": a step of the previous run is still finishing")
        try:
            _write_lease(home, lease)
        finally:
            fcntl.flock(steps, fcntl.LOCK_UN)


@contextlib.contextmanager
def _admitted_step(home: Path, who: str, lease: str) -> Iterator[None]:
    """Run as a step of the holder's run, if ``lease`` is the holder's: a shared hold on the steps
    file for the step's length (taken before the lease is read, so a new holder sees it)."""
    with _open(home, STEPS_NAME) as steps:
        if not _try(steps, fcntl.LOCK_SH):
            raise _busy(home, who)
        try:
            if _read_lease(home) != lease:
                raise _busy(home, who)
            yield
        finally:
            fcntl.flock(steps, fcntl.LOCK_UN)


def _try(handle: IO[str], operation: int) -> bool:
    try:
        fcntl.flock(handle, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open(home: Path, name: str) -> IO[str]:
    path = home / name
    if os.path.islink(path):
        safe_fs.set_aside(home, path, f"a symlink where the learning lock's {name} belongs")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, safe_fs.file_mode(home))
    return os.fdopen(fd, "w")


def _read_lease(home: Path) -> str | None:
    try:
        fd = os.open(home / HOLDER_NAME, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        try:
            return str(json.loads(handle.read())["lease"])
        except (ValueError, KeyError, TypeError):
            return None


def _write_lease(home: Path, lease: str) -> None:
    """Replace the holder record in one rename: a reader sees the old lease or the new one."""
    tmp = home / f"{HOLDER_NAME}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, safe_fs.file_mode(home))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"lease": lease, "pid": os.getpid()}))
        os.replace(tmp, home / HOLDER_NAME)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
