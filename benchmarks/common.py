"""What the benchmark scripts share: the machine a run was on, the load, and ``--quick``.

Imported by the scripts as ``common`` (each runs as ``python benchmarks/bench_*.py``, so this
folder is first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Sequence
from pathlib import Path


def machine(packages: Sequence[str] = ("numpy", "scipy", "polars")) -> dict:
    """Platform, CPU model, CPU counts (all and usable by this process), Python and package versions."""
    versions = {}
    for name in packages:
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing package is reported as "?", never a failed run
            versions[name] = "?"
    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "usable_cpus": usable,
            "python": platform.python_version(), **versions}


def loadavg() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def parse_with_quick(parser: argparse.ArgumentParser, argv: Sequence[str] | None, quick: dict) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick`` the ``quick`` sizes replace the defaults only, so options
    given explicitly still win."""
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args


def add_scenario_arguments(parser: argparse.ArgumentParser, scenarios: Sequence[str], seeds: int) -> None:
    """The options of a benchmark that simulates shipped scenarios: which, how many seeds from
    which, and the sizes that override a scenario's own."""
    parser.add_argument("--scenarios", nargs="+", default=list(scenarios), metavar="NAME",
                        help=f"shipped scenarios (or .toml files), space or comma separated (default: {' '.join(scenarios)})")
    parser.add_argument("--seeds", type=int, default=seeds, help=f"seeds per scenario (default {seeds})")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--days", type=int, help="override the scenario's days")
    parser.add_argument("--requests-per-day", type=int, help="override the scenario's requests per day")
    parser.add_argument("--event-day", type=int, metavar="DAY",
                        help="move every scenario event to this day (short runs that still see the event)")
