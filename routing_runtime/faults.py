"""Named points where tests interrupt a process, to prove that every interruption is recovered.

``ROUTING_CRASH_AT=<name>`` makes the process exit at once when it reaches that point
(``os._exit``: no cleanup, no ``finally``, as ``kill -9`` would); ``ROUTING_FAIL_AT=<name>``
raises there instead (a failing step); ``ROUTING_PAUSE_AT=<name>`` sleeps there for
``ROUTING_PAUSE_SECONDS`` (default 30: a run caught in the act, for tests of what runs at the same
time). Unset, a point costs three dictionary lookups.
"""

from __future__ import annotations

import os
import time

CRASH_EXIT_CODE = 137


class InjectedFailure(RuntimeError):
    """Raised at a point named by ``ROUTING_FAIL_AT``."""


def crashpoint(name: str) -> None:
    """Exit (``ROUTING_CRASH_AT=name``) or raise (``ROUTING_FAIL_AT=name``) here; else nothing.

    >>> crashpoint("example")  # neither variable names it: nothing happens
    >>> os.environ["ROUTING_FAIL_AT"] = "example"
    >>> crashpoint("example")
    Traceback (most recent call last):
    ...
    routing_runtime.faults.InjectedFailure: injected failure at example
    >>> del os.environ["ROUTING_FAIL_AT"]
    """
    if os.environ.get("ROUTING_CRASH_AT") == name:
        os._exit(CRASH_EXIT_CODE)
    if os.environ.get("ROUTING_FAIL_AT") == name:
        raise InjectedFailure(f"injected failure at {name}")
    if os.environ.get("ROUTING_PAUSE_AT") == name:
        time.sleep(float(os.environ.get("ROUTING_PAUSE_SECONDS", "30")))
