"""Scale of the nightly learning job: 30 days of 100k decisions + 100k outcomes a day, as Parquet drops.

Run with ``python benchmarks/bench_scale.py [--days 30] [--rows-per-day 100000] [--seed 0] [--keep]
[--quick] [--json out.json]`` (about 1.5 minutes and 0.5 GB of disk at full scale). ``--quick`` (2 days ×
300 rows: the two learns alone) only proves it still runs: ``make test``.

Targets (from the issue): ``routing learn`` over the first ``days - 1`` days end to end in at most
60 s on 2 cores with at most 3 GiB peak memory; one more day afterwards (incremental) in at most
15 s. Both are reported next to the *floor*: a single Polars lazy scan + group-by over the same
outcome files, the least any learner has to pay to read the data.

What happens, in a temporary ROUTING_HOME under the project root (same disk as the repository,
removed at the end unless ``--keep``):

1. ``routing_runtime.admin.initialise`` creates the home with the shipped registry.
2. Synthetic logs (clearly synthetic, seeded, deterministic): per UTC day, the days ending on
   2026-10-31, ``rows-per-day`` routing decisions and as many outcomes (one per decision, same
   model and task type, linked by ``decision_id``), in the columns of
   ``routing_pipelines.logs.SCHEMAS``. About 0.1% of the rows of each table are invalid (quality 1.7,
   negative latency, unknown model, unknown outcome, propensity outside (0, 1]) so the quarantine
   path is exercised. One Parquet file per day per table in ``inbox/<table>/``; the last day is
   held back. Generation is timed but not part of any measured figure.
3. Floor: ``pl.scan_parquet`` of the outcome files of the first ``days - 1`` days,
   ``group_by(model_id, task_type, day)`` with the aggregates of ``routing_pipelines.learning.statistics.daily_stats``
   (best of 3, in this process, files warm in the page cache like the learn run's). The same for the
   held-back day alone, as the floor of the incremental run.
4. ``python -m routing_runtime.cli learn --home HOME --as-of <day days-1>`` as a child process:
   wall clock (``time.perf_counter``), peak RSS and CPU time of that child alone (``os.wait4`` in a
   lean wrapper process, see ``_WRAPPER``). The home is fresh, as a user's would be: nothing
   learned yet, only the drops in the inbox. Checks: exit code 0, ``routing rules --json`` shows a
   higher ``rule_set_version``, and the lake holds every day of both tables with the expected
   numbers of valid and quarantined rows.
5. The held-back day is dropped into the inbox and ``routing learn --as-of <last day>`` is measured
   the same way (a fresh child: its own peak, not the max over all children).
6. A Markdown table of the figures against the targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent

from routing_pipelines.logs import DECISIONS, PERFORMANCE, SCHEMAS  # noqa: E402
from routing_runtime.admin import initialise  # noqa: E402
from routing_runtime.registry import ModelRegistry  # noqa: E402
from routing_runtime.types import Outcome, RoutingPreference, TaskType  # noqa: E402

LAST_DAY = dt.date(2026, 10, 31)  # fixed, so the data are the same on every run
TARGET_FULL_S = 60.0
TARGET_PEAK_GIB = 3.0
TARGET_INCREMENTAL_S = 15.0
INVALID_SHARE = 0.001
UNKNOWN_MODEL = "synthetic-unknown-model"
GIB = 1024**3


# ----------------------------------------------------------------------------- synthetic logs

@dataclass(frozen=True)
class Catalogue:
    """What the generator needs from the shipped registry, as arrays."""

    models: list[str]
    tasks: list[str]
    quality: np.ndarray        # (tasks, models) mean quality on each task
    selection: np.ndarray      # (tasks, models) probability of being selected on each task
    latency_ms: np.ndarray     # (models,) typical latency
    in_cost: np.ndarray        # (models,) USD per 1k input tokens
    out_cost: np.ndarray       # (models,) USD per 1k output tokens
    alternatives: list[list[str]]  # per model: a few JSON arrays of other models


def catalogue(rng: np.random.Generator) -> Catalogue:
    registry = ModelRegistry.load_default()
    models = [m for m in registry.models if m.enabled]
    tasks = list(TaskType)
    quality = np.array([[m.prior_quality_for(t) for m in models] for t in tasks])
    # Synthetic "truth" differs a little from the priors, so the posteriors have something to learn.
    quality = np.clip(quality + rng.normal(0.0, 0.04, quality.shape), 0.3, 0.97)
    weight = np.exp(8.0 * (quality - quality.max(axis=1, keepdims=True))) + 0.05
    selection = weight / weight.sum(axis=1, keepdims=True)
    ids = [m.id for m in models]
    alternatives = []
    for i in range(len(ids)):
        others = [x for j, x in enumerate(ids) if j != i]
        alternatives.append([json.dumps(list(rng.permutation(others)[:3])) for _ in range(4)])
    return Catalogue(
        models=ids, tasks=[t.value for t in tasks], quality=quality, selection=selection,
        latency_ms=np.array([m.typical_latency_ms for m in models], dtype=float),
        in_cost=np.array([m.input_cost_per_1k for m in models]), out_cost=np.array([m.output_cost_per_1k for m in models]),
        alternatives=alternatives,
    )


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int = 16) -> pl.Series:
    raw = rng.bytes(n * nbytes)
    return pl.Series([raw[i * nbytes:(i + 1) * nbytes] for i in range(n)], dtype=pl.Binary).bin.encode("hex")


def generate_day(cat: Catalogue, day: dt.date, n: int, rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One day of synthetic (decisions, outcomes), about ``INVALID_SHARE`` of each table invalid."""
    n_tasks, n_models = cat.selection.shape
    task = rng.integers(0, n_tasks, n)
    # Selected model per row: inverse-CDF sampling from the task's selection distribution.
    cdf = np.cumsum(cat.selection, axis=1)
    model = np.minimum((rng.random(n)[:, None] > cdf[task]).sum(axis=1), n_models - 1)
    midnight_us = (day - dt.date(1970, 1, 1)).days * 86_400_000_000
    created_us = midnight_us + np.sort(rng.integers(0, 86_400_000_000 - 300_000_000, n))  # 5 min margin before midnight

    latency = np.clip(cat.latency_ms[model] * rng.lognormal(0.0, 0.45, n), 50.0, 120_000.0).round(1)
    recorded_us = created_us + (latency * 1000).astype(np.int64) + rng.integers(1_000, 2_000_000, n)
    q_true = cat.quality[task, model]
    a = 12.0
    quality = rng.beta(q_true * a, (1 - q_true) * a)
    outcome = np.where(quality >= 0.7, 0, np.where(quality >= 0.4, 1, 2))
    outcome_names = np.array([o.value for o in Outcome])  # success, partial, failure
    in_tokens = np.maximum(rng.lognormal(np.log(1100), 0.6, n).astype(np.int64), 1)
    out_tokens = np.maximum(rng.lognormal(np.log(450), 0.5, n).astype(np.int64), 1)
    tokens = in_tokens + out_tokens
    cost = in_tokens / 1000 * cat.in_cost[model] + out_tokens / 1000 * cat.out_cost[model]
    preference = rng.integers(0, len(RoutingPreference), n)
    pref_names = np.array([p.value for p in RoutingPreference])
    propensity = np.clip(cat.selection[task, model] * 0.95 + 0.05 / n_models, 0.001, 1.0)

    decision_ids = _hex_ids(rng, n)
    executions = _hex_ids(rng, n // 3 + 1)[rng.integers(0, n // 3 + 1, n)]
    models = np.array(cat.models)[model]
    tasks = np.array(cat.tasks)[task]
    alternatives = np.array([alt for alts in cat.alternatives for alt in alts])[model * 4 + rng.integers(0, 4, n)]

    decisions = pl.DataFrame({
        "id": decision_ids,
        "agent_execution_id": executions,
        "task_type": tasks,
        "selected_model": models,
        "selection_reason": np.char.add(np.char.add("synthetic: thompson sample (", pref_names[preference]), ")"),
        "alternatives_considered": alternatives,
        "created_at": pl.Series(created_us).cast(pl.Datetime("us")),
        "preference": pref_names[preference],
        "propensity": propensity.round(4),
        "rule_set_version": np.ones(n, dtype=np.int64),
        "excluded": pl.Series([None] * n, dtype=pl.String),  # no fallbacks among them
    }, schema=SCHEMAS[DECISIONS])

    quality_col = quality.round(4)
    has_quality = rng.random(n) >= 0.1  # 10% of outcomes report no quality score
    outcomes = pl.DataFrame({
        "id": _hex_ids(rng, n),
        "model_id": models,
        "task_type": tasks,
        "outcome": outcome_names[outcome],
        "quality_score": np.where(has_quality, quality_col, np.nan),
        "latency_ms": latency,
        "tokens_used": tokens,
        "cost_usd": cost.round(8),
        "recorded_at": pl.Series(recorded_us).cast(pl.Datetime("us")),
        "decision_id": decision_ids,
        "preference": pref_names[preference],
    }, schema=SCHEMAS[PERFORMANCE]).with_columns(pl.col("quality_score").fill_nan(None))

    # About 0.1% invalid rows per table, of several kinds.
    k = max(1, round(n * INVALID_SHARE))
    bad = rng.choice(n, size=k, replace=False)
    kind = np.arange(k) % 4
    def flag(rows: np.ndarray) -> pl.Series:
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        return pl.Series(mask)

    outcomes = outcomes.with_columns(
        pl.when(flag(bad[kind == 0])).then(pl.lit(1.7)).otherwise(pl.col("quality_score")).alias("quality_score"),
        pl.when(flag(bad[kind == 1])).then(pl.lit(-250.0)).otherwise(pl.col("latency_ms")).alias("latency_ms"),
        pl.when(flag(bad[kind == 2])).then(pl.lit(UNKNOWN_MODEL)).otherwise(pl.col("model_id")).alias("model_id"),
        pl.when(flag(bad[kind == 3])).then(pl.lit("timeout")).otherwise(pl.col("outcome")).alias("outcome"),
    )
    bad_d = rng.choice(n, size=k, replace=False)
    kind_d = np.arange(k) % 2
    decisions = decisions.with_columns(
        pl.when(flag(bad_d[kind_d == 0])).then(pl.lit(UNKNOWN_MODEL)).otherwise(pl.col("selected_model")).alias("selected_model"),
        pl.when(flag(bad_d[kind_d == 1])).then(pl.lit(1.5)).otherwise(pl.col("propensity")).alias("propensity"),
    )
    return decisions, outcomes


def write_day(home: Path, day: dt.date, decisions: pl.DataFrame, outcomes: pl.DataFrame) -> tuple[Path, Path]:
    d_path = home / "inbox" / DECISIONS / f"synthetic-decisions-{day}.parquet"
    o_path = home / "inbox" / PERFORMANCE / f"synthetic-outcomes-{day}.parquet"
    for path, frame in ((d_path, decisions), (o_path, outcomes)):
        tmp = path.with_name(f".{path.name}.tmp")  # not *.parquet: never picked up half-written
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    return d_path, o_path


# ----------------------------------------------------------------------------- floor

def floor_query(files: list[Path]) -> pl.DataFrame:
    """One lazy scan of the outcome files + group-by (model, task type, day), daily_stats' aggregates."""
    q = pl.coalesce(
        pl.col("quality_score"),
        pl.col("outcome").replace_strict({"success": 1.0, "partial": 0.5, "failure": 0.0}, default=None, return_dtype=pl.Float64),
    )
    log_latency = pl.col("latency_ms").clip(lower_bound=1.0).log()
    log_cost = pl.col("cost_usd").clip(lower_bound=1e-9).log()
    return (
        pl.scan_parquet(files)
        .group_by("model_id", "task_type", pl.col("recorded_at").dt.date().alias("day"))
        .agg(
            pl.len().alias("n"),
            (pl.col("outcome") == "success").sum().alias("n_success"),
            (pl.col("outcome") == "partial").sum().alias("n_partial"),
            (pl.col("outcome") == "failure").sum().alias("n_failure"),
            q.sum().alias("sum_q"), (q * q).sum().alias("sum_q2"),
            pl.col("latency_ms").is_not_null().sum().alias("n_latency"),
            log_latency.sum().alias("sum_log_latency"), (log_latency * log_latency).sum().alias("sum_log_latency2"),
            pl.col("cost_usd").is_not_null().sum().alias("n_cost"),
            log_cost.sum().alias("sum_log_cost"), (log_cost * log_cost).sum().alias("sum_log_cost2"),
            pl.col("cost_usd").sum().alias("sum_cost"),
            pl.col("tokens_used").is_not_null().sum().alias("n_tokens"), pl.col("tokens_used").sum().alias("sum_tokens"),
        )
        .collect()
    )


def time_floor(files: list[Path], repeats: int = 3) -> tuple[float, int]:
    best, cells = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        cells = floor_query(files).height
        best = min(best, time.perf_counter() - started)
    return best, cells


# ----------------------------------------------------------------------------- measured child runs

@dataclass
class ChildRun:
    command: list[str]
    exit_code: int
    wall_s: float
    peak_rss_kib: int
    cpu_user_s: float
    cpu_sys_s: float
    stdout: str
    stderr: str
    others_cpu_s: float | None = None  # CPU seconds used by other processes during the run (+ the wrapper)

    @property
    def peak_gib(self) -> float:
        return self.peak_rss_kib * 1024 / GIB


# Runs in a small fresh interpreter between this process and the measured command: on Linux a
# child's ru_maxrss starts from the RSS of the process it was forked from (the high-water mark is
# carried across exec), so a child forked straight from this process, which holds the generated
# data, would report this process's RSS as its own peak.
_WRAPPER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - started
proc.returncode = code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    json.dump({"exit_code": code, "wall_s": wall, "peak_rss_kib": usage.ru_maxrss,
               "cpu_user_s": usage.ru_utime, "cpu_sys_s": usage.ru_stime}, out)
sys.exit(0)
"""


def _cpu_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat), or None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_measured(command: list[str], env: dict[str, str], log_dir: Path) -> ChildRun:
    """Run ``command`` as a child of a lean wrapper: wall clock (perf_counter around the child),
    and peak RSS (KiB on Linux) and CPU time of that child alone (``os.wait4``)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path, usage_path = log_dir / "stdout.txt", log_dir / "stderr.txt", log_dir / "usage.json"
    busy_before = _cpu_busy_s()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run([sys.executable, "-S", "-c", _WRAPPER, str(usage_path), *command],
                       stdout=out, stderr=err, env=env, cwd=ROOT, check=True)
    busy_after = _cpu_busy_s()
    usage = json.loads(usage_path.read_text())
    others = None
    if busy_before is not None and busy_after is not None:
        others = max(0.0, busy_after - busy_before - usage["cpu_user_s"] - usage["cpu_sys_s"])
    return ChildRun(
        others_cpu_s=others,
        command=command, exit_code=usage["exit_code"], wall_s=usage["wall_s"], peak_rss_kib=usage["peak_rss_kib"],
        cpu_user_s=usage["cpu_user_s"], cpu_sys_s=usage["cpu_sys_s"],
        stdout=out_path.read_text(errors="replace"), stderr=err_path.read_text(errors="replace"),
    )


def rule_set_version(home: Path, env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "routing_runtime.cli", "rules", "--home", str(home), "--json"],
        check=True, capture_output=True, text=True, env=env, cwd=ROOT,
    ).stdout
    return int(json.loads(out)["rule_set_version"])


