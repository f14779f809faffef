"""Latency of the routing runtime's hot paths, next to a bare SQLite INSERT on the same disk.

Run with ``make bench`` or ``python benchmarks/bench_runtime.py [--n 20000] [--quick] [--json out.json]``.
``--quick`` (200 calls per operation; seconds) only proves it still runs: ``make test``.

What is measured, in one process, in a temporary directory under the project root (same disk
as the repository, removed at the end):

1. bare INSERT: one autocommit ``INSERT`` of a routing-decision-like row (10 columns, 32-hex id)
   into a fresh database opened with ``routing_runtime.store.connect`` (the router's exact
   settings: WAL, ``synchronous=NORMAL``, busy timeout, foreign keys). The table mirrors
   ``routing_decisions`` (text primary key + the ``created_at`` index); the rows are copies of
   real decisions with fresh ids and timestamps, built before timing. A primary-key-only
   variant is shown for information.
2. ``ModelRouter.select_model(TaskType, preference)``, cycling over every task type and
   preference; each call commits its decision before returning.
3. ``select_model`` with free prompt text (classification included): short, medium and a ~4 kB
   prompt with a traceback, reported separately.
4. ``record_performance(decision_id, "success", ...)`` for decisions made beforehand.
5. ``classify_task`` alone on a short prompt and on a ~8 kB prompt.
6. Import cost: wall clock of ``python -c "import routing_runtime"`` minus ``python -c "pass"``
   (medians over alternating subprocess runs), with a bytecode cache kept in the temp dir
   (``PYTHONPYCACHEPREFIX``, nothing written into the repository); when the environment sets
   ``PYTHONDONTWRITEBYTECODE`` the figure without a bytecode cache is shown too, for information.

Every operation is warmed up, then timed call by call with ``time.perf_counter_ns`` in blocks
that alternate between operations (the order reversed every other block), so machine noise hits
the baseline and the measured operations alike. Garbage collection stays on (it is part of the
real cost); a collection is run before each block.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from routing_runtime import RoutingPreference, classify_task, store
from routing_runtime.admin import initialise
from routing_runtime.types import all_cells
from routing_runtime.router import ModelRouter, new_id

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------- prompts

SHORT_PROMPT = "Why does this raise KeyError when the config file is missing?"

MEDIUM_PROMPT = """\
Can you review this change before I merge it? I'm mostly worried about the retry loop and
whether the connection gets closed on every path.

