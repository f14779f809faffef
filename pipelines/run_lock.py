"""One learning run per home at a time, whoever starts it: `routing learn`, the daemon's
schedule, or **Materialize** in the UI.

The lock is an ``flock`` on ``ROUTING_HOME/.learn.lock``, held for the whole run: the kernel drops
it when the process dies, so a killed run never wedges the home. The Dagster run's resource
re-enters it when this process already holds it: `routing learn` takes it before it plans and
then starts the run in-process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from routing_runtime import safe_fs

LOCK_NAME = ".learn.lock"

_held: dict[str, int] = {}
_guard = threading.Lock()


class HomeBusyError(RuntimeError):
    """Another learning run holds the home."""


@contextlib.contextmanager
def exclusive(home: Path, who: str = "`routing learn`", *, reentrant: bool = False) -> Iterator[None]:
    """Hold ``home``'s learning lock, or raise :class:`HomeBusyError` at once (never wait: a
    nightly run that finds the home busy says so, and the next one learns the same days).
    ``reentrant``: also succeed when this process holds it already."""
    key = str(Path(home))
    with _guard:
        if key in _held and not reentrant:
            raise HomeBusyError(f"another learning run is using {home} ({who} cannot start); try again when it has finished")
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[key] -= 1
        return
    lock_path = Path(home) / LOCK_NAME
    if os.path.islink(lock_path):
        safe_fs.set_aside(Path(home), lock_path, "a symlink where the learning lock belongs")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, safe_fs.file_mode(Path(home)))
    with os.fdopen(fd, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HomeBusyError(
                f"another learning run is using {home} ({who} cannot start); try again when it has finished"
            ) from None
        with _guard:
            _held[key] = 1
        try:
            yield
        finally:
            with _guard:
                del _held[key]
            fcntl.flock(lock, fcntl.LOCK_UN)
