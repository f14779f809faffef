"""Run every benchmark in sequence and write BENCHMARKS.md (what ``make bench`` runs).

Run with ``python benchmarks/run_all.py [--quick] [--only NAME ...] [--output PATH]``.

Each benchmark script runs as a child process (this interpreter, ``--json`` into a temporary
directory), one after the other so they do not compete for the CPU; its output is streamed to the
terminal as it comes and its stdout captured. Then ``BENCHMARKS.md`` at the project root gets a
title, the date, the machine, the code version and, per benchmark, a section with the exact command,
its exit code, wall clock, the machine load while it ran, and what it printed on stdout (tables
verbatim; its headings one level down, the "JSON written to <temp file>" line left out). A benchmark
that needs the real data in ``../shared/data`` and finds none prints ``SKIP …`` and exits 0; its
section says it was skipped and why.

* ``--only NAME`` (runtime, scale, replay, scenarios, fleet, estimators, gate, litellm, classifier; repeatable
  or comma separated) runs those
  alone and replaces only their sections in an existing ``BENCHMARKS.md`` (each section carries
  its own date and machine load), leaving the others as they were.
* ``--quick`` passes ``--quick`` to every script (tiny sizes): a smoke run of the whole chain in
  under a minute, whose figures mean nothing; ``make test`` runs it (``tests/test_benchmarks.py``)
  so that a benchmark cannot rot unnoticed. It does not write ``BENCHMARKS.md`` unless
  ``--output`` is given.

Exit code 0 when every benchmark exited 0 (a skip counts as 0), else 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
DEFAULT_OUTPUT = ROOT / "BENCHMARKS.md"


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    title: str


BENCHMARKS = [
    Benchmark("runtime", "bench_runtime.py", "Runtime: the routing hot paths"),
    Benchmark("scale", "bench_scale.py", "Scale of the nightly learning (`routing learn` on Parquet drops)"),
    Benchmark("replay", "bench_replay.py", "Learning quality on real per-question outcomes (replay)"),
    Benchmark("scenarios", "bench_scenarios.py", "Learning quality on the shipped scenarios (synthetic ground truth)"),
    Benchmark("fleet", "bench_fleet.py", "A fleet on one S3 hub: sync beside selecting hosts, shipping, publication to serving"),
    Benchmark("estimators", "bench_estimators.py", "Off-policy estimators on simulator ground truth"),
    Benchmark("gate", "bench_gate.py", "The publication gate on the shipped scenarios (false blocks)"),
    Benchmark("litellm", "bench_litellm.py", "LiteLLM drop-in: per-call overhead against LiteLLM's simple-shuffle"),
    Benchmark("classifier", "bench_classifier.py", "The task classifier on prompts we did not write (held out)"),
]
BY_NAME = {b.name: b for b in BENCHMARKS}


@dataclass
class Run:
    bench: Benchmark
    command: str
    started_utc: dt.datetime
    exit_code: int = 0
    wall_s: float = 0.0
    stdout: str = ""
    skipped: str | None = None
    load: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- machine

def _cpu_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat), or None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict:
    cpu, mem_gib = platform.processor() or "", None
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
        mem_gib = kib / 2**20
    except (OSError, StopIteration, ValueError):
        pass
    versions = {}
    for name in ("numpy", "scipy", "polars", "pyarrow", "dagster"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_gib": mem_gib, "python": platform.python_version(), "versions": versions,
    }


def machine_line(m: dict) -> str:
    mem = f", {m['mem_gib']:.1f} GiB RAM" if m["mem_gib"] else ""
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return (f"{m['cpu'] or 'unknown CPU'}, {m['usable_cpus']} usable CPUs ({m['cpus']} online){mem}; {m['platform']}; "
            f"Python {m['python']}; {versions}")


def code_version() -> str:
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "routing_runtime", "pipelines", "assets", "benchmarks")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"git {commit}" + (" + uncommitted changes (routing_runtime/, pipelines/, assets/ or benchmarks/)" if dirty else "")


# ---------------------------------------------------------------------------- running

def display_command(argv: list[str], tmp: Path) -> str:
    """The command as run, with the interpreter and paths relative to the project root."""
    def rel(arg: str) -> str:
        if arg.startswith(str(tmp)):
            return "$TMP" + arg[len(str(tmp)):]
        try:
            return str(Path(arg).relative_to(ROOT))
        except ValueError:
            return arg
    def quote(arg: str) -> str:
        return arg if arg.startswith("$TMP/") and shlex.quote(arg[5:]) == arg[5:] else shlex.quote(arg)
    return " ".join(quote(rel(a)) for a in argv)


def run_benchmark(bench: Benchmark, quick: bool, tmp: Path) -> Run:
    argv = [sys.executable, str(BENCH_DIR / bench.script), *(["--quick"] if quick else []),
            "--json", str(tmp / f"{bench.name}.json")]
    run = Run(bench, display_command(argv, tmp), dt.datetime.now(dt.timezone.utc))
    banner = f"=== {bench.name}: {run.command}"
    print(f"\n{banner}\n", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    busy0, child0, load0 = _cpu_busy_s(), _children_cpu_s(), _loadavg()
    started = time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        run.exit_code = proc.wait()
    run.wall_s = time.perf_counter() - started
    busy1, child1, load1 = _cpu_busy_s(), _children_cpu_s(), _loadavg()
    run.stdout = "".join(lines)
    own_cpu = child1 - child0
    others = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - own_cpu)
    run.load = {"loadavg_start": load0, "loadavg_end": load1, "benchmark_cpu_s": own_cpu, "others_cpu_s": others}
    first = next((ln for ln in lines if ln.strip()), "")
    if run.exit_code == 0 and first.startswith("SKIP"):
        run.skipped = first.strip()
    status = "skipped" if run.skipped else ("ok" if run.exit_code == 0 else f"FAILED (exit {run.exit_code})")
    print(f"\n=== {bench.name}: {status} in {run.wall_s:.1f} s", flush=True)
    return run


# ---------------------------------------------------------------------------- report

_HEADING = re.compile(r"^(#{1,5}) ")
_JSON_LINE = re.compile(r"^JSON written to ")


def captured_markdown(stdout: str) -> str:
    """The benchmark's stdout for the report: headings one level down (they sit under a section),
    the pointer to the temporary JSON file dropped; everything else, tables included, verbatim."""
    out = []
    for line in stdout.splitlines():
        if _JSON_LINE.match(line):
            continue
        out.append(_HEADING.sub(lambda m: "#" + m.group(1) + " ", line))
    return "\n".join(out).strip("\n")


def section(run: Run, quick: bool) -> str:
    b = run.bench
    load = run.load
    load_text = ""
    if load.get("loadavg_start") is not None:
        load_text = f"; load average (1 min) {load['loadavg_start']:.2f} at start, {load['loadavg_end']:.2f} at end"
    if load.get("others_cpu_s") is not None:
        share = load["others_cpu_s"] / run.wall_s if run.wall_s else 0.0
        load_text += (f"; CPU used by other processes meanwhile {load['others_cpu_s']:.0f} s "
                      f"({share:.2f} cores on average, the benchmark itself {load['benchmark_cpu_s']:.0f} s)")
    status = "skipped" if run.skipped else ("exit 0" if run.exit_code == 0 else f"**FAILED: exit {run.exit_code}**")
    lines = [
        f"<!-- bench:{b.name} -->",
        f"## {b.title}",
        "",
        f"Command: `{run.command}` ($TMP: a temporary directory, removed afterwards)  ",
        f"Run {run.started_utc:%Y-%m-%d %H:%M} UTC, {run.wall_s:.0f} s wall, {status}{load_text}.",
    ]
    if quick:
        lines += ["", "**Quick smoke run (`--quick`): small sizes, the figures are not meaningful.**"]
    lines.append("")
    if run.skipped:
        lines += [
            "Skipped: the real data in `../shared/data` is absent, so this benchmark measured nothing. It printed:",
            "", f"> {run.skipped}",
        ]
    else:
        body = captured_markdown(run.stdout)
        lines.append(body if body else "(no output on stdout)")
        if run.exit_code != 0:
            lines += ["", f"**The benchmark exited {run.exit_code}; its stderr went to the terminal. Figures above may be incomplete.**"]
    lines.append(f"<!-- /bench:{b.name} -->")
    return "\n".join(lines)


def header(m: dict, started: dt.datetime, total_s: float | None, quick: bool, partial: list[str] | None) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python benchmarks/run_all.py`) on {started:%Y-%m-%d} "
        f"({started:%H:%M} UTC)" + (f"; all benchmarks took {total_s / 60:.1f} min in sequence." if total_s is not None else "."),
    ]
    if partial:
        lines[-1] = (f"Written by `python benchmarks/run_all.py`; sections {', '.join(partial)} re-run on "
                     f"{started:%Y-%m-%d} ({started:%H:%M} UTC), the others are from earlier runs (each section names its run).")
    lines += [
        "",
        f"Machine: {machine_line(m)}  ",
        f"Code: {code_version()}",
        "",
        "Each section below is one benchmark script: the exact command that produced it, when it ran, the machine load "
        "while it ran (a shared machine inflates wall clocks and tail latencies) and what it printed, tables verbatim. "
        "Re-run one with `python benchmarks/run_all.py --only NAME` or the command shown.",
    ]
    if quick:
        lines += ["", "**This is a `--quick` smoke run: small sizes everywhere, the figures mean nothing.**"]
    return "\n".join(lines)


_SECTION = re.compile(r"<!-- bench:(?P<name>[a-z]+) -->.*?<!-- /bench:(?P=name) -->", re.S)


def merge(existing: str, new_sections: dict[str, str], new_header: str) -> str:
    """Replace the named sections of an existing report (keeping the others, in the canonical order)."""
    old = {m.group("name"): m.group(0) for m in _SECTION.finditer(existing)}
    old.update(new_sections)
    ordered = [old[b.name] for b in BENCHMARKS if b.name in old]
    return new_header + "\n\n" + "\n\n".join(ordered) + "\n"


# ---------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a fast smoke run (does not write BENCHMARKS.md)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only these ({', '.join(BY_NAME)}); repeatable or comma separated")
    parser.add_argument("--output", metavar="PATH",
                        help=f"report file (default {DEFAULT_OUTPUT.name} at the project root; with --quick: none unless given)")
    args = parser.parse_args(argv)
    only = [n.strip().removeprefix("bench_").removesuffix(".py") for item in (args.only or []) for n in item.split(",") if n.strip()]
    unknown = [n for n in only if n not in BY_NAME]
    if unknown:
        parser.error(f"--only {', '.join(unknown)}: not a benchmark; use {', '.join(BY_NAME)}")
    selected = [b for b in BENCHMARKS if not only or b.name in only]
    output = Path(args.output) if args.output else (None if args.quick else DEFAULT_OUTPUT)

    started_utc = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    m = machine()
    print(f"run_all: {', '.join(b.name for b in selected)}{' (quick)' if args.quick else ''} on {machine_line(m)}", flush=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-run-all-") as tmp_name:
        tmp = Path(tmp_name)
        for bench in selected:
            runs.append(run_benchmark(bench, args.quick, tmp))
    total_s = time.perf_counter() - started

    print("\n=== summary")
    for run in runs:
        status = "skipped" if run.skipped else ("ok" if run.exit_code == 0 else f"FAILED (exit {run.exit_code})")
        print(f"  {run.bench.name:<10} {status:<18} {run.wall_s:7.1f} s   {run.command}")
    print(f"  total {total_s:.1f} s")

    if output is None:
        print("--quick: no report written (pass --output PATH to write one)")
    else:
        sections = {run.bench.name: section(run, args.quick) for run in runs}
        partial = [r.bench.name for r in runs] if only else None
        existing = output.read_text(encoding="utf-8") if (only and output.exists()) else ""
        text = merge(existing, sections, header(m, started_utc, None if only else total_s, args.quick, partial))
        output.write_text(text, encoding="utf-8")
        print(f"report written to {output}")
    return 0 if all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
