"""`routing learn`: the nightly job, run in-process and recorded in ROUTING_HOME/dagster_home."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import sys
import time
from pathlib import Path

import dagster as dg

from assets import names
from assets.resources import RoutingHome
from pipelines.definitions import build_definitions, learning_range, run_tags
from pipelines.ingest import FIRST_DAY
from routing_runtime.home import resolve_home


def dagster_instance(home: Path) -> dg.DagsterInstance:
    """The Dagster instance under ROUTING_HOME (created on first use), shared with `routing ui`."""
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(dagster_home))


def parse_day(value: str | dt.date | None) -> dt.date:
    """``--as-of``: a past or current UTC day (default: yesterday)."""
    today = dt.datetime.now(dt.timezone.utc).date()
    if value is None:
        return today - dt.timedelta(days=1)
    try:
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--as-of={value!r} is not a date: use YYYY-MM-DD") from None
    if day > today:
        raise ValueError(f"--as-of={day} is in the future (today is {today} UTC): learning needs the day's logs")
    if day < FIRST_DAY.date():
        raise ValueError(f"--as-of={day} is before {FIRST_DAY:%Y-%m-%d}, the first day the lake covers")
    return day


@contextlib.contextmanager
def exclusive(home: Path):
    """One learning run per home at a time (cron and a manual run must not interleave writes)."""
    lock_path = home / ".learn.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another `routing learn` is running on {home}; try again when it has finished") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def learn(home: str | os.PathLike | None = None, as_of: str | dt.date | None = None, *, quiet: bool = False) -> dg.ExecuteInProcessResult:
    """Run the nightly learning job for every day not yet learned up to ``as_of`` (default yesterday)."""
    home_path = resolve_home(home)
    day = parse_day(as_of)
    routing_home = RoutingHome(home=str(home_path))
    routing_home.connect().close()  # a clear error when the home is not initialised
    defs = build_definitions(home_path)
    job = defs.resolve_job_def(names.NIGHTLY_JOB)
    with exclusive(home_path), dagster_instance(home_path) as instance:
        start, end = learning_range(routing_home, day)
        if not quiet:
            print(f"learning from {start} to {end} in {home_path}", file=sys.stderr)
        return job.execute_in_process(
            instance=instance, tags=run_tags(start, end), raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING" if quiet else "ERROR"}}}},
        )


def run_learning(home: str | None, as_of: str | None) -> int:
    """CLI entry: progress on stderr, a one-line summary, exit code 0 when rules were published."""
    os.environ["ROUTING_PROGRESS"] = "1" if sys.stderr.isatty() or os.environ.get("ROUTING_PROGRESS") else ""
    started = time.perf_counter()
    home_path = resolve_home(home)
    result = learn(home_path, as_of)
    end = parse_day(as_of)
    blocked = [
        e.asset_check_evaluation_data.check_name for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    published = [
        e.event_specific_data.materialization.metadata.get("rule_set_version") for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == dg.AssetKey(names.MODEL_ROUTING_RULES)
    ]
    elapsed = time.perf_counter() - started
    if published:
        print(f"published rule set v{published[0].value} as of {end} in {elapsed:.1f}s (dagster run {result.run_id[:8]})")
        return 0
    reason = f"failed checks: {', '.join(blocked)}" if blocked else "the run failed"
    print(f"routing learn: no rules published ({reason}); the previous rule set stays in force. See `routing ui`, run {result.run_id[:8]}", file=sys.stderr)
    return 1