```python
def fetch_with_retry(session, url, attempts=3, backoff=0.5):
    last = None
    for i in range(attempts):
        try:
            response = session.get(url, timeout=10)
            response.raise_for_status()
            return response.json()
        except requests.RequestException as exc:
            last = exc
            time.sleep(backoff * 2 ** i)
    raise last
```
"""

_TRACEBACK_FRAMES = [
    ("/srv/app/.venv/lib/python3.11/site-packages/django/core/handlers/exception.py", 55, "inner",
     "response = get_response(request)"),
    ("/srv/app/.venv/lib/python3.11/site-packages/django/core/handlers/base.py", 197, "_get_response",
     "response = wrapped_callback(request, *callback_args, **callback_kwargs)"),
    ("/srv/app/.venv/lib/python3.11/site-packages/django/views/generic/base.py", 104, "view",
     "return self.dispatch(request, *args, **kwargs)"),
    ("/srv/app/.venv/lib/python3.11/site-packages/rest_framework/views.py", 509, "dispatch",
     "response = self.handle_exception(exc)"),
    ("/srv/app/billing/api/views.py", 142, "post", "invoice = build_invoice(account, payload['lines'])"),
    ("/srv/app/billing/invoicing.py", 88, "build_invoice", "totals = compute_totals(lines, account.currency)"),
    ("/srv/app/billing/invoicing.py", 61, "compute_totals", "rate = RATES[currency][line['tax_code']]"),
]


def _traceback(frames: list[tuple[str, int, str, str]], error: str) -> str:
    lines = ["Traceback (most recent call last):"]
    for path, line, func, code in frames:
        lines.append(f'  File "{path}", line {line}, in {func}')
        lines.append(f"    {code}")
    lines.append(error)
    return "\n".join(lines)


_CODE = '''\
RATES = load_rates(settings.RATES_FILE)


def compute_totals(lines, currency):
    subtotal = Decimal("0")
    tax = Decimal("0")
    for line in lines:
        amount = Decimal(line["unit_price"]) * line["quantity"]
        rate = RATES[currency][line["tax_code"]]
        subtotal += amount
        tax += (amount * rate).quantize(Decimal("0.01"))
    return {"subtotal": subtotal, "tax": tax, "total": subtotal + tax}


def build_invoice(account, lines):
    totals = compute_totals(lines, account.currency)
    invoice = Invoice.objects.create(account=account, currency=account.currency, **totals)
    for line in lines:
        InvoiceLine.objects.create(invoice=invoice, **line)
    return invoice
'''


def _long_prompt(target_chars: int) -> str:
    """A realistic debugging request: question, pasted code, log lines and a traceback."""
    head = (
        "Our invoicing endpoint started failing in production after yesterday's deploy. It worked fine in staging.\n"
        "Some requests succeed, others return a 500. Here is the code involved:\n\n```python\n" + _CODE + "```\n\n"
        "and the logs around one failing request:\n\n"
    )
    tail = (
        "\n\n" + _traceback(_TRACEBACK_FRAMES, "KeyError: 'TX-RED-7'") + "\n\n"
        "What is causing this and how do I fix it without breaking the existing invoices?"
    )
    log_lines, i = [], 0
    while len(head) + sum(len(s) + 1 for s in log_lines) + len(tail) < target_chars:
        log_lines.append(
            f"2024-05-14 09:{i // 60 % 60:02d}:{i % 60:02d},{(i * 37) % 1000:03d} INFO billing.api "
            f"POST /api/invoices account={1000 + i * 7} lines={1 + i % 5} currency={'EUR' if i % 3 else 'GBP'} status=200"
        )
        i += 1
    return head + "\n".join(log_lines) + tail


PROMPT_4K = _long_prompt(4096)
PROMPT_8K = _long_prompt(8192)

# ---------------------------------------------------------------------------- measurement


@dataclass
class Op:
    """One measured operation: ``run(args, out)`` times each call of ``args`` into ``out``."""

    key: str
    label: str
    run: Callable[[list, list[int]], None]
    args: list
    samples: list[int] = field(default_factory=list)

    def stats(self) -> dict:
        s = sorted(self.samples)
        return {
            "label": self.label,
            "n": len(s),
            "p50_us": _pct(s, 50) / 1000,
            "p90_us": _pct(s, 90) / 1000,
            "p99_us": _pct(s, 99) / 1000,
            "mean_us": statistics.fmean(s) / 1000,
            "min_us": s[0] / 1000,
            "max_us": s[-1] / 1000,
        }


def _pct(sorted_ns: list[int], p: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    return sorted_ns[max(0, math.ceil(p / 100 * len(sorted_ns)) - 1)]


def _timed_execute(conn: sqlite3.Connection, sql: str) -> Callable[[list, list[int]], None]:
    def run(args: list, out: list[int]) -> None:
        pc, ex, append = time.perf_counter_ns, conn.execute, out.append
        for params in args:
            t0 = pc()
            ex(sql, params)
            append(pc() - t0)
    return run


def _timed_select(router: ModelRouter) -> Callable[[list, list[int]], None]:
    def run(args: list, out: list[int]) -> None:
        pc, select, append = time.perf_counter_ns, router.select_model, out.append
        for task, pref in args:
            t0 = pc()
            select(task, pref)
            append(pc() - t0)
    return run


def _timed_record(router: ModelRouter) -> Callable[[list, list[int]], None]:
    def run(args: list, out: list[int]) -> None:
        pc, record, append = time.perf_counter_ns, router.record_performance, out.append
        for decision_id, quality, latency, tokens, cost in args:
            t0 = pc()
            record(decision_id, "success", quality_score=quality, latency_ms=latency, tokens_used=tokens, cost_usd=cost)
            append(pc() - t0)
    return run


def _timed_classify(args: list, out: list[int]) -> None:
    pc, classify, append = time.perf_counter_ns, classify_task, out.append
    for text in args:
        t0 = pc()
        classify(text)
        append(pc() - t0)


def _timer_overhead_ns(n: int = 20000) -> float:
    pc = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = pc()
        samples.append(pc() - t0)
    return statistics.median(samples)


def run_interleaved(ops: list[Op], n: int, warmup: int, blocks: int) -> None:
    for op in ops:  # warm-up: caches, statement cache, WAL, branch predictors
        op.run(op.args[:warmup], [])
    per_block = [n // blocks + (1 if b < n % blocks else 0) for b in range(blocks)]
    start = warmup
    for b, size in enumerate(per_block):
        order = ops if b % 2 == 0 else ops[::-1]
        for op in order:
            gc.collect()
            op.run(op.args[start:start + size], op.samples)
        start += size


# ---------------------------------------------------------------------------- import cost


def measure_import(runs: int, cwd: Path, env: dict[str, str]) -> dict:
    """Median wall clock of ``python -c "import routing_runtime"`` and ``python -c "pass"``."""
    def wall(code: str) -> int:
        t0 = time.perf_counter_ns()
        subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter_ns() - t0

    bare, imp = [], []
    for _ in range(3):  # warm the page cache and the bytecode cache
        wall("pass"), wall("import routing_runtime")
    for i in range(runs):
        if i % 2 == 0:
            bare.append(wall("pass"))
            imp.append(wall("import routing_runtime"))
        else:
            imp.append(wall("import routing_runtime"))
            bare.append(wall("pass"))
    bare_ms, imp_ms = statistics.median(bare) / 1e6, statistics.median(imp) / 1e6
    return {"runs": runs, "bare_interpreter_ms": bare_ms, "import_ms": imp_ms, "import_cost_ms": imp_ms - bare_ms}


def bytecode_disabled() -> bool:
    return sys.flags.dont_write_bytecode or bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))


def measure_imports(runs: int, tmp: Path) -> dict:
    """The import cost with a bytecode cache (as an installed package runs), kept in ``tmp`` so that
    nothing is written into the repository; and, when this environment disables bytecode writing
    (PYTHONDONTWRITEBYTECODE / -B), also as this environment runs it: every module compiled from source."""
    cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached_env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    result = {"cached": measure_import(runs, tmp, cached_env)}
    if bytecode_disabled():
        result["uncached"] = measure_import(runs, tmp, dict(os.environ))
    return result


# ---------------------------------------------------------------------------- set-up


_BASELINE_TABLE = """
CREATE TABLE decisions_like (
    id TEXT PRIMARY KEY,
    agent_execution_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    selected_model TEXT NOT NULL,
    selection_reason TEXT,
    alternatives_considered TEXT,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    preference TEXT,
    propensity REAL,
    rule_set_version INTEGER
)"""
_BASELINE_INSERT = (
    "INSERT INTO decisions_like (id, agent_execution_id, task_type, selected_model, selection_reason,"
    " alternatives_considered, created_at, preference, propensity, rule_set_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _baseline_db(path: Path, with_index: bool) -> sqlite3.Connection:
    conn = store.connect(path)
    conn.execute(_BASELINE_TABLE)
    if with_index:
        conn.execute("CREATE INDEX decisions_like_by_created_at ON decisions_like (created_at)")
    return conn


def _baseline_rows(templates: list[tuple], count: int) -> list[tuple]:
    """Copies of real decision rows with fresh, time-ordered ids and timestamps (built before timing)."""
    rows = []
    for i in range(count):
        t = templates[i % len(templates)]
        rid = new_id()
        rows.append((rid, rid, t[0], t[1], t[2], t[3], store.utc_timestamp(), t[4], t[5], t[6]))
    return rows


def _cycle(items: list, count: int) -> list:
    return [items[i % len(items)] for i in range(count)]


# ---------------------------------------------------------------------------- report


def _fmt(x: float) -> str:
    return f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"


def _loadavg() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def build_report(args: argparse.Namespace, ops: dict[str, Op], imp: dict | None, timer_ns: float, tmp: Path,
                 load: dict) -> tuple[str, dict]:
    st = {k: op.stats() for k, op in ops.items()}
    sel, base, rec, cls = st["select_enum"], st["insert"], st["record"], st["classify_8k"]
    ratio = sel["p50_us"] / base["p50_us"]

    def target(figure: str, short: str, value: float, unit: str, limit: str, met: bool) -> dict:
        return {"figure": figure, "short": short, "value": value, "unit": unit, "target": limit, "met": met}

    targets = [
        target("select_model(TaskType) p50", "p50", sel["p50_us"], "µs", "≤ 50 µs", sel["p50_us"] <= 50),
        target("select_model p50 / bare INSERT p50", "ratio", ratio, "×", "≤ 2×", ratio <= 2),
        target("select_model(TaskType) p99", "p99", sel["p99_us"], "µs", "≤ 300 µs", sel["p99_us"] <= 300),
        target("record_performance p50", "p50", rec["p50_us"], "µs", "≤ 50 µs", rec["p50_us"] <= 50),
        target("classify_task ~8 kB p50", "p50", cls["p50_us"], "µs", "≤ 200 µs", cls["p50_us"] <= 200),
    ]
    if imp is not None:
        cost = imp["cached"]["import_cost_ms"]
        targets.append(target("import routing_runtime over bare interpreter", "import", cost, "ms", "≤ 30 ms", cost <= 30))
    row_targets = {
        "select_enum": ("p50 ≤ 50 µs and ≤ 2× bare INSERT p50; p99 ≤ 300 µs", targets[0:3]),
        "record": ("p50 ≤ 50 µs", targets[3:4]),
        "classify_8k": ("p50 ≤ 200 µs", targets[4:5]),
    }

    cmd_args = " ".join(sys.argv[1:])
    lines = [
        f"## routing_runtime benchmark — {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "",
        f"Command: `make bench` / `python benchmarks/bench_runtime.py{(' ' + cmd_args) if cmd_args else ''}` — "
        f"n={args.n} per operation in {args.blocks} interleaved blocks after {args.warmup} warm-up calls; "
        f"temp dir on the project's disk ({tmp.parent}); timer overhead {timer_ns:.0f} ns/call (not subtracted).",
    ]
    cpus = os.cpu_count() or 1
    if load["start"] is not None and load["end"] is not None:
        busiest = max(load["start"][0], load["end"][0])
        lines += ["", f"Load average (1 min): {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end."]
        if busiest > max(1.5, 0.5 * cpus):
            lines.append(
                f"**Warning: the machine was busy (load {busiest:.2f} on {cpus} CPUs) — other processes competed"
                " for the CPU and the disk; tail latencies (p99) and the import time are inflated. Re-run on a quiet machine.**"
            )
    lines += [
        "",
        "| operation | n | p50 µs | p90 µs | p99 µs | target | met |",
        "|---|--:|--:|--:|--:|---|---|",
    ]
    for key, s in st.items():
        limit, ts = row_targets.get(key, ("—", []))
        missed_here = [t for t in ts if not t["met"]]
        if not ts:
            met = ""
        elif not missed_here:
            met = "yes"
        else:
            met = "no (" + ", ".join(
                f"{t['short']} = {t['value']:.2f}×" if t["unit"] == "×" else f"{t['short']} = {_fmt(t['value'])} {t['unit']}"
                for t in missed_here) + ")"
        lines.append(f"| {s['label']} | {s['n']:,} | {_fmt(s['p50_us'])} | {_fmt(s['p90_us'])} | {_fmt(s['p99_us'])} | {limit} | {met} |")
    lines += [
        "",
        "| figure | value | target | met |",
        "|---|--:|---|---|",
        f"| select_model p50 / bare INSERT p50 | {ratio:.2f}× | ≤ 2× | {'yes' if ratio <= 2 else 'no'} |",
        f"| record_performance p50 / bare INSERT p50 | {rec['p50_us'] / base['p50_us']:.2f}× | — | |",
    ]
    if imp is not None:
        c = imp["cached"]
        lines.append(
            f"| import routing_runtime over bare interpreter, bytecode cached (median of {c['runs']} runs:"
            f" {c['import_ms']:.1f} ms vs {c['bare_interpreter_ms']:.1f} ms) | {c['import_cost_ms']:.1f} ms | ≤ 30 ms |"
            f" {'yes' if c['import_cost_ms'] <= 30 else 'no'} |"
        )
        if "uncached" in imp:
            u = imp["uncached"]
            lines.append(
                f"| same, as this environment runs it: PYTHONDONTWRITEBYTECODE/-B set, package compiled from source"
                f" on every start (info; {u['import_ms']:.1f} ms vs {u['bare_interpreter_ms']:.1f} ms) |"
                f" {u['import_cost_ms']:.1f} ms | — | |"
            )
    missed = [t["figure"] for t in targets if not t["met"]]
    lines += ["", "Targets missed: " + ("; ".join(missed) if missed else "none")]

    data = {
        "machine": {
            "platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "executable": sys.executable,
        },
        "command": "python benchmarks/bench_runtime.py" + ((" " + cmd_args) if cmd_args else ""),
        "load_average": load,
        "settings": {"n": args.n, "warmup": args.warmup, "blocks": args.blocks, "import_runs": args.import_runs,
                     "timer_overhead_ns": timer_ns},
        "operations": st,
        "ratio_select_p50_over_insert_p50": ratio,
        "import": imp,
        "targets": targets,
        "targets_missed": missed,
    }
    return "\n".join(lines), data


# ---------------------------------------------------------------------------- main

#: ``--quick``: enough calls for every percentile to exist, two import runs.
QUICK = {"n": 200, "warmup": 20, "blocks": 2, "import_runs": 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="timed calls per operation (default 20000)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed warm-up calls per operation (default 500)")
    parser.add_argument("--blocks", type=int, default=10, help="interleaved blocks (default 10)")
    parser.add_argument("--import-runs", type=int, default=20, help="subprocess runs for the import cost (0: skip)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: proves the benchmark still runs end to end (`make test`); figures mean nothing")
    args = parser.parse_args(argv)
    if args.quick:  # the quick sizes replace the defaults only: options given explicitly still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if args.n < args.blocks or args.blocks < 1 or args.warmup < 0:
        parser.error("need --blocks ≥ 1, --n ≥ --blocks and --warmup ≥ 0")

    total = args.warmup + args.n
    tmp = Path(tempfile.mkdtemp(prefix=".bench-runtime-", dir=ROOT))
    # Invisible to git while it exists (a concurrent `git add -A` must not pick up the databases).
    (tmp / ".gitignore").write_text("*\n")
    conns: list[sqlite3.Connection] = []
    router = None
    try:
        home = tmp / "home"
        initialise(home)
        router = ModelRouter.open(home, seed=0)
        combos = all_cells()

        # Decisions for record_performance to answer, made (untimed) before anything is timed.
        decision_ids = [router.select_model(t, p).decision_id for t, p in _cycle(combos, total)]
        # The benchmark's own read connection: the router's store is not the benchmark's business.
        reader = store.connect(home / store.DB_NAME)
        conns.append(reader)
        templates = reader.execute(
            "SELECT task_type, selected_model, selection_reason, alternatives_considered, preference, propensity,"
            " rule_set_version FROM routing_decisions ORDER BY rowid LIMIT ?", (len(combos),)
        ).fetchall()

        insert_conn = _baseline_db(tmp / "baseline.db", with_index=True)
        insert_pk_conn = _baseline_db(tmp / "baseline_pk.db", with_index=False)
        conns += [insert_conn, insert_pk_conn]

        prefs = list(RoutingPreference)
        record_args = [
            (did, 0.5 + (i % 50) / 100, float(400 + i % 2600), 300 + i % 2200, round(0.0001 + (i % 97) * 1e-5, 6))
            for i, did in enumerate(decision_ids)
        ]
        ops = {
            "insert": Op("insert", "bare INSERT, autocommit (baseline: PK + created_at index, like routing_decisions)",
                         _timed_execute(insert_conn, _BASELINE_INSERT), _baseline_rows(templates, total)),
            "insert_pk": Op("insert_pk", "bare INSERT, autocommit, PK only (info)",
                            _timed_execute(insert_pk_conn, _BASELINE_INSERT), _baseline_rows(templates, total)),
            "select_enum": Op("select_enum", "select_model(TaskType, preference), 32 combinations",
                              _timed_select(router), _cycle(combos, total)),
            "select_short": Op("select_short", f"select_model(prompt {len(SHORT_PROMPT)} B, short)",
                               _timed_select(router), [(SHORT_PROMPT, p) for p in _cycle(prefs, total)]),
            "select_medium": Op("select_medium", f"select_model(prompt {len(MEDIUM_PROMPT)} B, review + code)",
                                _timed_select(router), [(MEDIUM_PROMPT, p) for p in _cycle(prefs, total)]),
            "select_4k": Op("select_4k", f"select_model(prompt {len(PROMPT_4K):,} B, logs + traceback)",
                            _timed_select(router), [(PROMPT_4K, p) for p in _cycle(prefs, total)]),
            "record": Op("record", "record_performance(decision_id, \"success\", …)",
                         _timed_record(router), record_args),
            "classify_short": Op("classify_short", f"classify_task(prompt {len(SHORT_PROMPT)} B)",
                                 _timed_classify, [SHORT_PROMPT] * total),
            "classify_8k": Op("classify_8k", f"classify_task(prompt {len(PROMPT_8K):,} B)",
                              _timed_classify, [PROMPT_8K] * total),
        }
        for op in ops.values():  # name the task type each prompt classifies as (all are meant as debugging/review)
            if op.key.startswith(("select_", "classify_")) and op.key != "select_enum":
                text = op.args[0][0] if op.key.startswith("select_") else op.args[0]
                op.label = op.label[:-1] + f" → {classify_task(text).task_type.value})"
        # Sanity: every timed select_model call is recorded.
        before = reader.execute("SELECT COUNT(*) FROM routing_decisions").fetchone()[0]

        load_start = _loadavg()
        timer_ns = _timer_overhead_ns()
        t0 = time.perf_counter()
        run_interleaved(list(ops.values()), args.n, args.warmup, args.blocks)
        elapsed = time.perf_counter() - t0

        after = reader.execute("SELECT COUNT(*) FROM routing_decisions").fetchone()[0]
        selects = sum(1 for k in ops if k.startswith("select_"))
        assert after - before == selects * total, (after - before, selects * total)
        answered = reader.execute("SELECT COUNT(*) FROM model_performance").fetchone()[0]
        assert answered == total, answered

        imp = measure_imports(args.import_runs, tmp) if args.import_runs > 0 else None
        load = {"start": load_start, "end": _loadavg()}
        report, data = build_report(args, ops, imp, timer_ns, tmp, load)
        data["settings"]["timed_section_s"] = elapsed
        print(report)
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
            print(f"\nJSON written to {args.json}")
    finally:
        if router is not None:
            router.close()
        for conn in conns:
            conn.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
