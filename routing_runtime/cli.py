"""The ``routing`` command line: init, select, record, rules, status, learn, sync, demo, ui."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from routing_runtime.store import StoreError
from routing_runtime.rules import PREFERENCES
from routing_runtime.types import RoutingPreference, TaskType

_PREFERENCE_HELP = "; ".join(f"{p.value}: {spec.description}" for p, spec in PREFERENCES.items())
PIPELINE_EXTRA_HINT = "routing learn needs the [pipeline] extra: pip install 'routing-runtime[pipeline]'"


def _parser() -> argparse.ArgumentParser:
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", metavar="DIR", help="ROUTING_HOME (default: $ROUTING_HOME, else ./.routing)")
    parser = argparse.ArgumentParser(prog="routing", description="A self-learning LLM model router.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", parents=[home], help="create or upgrade ROUTING_HOME and load the registry")
    init.add_argument("--registry", metavar="FILE",
                      help="registry TOML (default: keep the one last applied; the shipped one for a new home)")
    init.add_argument(
        "--group-access", action="store_true",
        help="let the home's group read and write it (mode 2770, files 0660); default: private to you (0700)",
    )
    init.add_argument(
        "--hub", metavar="URL",
        help="tie the home to a fleet's hub: s3://bucket/prefix (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,"
             " AWS_REGION, AWS_ALLOW_HTTP) or an absolute path of a shared folder; extra [hub] for s3",
    )
    init.add_argument(
        "--dagster-postgres", metavar="URL",
        help="keep the home's Dagster instance (runs, event log, schedules) in PostgreSQL at"
             " postgresql://USER:PASSWORD@HOST:PORT/DATABASE, checked to answer first (extra [postgres]);"
             " default: keep what was set, SQLite under dagster_home/ for a new home",
    )

    select = commands.add_parser("select", parents=[home], help="choose a model for a prompt and record the decision")
    select.add_argument("text", metavar="TEXT", help="the prompt (classified unless --task is given)")
    select.add_argument("--task", choices=[t.value for t in TaskType], help="task type; skips classification")
    select.add_argument("--preference", default="balanced", choices=[p.value for p in RoutingPreference], help=_PREFERENCE_HELP)
    select.add_argument("--agent-execution-id", help="the agent execution this request belongs to")
    select.add_argument("--exclude", action="append", default=[], metavar="MODEL", help="model not to use (repeatable)")
    select.add_argument("--json", action="store_true", help="print the decision as JSON")

    record = commands.add_parser("record", parents=[home], help="record the outcome of a decision")
    record.add_argument("decision_id", metavar="DECISION_ID")
    record.add_argument("outcome", choices=["success", "partial", "failure"])
    record.add_argument("--quality", type=float, dest="quality_score")
    record.add_argument("--latency-ms", type=float)
    record.add_argument("--tokens", type=int, dest="tokens_used")
    record.add_argument("--cost-usd", type=float)

    rules = commands.add_parser("rules", parents=[home], help="show the published routing rules")
    rules.add_argument("--task", choices=[t.value for t in TaskType])
    rules.add_argument("--preference", choices=[p.value for p in RoutingPreference], help=_PREFERENCE_HELP)
    rules.add_argument("--json", action="store_true", help="print the documented JSON shape")

    history = commands.add_parser("history", parents=[home], help="every rule set, newest first, with its gate result")
    history.add_argument("--json", action="store_true", help='[{"rule_set_version", "as_of", "source", "created_at", "gate"}]')
    diff = commands.add_parser("diff", parents=[home], help="per task type and preference: the top model and its share in A and B")
    diff.add_argument("a", type=int, metavar="A", help="a rule set version")
    diff.add_argument("b", type=int, metavar="B", help="another rule set version")
    diff.add_argument("--json", action="store_true")
    rollback = commands.add_parser(
        "rollback", parents=[home], help="publish a copy of an earlier rule set (running routers switch within a second)",
    )
    rollback.add_argument("--to", type=int, required=True, metavar="N", help="the version to copy (see `routing history`)")

    status = commands.add_parser("status", parents=[home], help="what the home holds: rules in force, logs, learning state, inbox")
    status.add_argument("--json", action="store_true")

    learn = commands.add_parser("learn", parents=[home], help="run the nightly learning job now (extra [pipeline])")
    learn.add_argument("--as-of", metavar="YYYY-MM-DD", help="learn from logs up to the end of this UTC day (default: yesterday)")
    learn.add_argument("--json", action="store_true", help="print the result as JSON (status, rule_set_version, tables, problems)")
    learn.add_argument(
        "--accept-quarantine", action="append", default=[], metavar="YYYY-MM-DD",
        help="learn the valid rows of a day held out because most of its rows were quarantined (repeatable)",
    )
    learn.add_argument("--forget-missing", action="store_true", help="learn without inbox drops whose files were lost")
    learn.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="run the steps in up to N processes, each table's days ingested in N chunks at once (default 1: this process)",
    )
    learn.add_argument(
        "--no-gate", action="store_true",
        help="publish the candidate as learned even when the publication gate would block or hold it (recorded with the rule set)",
    )
    sync = commands.add_parser(
        "sync", parents=[home],
        help="ship new decisions and outcomes to the hub, take its newest rule set (a home tied by `routing init --hub`)",
    )
    sync.add_argument("--every", type=float, metavar="SECONDS", help="sync again every SECONDS until SIGTERM or Ctrl-C")
    sync.add_argument(
        "--ship-every", type=float, metavar="SECONDS",
        help="with --every: ship logs every SECONDS (default: the larger of --every and 30), pull rule sets every --every",
    )
    sync.add_argument("--json", action="store_true", help='one JSON line per sync: {"shipped": {table: rows}, "rule_set_version": v}')
    demo = commands.add_parser("demo", help="simulate agents and nightly learning on a scenario, then report (extra [pipeline])")
    demo.add_argument("--scenario", default="stationary", help="stationary, drift, new-model, price-change, or a scenario .toml")
    demo.add_argument("--days", type=int, help="simulated days (default: the scenario's)")
    demo.add_argument("--requests-per-day", type=int, help="requests per simulated day (default: the scenario's)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--home", metavar="DIR",
        help="the demo's home (default: ./.routing-demo); replaced only if empty or made by an earlier demo",
    )

    ui = commands.add_parser("ui", parents=[home], help="Dagster webserver and daemon on 127.0.0.1 (extra [pipeline])")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--no-daemon", action="store_true", help="webserver only: the nightly schedule does not run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _private_files(args)
    try:
        return _COMMANDS[args.command](args)
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except (ValueError, LookupError, RuntimeError, OSError, StoreError) as exc:
        print(f"routing {args.command}: error: {exc}{_read_only_hint(args)}", file=sys.stderr)
        return 2


def _read_only_hint(args) -> str:
    """Say so when the home cannot be written: the error alone ("unable to open database file")
    does not tell an operator why."""
    from routing_runtime import safe_fs
    from routing_runtime.home import resolve_home

    read_only = safe_fs.is_read_only(resolve_home(getattr(args, "home", None)))
    return " (the home is read-only: `routing rules` and `routing status` still read it)" if read_only else ""


def _private_files(args) -> None:
    """Everything a command creates under a home (also by SQLite and Dagster) is private to its
    owner, or shared with the group of a home given group access."""
    import os

    from routing_runtime import safe_fs
    from routing_runtime.home import resolve_home

    try:
        os.umask(safe_fs.umask_for(resolve_home(getattr(args, "home", None))))
    except OSError:
        os.umask(0o077)


def _init(args) -> int:
    from routing_runtime.admin import initialise

    result = initialise(args.home, args.registry, group_access=args.group_access, hub=args.hub,
                        dagster_postgres=args.dagster_postgres)
    upgraded = (
        f"schema upgraded {result.previous_schema_version} -> {result.schema_version}"
        if result.previous_schema_version != result.schema_version else f"schema {result.schema_version}"
    )
    published = "published" if result.published else "unchanged"
    registry = f"registry kept ({result.registry_source})" if result.registry_kept else f"registry {result.registry_source} applied"
    dagster = f"; Dagster instance on {result.dagster_postgres}" if result.dagster_postgres else ""
    print(f"{result.home}: {upgraded}; {result.models} models; {registry}; rule set v{result.rule_set_version} {published}{dagster}")
    if result.hub:
        print(f"tied to hub {result.hub} as host {result.host_id}: `routing sync` ships logs there and pulls rule sets")
    return 0


def _select(args) -> int:
    from routing_runtime.router import ModelRouter

    with ModelRouter.open(args.home) as router:
        d = router.select_model(args.task or args.text, args.preference, args.agent_execution_id, exclude=args.exclude)
    payload = {
        "decision_id": d.decision_id, "model_id": d.model_id, "task_type": d.task_type.value,
        "preference": d.preference.value, "selection_reason": d.selection_reason,
        "alternatives": list(d.alternatives), "propensity": d.propensity, "rule_set_version": d.rule_set_version,
    }
    if d.classification is not None:
        payload["classification"] = {"confidence": d.classification.confidence, "matched": list(d.classification.matched)}
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    how = "given"
    if d.classification is not None:
        matched = ", ".join(d.classification.matched) or "nothing matched"
        how = f"classified, confidence {d.classification.confidence:.2f}: {matched}"
    print(f"model:        {d.model_id}")
    print(f"task type:    {d.task_type.value} ({how})")
    print(f"reason:       {d.selection_reason}")
    print(f"alternatives: {', '.join(d.alternatives) or '-'}")
    print(f"decision id:  {d.decision_id}")
    return 0


def _record(args) -> int:
    from routing_runtime.router import ModelRouter

    with ModelRouter.open(args.home) as router:
        row_id = router.record_performance(
            args.decision_id, args.outcome, args.quality_score, args.latency_ms, args.tokens_used, args.cost_usd,
        )
    print(row_id)
    return 0


def _rules(args) -> int:
    from routing_runtime.home import resolve_home
    from routing_runtime.store import Store

    home = resolve_home(args.home)
    # Read-only: `routing rules` works on a read-only home and never writes.
    with Store.open_home(home, read_only=True, needed_by="`routing rules`") as db:
        rule_set, note = db.load_usable_rule_set(home)
    task = TaskType(args.task) if args.task else None
    preference = RoutingPreference(args.preference) if args.preference else None
    document = rule_set.to_json(task, preference)
    document["note"] = note
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    as_of = f", evidence up to {rule_set.as_of}" if rule_set.as_of else ""
    served = f"rule set v{rule_set.version}" if rule_set.version is not None else "registry order"
    print(f"{served} ({rule_set.source}{as_of}, published {rule_set.created_at[:19]} UTC)")
    if note:
        print(f"served instead of the newest: {note}")
    print("rank: the order by the preference's objective, eligible models first; a fallback takes the next rank."
          "\np(select): the share of requests sent to the model; lower ranks get some to keep learning.")
    header = f"  {'rank':>4} {'model':<28} {'p(select)':>9} {'quality':>7} {'$/request':>10} {'latency':>9}  notes"
    for rule in document["rules"]:
        cap = f", max_cost_per_1k {rule['max_cost_per_1k']}" if rule["max_cost_per_1k"] is not None else ""
        print(f"\n{rule['task_type']} / {rule['preference']} (min_quality_score {rule['min_quality_score']}{cap})")
        print(header)
        for m in rule["models"]:
            notes = ", ".join(n for n, on in (
                ("specialized", m["is_specialized"]), ("ineligible", m["is_enabled"] and not m["is_eligible"]),
                ("disabled", not m["is_enabled"]),
            ) if on)
            print(
                f"  {m['priority']:>4} {m['model_id']:<28} {m['selection_probability']:>9.3f} {m['expected_quality']:>7.3f}"
                f" {m['expected_cost_usd']:>10.5f} {m['expected_latency_ms']:>7.0f}ms  {notes}"
            )
    return 0


def _status(args) -> int:
    from routing_runtime.admin import home_status

    status = home_status(args.home)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    rules = status["rule_set"]
    served = f"v{rules['version']}" if rules["version"] is not None else "registry order"
    print(f"home:              {status['home']} (schema {status['schema_version']})")
    print(f"rules in force:    {served} ({rules['source']}, evidence up to {rules['as_of'] or '-'}, "
          f"published {rules['created_at'][:19]} UTC)")
    if rules["note"]:
        print(f"                   served instead of the newest: {rules['note']}")
    print(f"learned through:   {status['learned_through'] or 'never learned'}")
    if status["hub"]:
        print(f"hub:               {status['hub']['url']} (this home is host {status['hub']['host_id']})")
    print(f"models:            {status['models']['enabled']} enabled, {status['models']['disabled']} disabled")
    storage = status["dagster_storage"]
    print(f"dagster storage:   {'PostgreSQL ' + storage['url'] if storage['kind'] == 'postgres' else 'SQLite in dagster_home/'}")
    for table, counts in status["logs"].items():
        print(f"{table + ':':<19}{counts['rows']} rows, last at {counts['last'] or '-'}")
    classified = status["classified_decisions"]
    share = f" ({classified['low_confidence'] / classified['classified']:.1%})" if classified["classified"] else ""
    print(f"classified:        {classified['classified']} decisions from prompt text, "
          f"{classified['low_confidence']} with low confidence{share} (below {classified['low_confidence_below']})")
    for table, files in status["inbox"].items():
        print(f"inbox/{table}: {files} file(s) waiting")
    quarantined = ", ".join(f"{t} {n}" for t, n in status["quarantined"].items()) or "none"
    print(f"quarantined rows:  {quarantined}")
    last = status["last_learn"]
    if last is None:
        print("last learn:        never")
    else:
        print(f"last learn:        {last['status']} (as of {last['as_of']}, finished {last['finished_at'][:19]} UTC)")
        for problem in last["problems"]:
            print(f"  problem: {problem}")
    for held in status["held_days"]:
        print(f"held day {held['day']}: {held['reason']}")
    if status["set_aside"]:
        print(f"set aside:         {status['set_aside']} entries in set_aside/ (links or files where folders belong; never read)")
    return 0


def _sync(args) -> int:
    from routing_runtime.sync import sync

    return sync(args.home, every=args.every, ship_every=args.ship_every, as_json=args.json)


def _history(args) -> int:
    from routing_runtime.history import history
    from routing_runtime.home import resolve_home
    from routing_runtime.store import Store

    with Store.open_home(resolve_home(args.home), read_only=True, needed_by="`routing history`") as db:
        entries = history(db)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    print(f"{'version':>7}  {'source':<16} {'as of':<10}  {'published (UTC)':<19}  gate")
    for e in entries:
        gate = "-" if e["gate"] is None else (e["gate"].get("status", "recorded") if isinstance(e["gate"], dict) else str(e["gate"]))
        print(f"{e['rule_set_version']:>7}  {e['source']:<16} {e['as_of'] or '-':<10}  {e['created_at'][:19]:<19}  {gate}")
    return 0


def _diff(args) -> int:
    from routing_runtime.history import diff
    from routing_runtime.home import resolve_home
    from routing_runtime.store import Store

    with Store.open_home(resolve_home(args.home), read_only=True, needed_by="`routing diff`") as db:
        cells = diff(db, args.a, args.b)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, "cells": cells}, indent=2))
        return 0
    print(f"{'task type':<16} {'preference':<15} {'v' + str(args.a):<34} {'v' + str(args.b):<34}")
    for c in cells:
        left = f"{c['a']['model_id']} ({c['a']['share']:.2f})" if c["a"]["model_id"] else "-"
        right = f"{c['b']['model_id']} ({c['b']['share']:.2f})" if c["b"]["model_id"] else "-"
        print(f"{c['task_type']:<16} {c['preference']:<15} {left:<34} {right:<34}{'  changed' if c['changed'] else ''}")
    changed = sum(c["changed"] for c in cells)
    print(f"{changed} of {len(cells)} cells have another top model")
    return 0


def _rollback(args) -> int:
    from routing_runtime.history import rollback
    from routing_runtime.home import resolve_home
    from routing_runtime.store import Store

    home = resolve_home(args.home)
    with Store.open_home(home, needed_by="`routing rollback`") as db:
        version = rollback(home, db, args.to)
    print(f"published rule set v{version}, a copy of v{args.to}: running routers switch to it within a second")
    return 0


def _has_pipeline_extra(command: str) -> bool:
    # Found, not imported: `routing learn` on a day with nothing new never pays for importing Dagster.
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("dagster", "polars", "pyarrow", "scipy")):
        print(PIPELINE_EXTRA_HINT.replace("routing learn", f"routing {command}"), file=sys.stderr)
        return False
    return True


def _learn(args) -> int:
    if not _has_pipeline_extra("learn"):
        return 2
    from routing_pipelines.learn import run_learning

    return run_learning(
        home=args.home, as_of=args.as_of, as_json=args.json,
        accept_quarantine=tuple(args.accept_quarantine), forget_missing=args.forget_missing, workers=args.workers,
        gate=not args.no_gate,
    )


def _demo(args) -> int:
    if not _has_pipeline_extra("demo"):
        return 2
    from routing_pipelines.simulation.demo import run_demo

    return run_demo(args.scenario, days=args.days, requests_per_day=args.requests_per_day, seed=args.seed, home=args.home)


def _ui(args) -> int:
    if not _has_pipeline_extra("ui"):
        return 2
    from routing_pipelines.ui import run_ui

    return run_ui(args.home, args.port, daemon=not args.no_daemon)


_COMMANDS = {
    "init": _init, "select": _select, "record": _record, "rules": _rules, "status": _status,
    "history": _history, "diff": _diff, "rollback": _rollback, "learn": _learn, "sync": _sync, "demo": _demo,
    "ui": _ui,
}

if __name__ == "__main__":
    sys.exit(main())
