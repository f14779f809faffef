"""`routing learn`: the nightly job, run in-process (or with ``--workers N``, in N processes) and
recorded in ROUTING_HOME/dagster_home.

What it promises (README.md, "What it promises"): one run per home at a time; whatever
interrupted the previous run (a kill, a full disk), this run ends where an uninterrupted run
ends; a drop or day that fails is set aside with a reason and the rest is learned; the summary
and the exit code tell the truth, also when a step fails after the rules were published.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from routing_pipelines import logs, plan
from routing_pipelines.assets import names
from routing_pipelines.lake import Lake
from routing_pipelines.learning.gate import describe as describe_gate
from routing_pipelines.logs import FIRST_DAY, TABLES
from routing_pipelines.run_lock import exclusive
from routing_runtime import safe_fs
from routing_runtime.admin import masked_url, postgres_refusal
from routing_runtime.store import Store, utc_timestamp
from routing_runtime.home import DAGSTER_DIR, INBOX_DIR, LAKE_DIR, resolve_home

if TYPE_CHECKING:  # Dagster is imported only when there is something to learn (it costs ~1 s)
    import dagster as dg

    DagsterResult = dg.ExecuteInProcessResult | dg.JobExecutionResult

RUNNER_TAG = "routing/runner"
#: Imported once by the multiprocess executor's fork server, so each step's process starts forked
#: from it instead of importing Dagster, Polars and the pipelines again (seconds per step).
PRELOAD = ("dagster", "polars", "routing_pipelines.definitions")
#: Characters that break the ``sqlite:///`` URLs Dagster builds from its folder.
_URL_UNSAFE = set("?#%")


def dagster_folder(home: Path) -> str:
    """Where Dagster keeps its instance, as a path Dagster can put into its storage URLs.

    Dagster builds unescaped ``sqlite:///`` URLs from this folder, so a home with ``?``, ``#`` or
    ``%`` in its path would break it and make it write elsewhere. Such a folder is given to
    Dagster through an open directory handle (``/proc/<pid>/fd/<n>``), which names the same folder.
    """
    folder = safe_fs.ensure_dir(home, "dagster_home")
    if not _URL_UNSAFE & set(str(folder)) or not os.path.isdir("/proc/self/fd"):
        return str(folder)
    fd = _folder_handles.get(str(folder))
    if fd is None:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        _folder_handles[str(folder)] = fd
    return f"/proc/{os.getpid()}/fd/{fd}"


_folder_handles: dict[str, int] = {}


#: The home's Dagster instance: no telemetry; one run at a time in the learning pool, so runs the
#: daemon or the UI launch wait in the queue while another learning run holds the home.
INSTANCE_CONFIG = """\
telemetry:
  enabled: false
concurrency:
  pools:
    granularity: run
    default_limit: 1
"""


#: SQLAlchemy's name for PostgreSQL through psycopg2, the driver dagster-postgres depends on.
POSTGRES_DRIVER_SCHEME = "postgresql+psycopg2"


def instance_config(home: Path) -> str:
    """The home's ``dagster.yaml``: INSTANCE_CONFIG, with run, event-log and schedule storage in
    PostgreSQL once `routing init --dagster-postgres URL` set it (else SQLite in dagster_home/)."""
    with Store.open_home(home, read_only=True, needed_by="the Dagster instance") as db:
        url = db.dagster_postgres_url()
    if url is None:
        return INSTANCE_CONFIG
    reason = postgres_refusal(url)
    if reason is not None:  # say so at once, rather than after Dagster's retries, with where it is set
        raise RuntimeError(
            f"the home's Dagster instance in PostgreSQL ({masked_url(url)}) does not answer ({reason}):"
            " start that server, or move the instance with `routing init --dagster-postgres URL`"
        )
    # The driver is named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, while
    # dagster-postgres installs psycopg2. A JSON string is a YAML double-quoted scalar: the URL's
    # ':', '@', '#' and '%' stay as they are.
    engine_url = POSTGRES_DRIVER_SCHEME + url[url.index("://"):]
    return INSTANCE_CONFIG + f"storage:\n  postgres:\n    postgres_url: {json.dumps(engine_url)}\n"


def dagster_instance(home: Path) -> dg.DagsterInstance:
    """The Dagster instance of ROUTING_HOME (created on first use), shared with `routing ui`: its
    configuration is rewritten from the home's settings whenever they changed."""
    import dagster as dg

    safe_fs.sweep_links(home, "dagster_home")
    folder = dagster_folder(home)
    config = Path(folder) / "dagster.yaml"
    wanted = instance_config(home)
    if not safe_fs.is_regular_file(config) or config.read_text(encoding="utf-8") != wanted:
        if os.path.lexists(config) and not safe_fs.is_regular_file(config):
            safe_fs.set_aside(home, home / "dagster_home" / "dagster.yaml", "not a regular file")
        config.write_text(wanted, encoding="utf-8")
    return dg.DagsterInstance.from_config(folder)


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