def lake_counts(home: Path, table: str, days: list[dt.date]) -> dict[str, int]:
    """Rows in lake/<table> and lake/quarantine/<table> for ``days``, and days present."""
    def rows(root: Path) -> tuple[int, int]:
        total = present = 0
        for day in days:
            files = sorted((root / f"day={day}").glob("*.parquet"))
            if files:
                present += 1
                total += pl.scan_parquet(files).select(pl.len()).collect().item()
        return total, present

    valid, present = rows(home / "lake" / table)
    quarantined, _ = rows(home / "lake" / "quarantine" / table)
    return {"valid": valid, "quarantined": quarantined, "days_present": present}


# ----------------------------------------------------------------------------- report

def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    versions = {}
    for name in ("polars", "pyarrow", "dagster", "scipy", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            versions[name] = "?"
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_gib": mem_gib, "python": platform.python_version(), "platform": platform.platform(),
        "polars_threads": pl.thread_pool_size(), **versions,
    }


def yes_no(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _others(run: dict) -> str:
    return "" if run.get("others_cpu_s") is None else f" (other processes: {run['others_cpu_s']:.1f} s)"


def markdown(result: dict) -> str:
    m, cfg = result["machine"], result["config"]
    full, inc = result["full_learn"], result["incremental_learn"]
    floor_full, floor_inc = result["floor_full_s"], result["floor_incremental_s"]
    lines = [
        f"## Scale benchmark: `routing learn` on {cfg['days']} days × {cfg['rows_per_day']:,} decisions + {cfg['rows_per_day']:,} outcomes",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({m['cpu_count']} online), "
        f"{m['mem_gib']:.1f} GiB RAM; {m['platform']}  ",
        f"Python {m['python']}, polars {m['polars']} ({m['polars_threads']} threads), pyarrow {m['pyarrow']}, "
        f"dagster {m['dagster']}, scipy {m['scipy']}, numpy {m['numpy']}  ",
        f"Data: synthetic, seed {cfg['seed']}, days {cfg['first_day']} … {cfg['last_day']}, "
        f"{result['inbox_mib']:.0f} MiB of Parquet drops; generation took {result['generation_s']:.1f} s (not measured). "
        f"Floors: best of 3, in-process, warm page cache.",
        "",
        "| measure | value | target | met |",
        "|---|---:|---:|:---:|",
        f"| floor: one Polars scan + group-by of {cfg['days'] - 1} days of outcomes | {floor_full:.2f} s | | |",
        f"| full learn (`--as-of {cfg['full_as_of']}`, {cfg['days'] - 1} days) wall | {full['wall_s']:.1f} s "
        f"| ≤ {TARGET_FULL_S:.0f} s | {yes_no(full['wall_s'] <= TARGET_FULL_S)} |",
        f"| full learn peak RSS | {full['peak_gib']:.2f} GiB "
        f"| ≤ {TARGET_PEAK_GIB:.0f} GiB | {yes_no(full['peak_gib'] <= TARGET_PEAK_GIB)} |",
        f"| full learn CPU (user + sys) | {full['cpu_s']:.1f} s{_others(full)} | | |",
        f"| ratio full learn / floor | {full['wall_s'] / floor_full:.0f}× | | |",
        f"| floor: one Polars scan + group-by of the new day | {floor_inc:.3f} s | | |",
        f"| incremental learn (`--as-of {cfg['last_day']}`, 1 new day) wall | {inc['wall_s']:.1f} s "
        f"| ≤ {TARGET_INCREMENTAL_S:.0f} s | {yes_no(inc['wall_s'] <= TARGET_INCREMENTAL_S)} |",
        f"| incremental learn peak RSS | {inc['peak_gib']:.2f} GiB "
        f"| ≤ {TARGET_PEAK_GIB:.0f} GiB | {yes_no(inc['peak_gib'] <= TARGET_PEAK_GIB)} |",
        f"| incremental learn CPU (user + sys) | {inc['cpu_s']:.1f} s{_others(inc)} | | |",
        f"| ratio incremental learn / floor | {inc['wall_s'] / floor_inc:.0f}× | | |",
        "",
        "CPU of other processes during a measured run means the machine was shared and the wall"
        " clock is pessimistic; run on a quiet machine for the reference figure.",
        "",
        "Checks:",
    ]
    lines += [f"- {'ok' if ok else 'FAILED'}: {text}" for ok, text in result["checks"]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

#: ``--quick``: a full and an incremental learn (the least there is) on a few hundred rows a day.
QUICK = {"days": 2, "rows_per_day": 300}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30, help="days of logs; the last one is the incremental run (default 30)")
    parser.add_argument("--rows-per-day", type=int, default=100_000, help="decisions (and outcomes) per day (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary ROUTING_HOME and print its path")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: proves the benchmark still runs end to end (`make test`); figures mean nothing")
    args = parser.parse_args(argv)
    if args.quick:  # the quick sizes replace the defaults only: options given explicitly still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if args.days < 2:
        parser.error("--days must be at least 2 (a full run and an incremental one)")

    bench_started = time.perf_counter()
    command = "python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    days = [LAST_DAY - dt.timedelta(days=args.days - 1 - i) for i in range(args.days)]
    home = Path(tempfile.mkdtemp(prefix=".bench-scale-", dir=ROOT if os.access(ROOT, os.W_OK) else None))
    env = {**os.environ, "ROUTING_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ROUTING_HOME", None)
    checks: list[tuple[bool, str]] = []
    try:
        initialise(home)
        print(f"ROUTING_HOME {home}", file=sys.stderr)

        # 2. synthetic logs
        started = time.perf_counter()
        rng = np.random.default_rng(args.seed)
        cat = catalogue(rng)
        held_back: tuple[pl.DataFrame, pl.DataFrame] | None = None
        outcome_files: list[Path] = []
        for day in days:
            decisions, outcomes = generate_day(cat, day, args.rows_per_day, np.random.default_rng([args.seed, day.toordinal()]))
            if day == days[-1]:
                held_back = (decisions, outcomes)
            else:
                outcome_files.append(write_day(home, day, decisions, outcomes)[1])
        generation_s = time.perf_counter() - started
        inbox_bytes = sum(p.stat().st_size for p in (home / "inbox").rglob("*.parquet"))
        print(f"generated {args.days} days x {args.rows_per_day} rows x 2 tables in {generation_s:.1f}s", file=sys.stderr)

        # The held-back day written to a side directory now, so both floors read real files.
        side = home / "held_back"
        side.mkdir()
        side_files = []
        for table, frame in ((DECISIONS, held_back[0]), (PERFORMANCE, held_back[1])):
            side_files.append(side / f"synthetic-{'decisions' if table == DECISIONS else 'outcomes'}-{days[-1]}.parquet")
            frame.write_parquet(side_files[-1])
        inbox_bytes += sum(p.stat().st_size for p in side_files)
        expected_invalid = max(1, round(args.rows_per_day * INVALID_SHARE))

        # 3. floors
        floor_full_s, cells = time_floor(outcome_files)
        floor_inc_s, _ = time_floor([side_files[1]])
        print(f"floor: {floor_full_s:.3f}s ({cells} cells); new day {floor_inc_s:.3f}s", file=sys.stderr)

        def learn(as_of: dt.date, label: str) -> dict:
            before = rule_set_version(home, env)
            loadavg_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            run = run_measured(
                [sys.executable, "-m", "routing_runtime.cli", "learn", "--home", str(home), "--as-of", str(as_of)],
                env, home / "bench_logs" / label,
            )
            after = rule_set_version(home, env)
            print(f"{label}: exit {run.exit_code}, {run.wall_s:.1f}s, peak {run.peak_gib:.2f} GiB", file=sys.stderr)
            sys.stderr.write("".join(f"    | {line}\n" for line in (run.stderr + run.stdout).splitlines()[-12:]))
            checks.append((run.exit_code == 0, f"{label}: `routing learn` exited {run.exit_code}"))
            checks.append((after > before, f"{label}: rule_set_version {before} -> {after}"))
            return {
                "wall_s": run.wall_s, "peak_rss_kib": run.peak_rss_kib, "peak_gib": run.peak_gib,
                "cpu_s": run.cpu_user_s + run.cpu_sys_s, "cpu_user_s": run.cpu_user_s, "cpu_sys_s": run.cpu_sys_s,
                "others_cpu_s": run.others_cpu_s, "loadavg_before": loadavg_before,
                "exit_code": run.exit_code, "rule_set_before": before, "rule_set_after": after,
                "stdout": run.stdout.strip(), "stderr_tail": run.stderr.strip().splitlines()[-20:],
            }

        def check_lake(label: str, covered: list[dt.date]) -> dict:
            counts = {t: lake_counts(home, t, covered) for t in (DECISIONS, PERFORMANCE)}
            want_rows = len(covered) * args.rows_per_day
            for table, c in counts.items():
                checks.append((
                    c["days_present"] == len(covered) and c["valid"] + c["quarantined"] == want_rows
                    and c["quarantined"] == len(covered) * expected_invalid,
                    f"{label}: lake/{table} has {c['days_present']}/{len(covered)} days, {c['valid']:,} valid + "
                    f"{c['quarantined']:,} quarantined rows (expected {want_rows:,} in all, "
                    f"{len(covered) * expected_invalid:,} quarantined)",
                ))
            return counts

        # 4. full learn
        full = learn(days[-2], "full")
        full["lake"] = check_lake("full", days[:-1])

        # 5. the new day, then the incremental learn
        for path in side_files:
            table = DECISIONS if "decisions" in path.name else PERFORMANCE
            os.replace(path, home / "inbox" / table / path.name)
        incremental = learn(days[-1], "incremental")
        incremental["lake"] = check_lake("incremental", days[-1:])
        learned = [line for line in incremental["stderr_tail"] if line.startswith("learning from")]
        checks.append((
            bool(learned) and learned[0].startswith(f"learning from {days[-1]} to {days[-1]}"),
            f"incremental: ingests only the new day ({learned[0] if learned else 'no range line'})",
        ))

        result = {
            "command": command,
            "machine": machine_info(),
            "config": {
                "days": args.days, "rows_per_day": args.rows_per_day, "seed": args.seed,
                "first_day": str(days[0]), "last_day": str(days[-1]), "full_as_of": str(days[-2]),
            },
            "generation_s": generation_s, "inbox_mib": inbox_bytes / 2**20,
            "floor_full_s": floor_full_s, "floor_incremental_s": floor_inc_s,
            "full_learn": full, "incremental_learn": incremental,
            "targets": {"full_s": TARGET_FULL_S, "peak_gib": TARGET_PEAK_GIB, "incremental_s": TARGET_INCREMENTAL_S},
            "met": {
                "full_s": full["wall_s"] <= TARGET_FULL_S,
                "full_peak": full["peak_gib"] <= TARGET_PEAK_GIB,
                "incremental_s": incremental["wall_s"] <= TARGET_INCREMENTAL_S,
                "incremental_peak": incremental["peak_gib"] <= TARGET_PEAK_GIB,
            },
            "checks": checks,
            "home": str(home) if args.keep else None,
        }
        result["total_s"] = time.perf_counter() - bench_started
        print(markdown(result))
        print(f"\nbenchmark total: {result['total_s']:.1f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        return 0 if all(ok for ok, _ in checks) else 1
    finally:
        if args.keep:
            print(f"kept ROUTING_HOME {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
