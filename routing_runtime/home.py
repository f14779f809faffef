"""Where a router keeps its state: ``ROUTING_HOME`` and the paths inside it."""

from __future__ import annotations

import os


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_HOME = ".routing"
#: The folders of a home (the lake's inside is :class:`routing_pipelines.lake.Lake`'s alone).
INBOX_DIR = "inbox"
LAKE_DIR = "lake"
DAGSTER_DIR = "dagster_home"
#: The home's database, owned by :class:`routing_runtime.store.Store`.
DB_NAME = "routing.db"


class NotInitialisedError(RuntimeError):
    """``ROUTING_HOME`` has no usable ``routing.db``; the message says which command creates it."""


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """``home`` if given, else ``$ROUTING_HOME``, else ``./.routing``: absolute, ``~`` expanded
    and links resolved, so every process that opens the same home names it the same way.

    >>> from pathlib import Path
    >>> resolve_home("~") == Path.home().resolve()
    True
    >>> resolve_home("/srv/routing/../routing").name
    'routing'
    """
    from pathlib import Path  # here, not at import: keeps `import routing_runtime` cheap

    if home is None:
        home = os.environ.get("ROUTING_HOME") or DEFAULT_HOME
    return Path(home).expanduser().resolve()


def db_path(home: Path) -> Path:
    """The home's SQLite database (decisions, outcomes, rule sets, registry).

    >>> from pathlib import Path
    >>> db_path(Path("/srv/routing")).as_posix()
    '/srv/routing/routing.db'
    """
    return home / DB_NAME
