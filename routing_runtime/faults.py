"""Named points where tests interrupt a process, to prove that every interruption is recovered.

``ROUTING_CRASH_AT=<name>`` makes the process exit at once when it reaches that point
(``os._exit``: no cleanup, no ``finally``, as ``kill -9`` would); ``ROUTING_FAIL_AT=<name>``
raises there instead (a failing step). Unset, a point costs two dictionary lookups.
"""

from __future__ import annotations

import os

CRASH_EXIT_CODE = 137


class InjectedFailure(RuntimeError):
    """Raised at a point named by ``ROUTING_FAIL_AT``."""


def crashpoint(name: str) -> None:
    if os.environ.get("ROUTING_CRASH_AT") == name:
        os._exit(CRASH_EXIT_CODE)
    if os.environ.get("ROUTING_FAIL_AT") == name:
        raise InjectedFailure(f"injected failure at {name}")