@dataclasses.dataclass
class LearnResult:
    """What `routing learn` did: the ``--json`` document (README.md, "Exit code and output"), plus the run id."""

    status: str  # published | blocked | failed | nothing_new
    rule_set_version: int | None
    as_of: str
    tables: dict
    problems: list[str]
    run_id: str | None = None
    start: str | None = None
    partial_day: bool = False
    #: The publication gate's verdict and figures (``routing_pipelines.learning.gate``), when it judged.
    gate: dict | None = None
    dagster_result: DagsterResult | None = dataclasses.field(default=None, repr=False)

    @property
    def success(self) -> bool:
        """Rules were published and no step failed."""
        return self.status == "published" and not any(p.startswith("step ") for p in self.problems)

    def to_json(self) -> dict:
        return {
            "status": self.status, "rule_set_version": self.rule_set_version, "as_of": self.as_of,
            "tables": self.tables, "problems": self.problems, "dagster_run_id": self.run_id,
            "days": [self.start, self.as_of] if self.start else [], "partial_day": self.partial_day,
            "gate": self.gate,
        }


def learn(
    home: str | os.PathLike | None = None, as_of: str | dt.date | None = None, *, quiet: bool = False,
    accept_quarantine: tuple[str, ...] = (), forget_missing: bool = False, workers: int = 1, gate: bool = True,
) -> LearnResult:
    """Run the nightly learning job for every day not yet learned (or stale) up to ``as_of``
    (default yesterday). ``accept_quarantine`` days learn their valid rows even when most rows
    were quarantined; ``forget_missing`` learns without drops whose evidence was lost.
    ``workers`` > 1: the run's steps run in up to that many processes (Dagster's multiprocess
    executor), each table's days ingested in that many chunks at once; the result is the same.
    ``gate`` False (``--no-gate``): publish the candidate as learned, whatever the publication
    gate finds; the rule set records what it found."""
    home_path = resolve_home(home)
    workers = parse_workers(workers)
    explicit = as_of is not None
    day = parse_day(as_of)
    accepted = [parse_accepted_day(d) for d in accept_quarantine]
    with Store.open_home(home_path, needed_by="learning") as db:  # a clear error when the home is not initialised
        learned = db.learned_through()
    if not explicit and learned is not None and learned > day:
        # After `--as-of today` the frontier is today: a plain run re-learns it (a fuller day)
        # rather than replacing those rules with ones built on older evidence.
        day = learned
    with safe_fs.home_umask(home_path), exclusive(home_path) as lease:
        result = _learn_locked(home_path, day, explicit=explicit or bool(accepted), quiet=quiet,
                               accepted=accepted, forget=forget_missing, workers=workers, lease=lease, gate=gate)
        _remember(home_path, result)
    return result


