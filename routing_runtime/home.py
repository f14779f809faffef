"""Where a router keeps its state: ``ROUTING_HOME`` and the paths inside it."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_HOME = ".routing"
#: The home's database, owned by :class:`routing_runtime.store.Store`.
DB_NAME = "routing.db"


class NotInitialisedError(RuntimeError):
    """``ROUTING_HOME`` has no usable ``routing.db``; the message says which command creates it."""


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """``home`` if given, else ``$ROUTING_HOME``, else ``./.routing``."""
    from pathlib import Path  # here, not at import: keeps `import routing_runtime` cheap

    if home is None:
        home = os.environ.get("ROUTING_HOME") or DEFAULT_HOME
    return Path(home).expanduser().resolve()


def db_path(home: Path) -> Path:
    return home / DB_NAME
