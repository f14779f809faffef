"""Named points where tests kill a process, to prove that every interruption is recovered.

``ROUTING_CRASH_AT=<name>`` makes the process exit at once (``os._exit``: no cleanup, no
``finally``, as ``kill -9`` would) when it reaches that point. Unset, a point costs one
dictionary lookup.
"""

from __future__ import annotations

import os

CRASH_EXIT_CODE = 137


def crashpoint(name: str) -> None:
    if os.environ.get("ROUTING_CRASH_AT") == name:
        os._exit(CRASH_EXIT_CODE)