def parse_workers(value: int | str) -> int:
    """``--workers``: how many processes run the steps (1: this process alone)."""
    try:
        workers = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--workers={value!r} is not a number: give how many processes run the steps (1 or more)") from None
    if workers < 1:
        raise ValueError(f"--workers={workers}: give 1 (this process alone) or more processes")
    return workers


def parse_accepted_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--accept-quarantine={value!r} is not a date: use YYYY-MM-DD") from None


def _learn_locked(home: Path, day: dt.date, *, explicit: bool, quiet: bool,
                  accepted: list[dt.date], forget: bool, workers: int, lease: str, gate: bool) -> LearnResult:
    problems: list[str] = []
    _sweep_layout(home)
    Lake(home).remove_leftovers()
    with Store.open_home(home, needed_by="learning") as db:
        if accepted:
            db.accept_quarantine(accepted)
        if forget:
            problems += logs.forget_missing(home, db)
        before = db.published_marker()
    problems += _catch_up_hub(home)
    planned = plan.learning_range(home, day, explicit=explicit)
    problems += planned.problems + safe_fs.drain_set_aside()
    tables = {t: {"ingested": 0, "quarantined": 0, "reasons": Counter()} for t in TABLES}
    if planned.nothing_new:
        return LearnResult("nothing_new", before[1], str(day), _finish_tables(tables), problems)
    if not quiet:
        processes = f" with {workers} worker processes" if workers > 1 else ""
        print(f"learning from {planned.start} to {planned.end} in {home}{processes}", file=sys.stderr)
    run = _run_job(home, planned, workers=workers, lease=lease, gate=gate)
    with Store.open_home(home, needed_by="learning") as db:
        after = db.published_marker()
    verdicts: list[dict] = []
    blocked = _read_events(run, tables, problems, verdicts)
    problems += blocked + safe_fs.drain_set_aside()
    published = after[0] > before[0]
    status = "published" if published else "blocked" if blocked else "failed" if not run.success else "nothing_new"
    return LearnResult(
        status, after[1] if published else before[1], str(day), _finish_tables(tables), _unique(problems), run.run_id,
        start=str(planned.start), partial_day=day >= dt.datetime.now(dt.timezone.utc).date(),
        gate=verdicts[-1] if verdicts else None, dagster_result=run,
    )


def _catch_up_hub(home: Path) -> list[str]:
    """Put on the hub what an earlier learn published here but could not put there (the hub was
    down): hosts then get it even when nothing is new to learn. A problem, never a stop."""
    from routing_runtime.hub import Hub, HubError
    from routing_runtime.sync import SyncError, push_rule_sets

    with Store.open_home(home, needed_by="learning") as db:
        tie = db.hub_tie()
        if tie is None:
            return []
        try:
            pushed = push_rule_sets(home, Hub.parse(tie[0]), db)
        except (HubError, SyncError) as exc:
            return [f"the hub did not take this home's rule sets: {exc}"]
    if pushed and not quiet_first_push(pushed):
        return [f"put rule set(s) {', '.join(f'v{v}' for v in pushed)} on the hub {tie[0]}: an earlier learn published them here only"]
    return []


def quiet_first_push(pushed: list[int]) -> bool:
    """The first learn on a hub puts the registry's rule set v1 there: expected, not a problem."""
    return pushed == [1]


def _run_job(home: Path, planned: plan.LearningPlan, *, workers: int, lease: str, gate: bool) -> DagsterResult:
    """The nightly job over the plan's days, recorded in the home's instance and labelled with the
    UI's code location, so it shows on the job page and the Overview timeline. One worker: in this
    process. More: on the multiprocess executor, the job rebuilt in each step's process from the
    home and the first day; the steps are admitted to the home this process holds by ``lease``."""
    import dagster as dg
    from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

    from routing_pipelines.definitions import build_definitions, partition_range_tags, run_config

    tags = {**partition_range_tags(planned.start, planned.end), RUNNER_TAG: "routing learn",
            REPOSITORY_LABEL_TAG: names.REPOSITORY_LABEL}
    config = {**run_config(planned.end, chunks=workers, enforce_gate=gate),
              "resources": {"routing_home": {"config": {"home": str(home), "lease": lease}}},
              # Dagster's own console lines stay quiet: the summary names every failed step with its
              # root cause (a blocked gate with its cells), and the UI keeps the full traces.
              "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    with dagster_instance(home) as instance:
        _close_abandoned_runs(instance)
        if workers == 1:
            job = build_definitions(home, first_day=planned.first_day).resolve_job_def(names.NIGHTLY_JOB)
            return job.execute_in_process(instance=instance, raise_on_error=False, tags=tags, run_config=config)
        parallel = dg.build_reconstructable_job(
            "routing_pipelines.definitions", "parallel_nightly_job",
            reconstructable_args=(str(home), (planned.first_day or planned.start).isoformat()),
        )
        config["execution"] = {"config": {"max_concurrent": workers, "start_method": {"forkserver": {"preload_modules": list(PRELOAD)}}}}
        return dg.execute_job(parallel, instance=instance, raise_on_error=False, tags=tags, run_config=config)


def _read_events(run: DagsterResult, tables: dict, problems: list[str], verdicts: list[dict]) -> list[str]:
    """Fold the run's materializations into ``tables`` and ``problems`` and the publication
    gate's verdict into ``verdicts``; return the blocking check failures."""
    import dagster as dg

    blocked = []
    counted: set[str] = set()
    for event in run.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION" and event.asset_key.path[-1] not in counted:
            # A run over a range of days reports the same result once per day: count it once.
            metadata = event.event_specific_data.materialization.metadata
            asset = event.asset_key.path[-1]
            counted.add(asset)
            if asset == names.INBOX:
                for table, staged in metadata["staged"].value.items():
                    tables[table]["quarantined"] += int(staged["quarantined"])
                    tables[table]["reasons"] += Counter(staged["reasons"])
            if asset in tables:
                tables[asset]["ingested"] += int(metadata["dagster/row_count"].value)
                tables[asset]["quarantined"] += int(metadata["quarantined_rows"].value)
                tables[asset]["reasons"] += Counter(metadata["quarantine_reasons"].value)
            if "problems" in metadata:
                problems += [p for p in metadata["problems"].value if p not in problems]
            if asset == names.DAILY_MODEL_STATS:
                problems += [f"held out of learning: {h}" for h in metadata["held_days"].value]
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            if data.check_name == names.PUBLICATION_GATE_CHECK:
                verdicts.append(data.metadata["gate"].value)
            if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
                blocked.append(f"check {data.check_name} failed: {(data.metadata.get('examples') or dg.MetadataValue.text('')).value}")
        elif event.is_step_failure and _is_check_failure(event):
            continue  # a blocking check that failed: reported with its check's findings above
        elif event.is_step_failure:
            problems.append(f"step {event.step_key} failed: {_root_cause(event.step_failure_data.error)}")
    return blocked


def _is_check_failure(event) -> bool:
    error = event.step_failure_data.error
    return error is not None and error.cls_name == "DagsterAssetCheckFailedError"


def _root_cause(error) -> str:
    """The message of the innermost error (Dagster wraps the step's own exception)."""
    if error is None:
        return "unknown error"
    while error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[-1] if error.message.strip() else error.cls_name or "unknown error"


def _sweep_layout(home: Path) -> None:
    """Make every folder the product writes a real folder of the home: links anywhere below the
    inbox, the lake and the Dagster instance are set aside before anything writes there."""
    safe_fs.sweep_links(home, INBOX_DIR, LAKE_DIR, DAGSTER_DIR)
    for table in TABLES:
        safe_fs.ensure_dir(home, "inbox", table, "ingested")
    Lake(home).prepare()


def _unique(problems: list[str]) -> list[str]:
    return list(dict.fromkeys(problems))


def _finish_tables(tables: dict) -> dict:
    return {t: {"ingested": v["ingested"], "quarantined": v["quarantined"],
                "reasons": dict(Counter({r: n for r, n in v["reasons"].items() if n > 0}).most_common())}
            for t, v in tables.items()}


def _close_abandoned_runs(instance: dg.DagsterInstance) -> None:
    """Runs of `routing learn` still marked as running were killed (we hold the home's lock, so
    none is alive): mark them failed, so the UI does not show them running forever."""
    import dagster as dg

    abandoned = instance.get_runs(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED],
        tags={RUNNER_TAG: "routing learn"},
    ))
    for run in abandoned:
        instance.report_run_failed(run, message="the `routing learn` process running it was killed; the next run completed its work")


def _remember(home: Path, result: LearnResult) -> None:
    """The last learn's result, for `routing status`."""
    document = {**result.to_json(), "finished_at": utc_timestamp()}
    with Store.open_home(home, needed_by="learning") as db:
        db.record_last_learn(document)


def run_learning(home: str | None, as_of: str | None, *, as_json: bool = False,
                 accept_quarantine: tuple[str, ...] = (), forget_missing: bool = False, workers: int = 1,
                 gate: bool = True) -> int:
    """CLI entry: progress on stderr, a summary (or ``--json``); exit 0 when rules were published
    with no failure, or nothing was new; 1 when blocked, failed, or a step failed after publishing."""
    os.environ["ROUTING_PROGRESS"] = "1" if (sys.stderr.isatty() or os.environ.get("ROUTING_PROGRESS")) and not as_json else ""
    started = time.perf_counter()
    home_path = resolve_home(home)
    if home_path.is_dir() and safe_fs.is_read_only(home_path):
        raise PermissionError(f"{home_path} is read-only: learning writes the lake and new rules there")
    try:
        result = learn(home, as_of, quiet=as_json, accept_quarantine=accept_quarantine, forget_missing=forget_missing,
                       workers=workers, gate=gate)
    except (ValueError, RuntimeError, FileNotFoundError):
        raise  # bad arguments, another run (HomeBusyError), no home: the CLI's one-line error, exit 2
    except Exception as exc:  # noqa: BLE001 - a full disk, a broken instance: say so, never a traceback
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:500]
        result = LearnResult("failed", None, str(as_of or parse_day(None)), {}, [f"learning failed: {message}"])
        with contextlib.suppress(Exception):
            _remember(resolve_home(home), result)
    elapsed = time.perf_counter() - started
    failed_after = [p for p in result.problems if p.startswith("step ")]
    code = 0 if result.status == "nothing_new" or (result.status == "published" and not failed_after) else 1
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return code
    for table, counts in result.tables.items():
        reasons = "; ".join(f"{r} ({n})" for r, n in list(counts["reasons"].items())[:3])
        print(f"{table}: {counts['ingested']} rows ingested, {counts['quarantined']} quarantined" + (f" — {reasons}" if reasons else ""))
    for problem in result.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if result.gate and result.gate["status"] != "passed":
        print(f"gate {result.gate['status']}:", file=sys.stderr)
        for line in describe_gate(result.gate):
            print(f"  {line}", file=sys.stderr)
    run = f" (dagster run {result.run_id[:8]})" if result.run_id else ""
    partial = " — the UTC day is not over: these rules are built on part of it" if result.partial_day else ""
    if result.status == "published":
        then = f"; then {len(failed_after)} step(s) failed (see problems): the new rules are in force" if failed_after else ""
        print(f"published rule set v{result.rule_set_version} as of {result.as_of} in {elapsed:.1f}s{run}{partial}{then}")
    elif result.status == "nothing_new":
        print(f"nothing new to learn up to {result.as_of}: rule set v{result.rule_set_version} stays in force"
              " (give --as-of DAY to re-learn a day)")
    else:
        print(f"routing learn: no rules published ({result.status}); rule set v{result.rule_set_version} stays in force."
              f" See the problems above, or `routing ui`{run}", file=sys.stderr)
    return code
