"""Learning: forgotten statistics → posteriors → candidate rules → the published rule set."""


import datetime as dt
import json

import dagster as dg
import polars as pl

from routing_pipelines.assets import names
from routing_pipelines.resources import LEARNED_THROUGH, RoutingHome, as_of_day, progress, run_partition_keys
from routing_runtime.faults import crashpoint
from routing_pipelines.learning import candidates, evaluation, posteriors
from routing_pipelines import plan
from routing_pipelines.lake import Lake
from routing_runtime.admin import registry_fingerprint, registry_from_db
from routing_runtime.rules import RuleRow
from routing_runtime.ruleset import load_usable_rule_set, publish_rule_set
from routing_runtime.types import RoutingPreference, TaskType


def _snapshot_name(as_of) -> str:
    return f"as_of={as_of}.parquet"


def _read_snapshot(routing_home: RoutingHome, asset: str, as_of, columns: list[str] | None = None) -> pl.DataFrame:
    return Lake(routing_home.path).read_file(asset, _snapshot_name(as_of), columns=columns)


def _write_snapshot(routing_home: RoutingHome, asset: str, name: str, frame: pl.DataFrame) -> str:
    return str(Lake(routing_home.path).write_file(asset, name, frame=frame))


def _seed(as_of) -> int:
    return as_of.toordinal()


@dg.asset(name=names.MODEL_POSTERIORS, deps=[names.DAILY_MODEL_STATS], kinds={"scipy", "polars", "parquet"}, group_name="learning")
def model_posteriors(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Bayesian posteriors of quality (Beta), outcome mix (Dirichlet), latency and cost (log-normal,
    Normal-Inverse-Gamma) per (model, task type), from all daily statistics up to the learning day
    with exponential forgetting (evidence before a detected change point is discounted), priors
    from the registry shrunk toward the specialist/generalist group."""
    as_of = as_of_day(context)
    registry = routing_home.registry()
    daily = Lake(routing_home.path).scan_days(names.DAILY_MODEL_STATS, as_of)
    frame, detected = posteriors.posteriors_as_of(daily, as_of, registry)
    path = _write_snapshot(routing_home, names.MODEL_POSTERIORS, _snapshot_name(as_of), frame)
    crashpoint("posteriors:after_write")
    progress(context, f"posteriors as of {as_of}: {frame.height} (model, task type) cells, {int(frame['n_raw'].sum())} outcomes")
    preview = frame.select(
        "task_type", "model_id", "n_raw", pl.col("quality_mean").round(3), pl.col("quality_ci_low").round(3),
        pl.col("quality_ci_high").round(3), pl.col("latency_mean_ms").round(0), pl.col("cost_mean_usd").round(6),
    ).sort("task_type", "quality_mean", descending=[False, True])
    recent = detected.filter(pl.col("changed_on") > as_of - dt.timedelta(days=14)).sort("changed_on", descending=True)
    return dg.MaterializeResult(metadata={
        "as_of": str(as_of), "half_life_days": registry.learning.half_life_days,
        "change_points": dg.MetadataValue.md(_markdown(recent.with_columns(pl.col("before", "after").round(4))) if recent.height else "none in the last 14 days"),
        "dagster/row_count": frame.height, "outcomes_seen": int(frame["n_raw"].sum()),
        "posteriors": dg.MetadataValue.md(_markdown(preview)),
        "path": dg.MetadataValue.path(path),
    })


@dg.asset_check(asset=names.MODEL_POSTERIORS, name=names.POSTERIOR_SANITY_CHECK, blocking=True)
def posterior_sanity(context: dg.AssetCheckExecutionContext, routing_home: RoutingHome) -> dg.AssetCheckResult:
    """Every posterior is finite, quality means lie in [0, 1] inside their credible interval,
    latency and cost are positive. Blocks publication when violated."""
    frame = _read_snapshot(routing_home, names.MODEL_POSTERIORS, as_of_day(context))
    problems = posterior_problems(frame)
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": len(problems), "examples": "; ".join(problems[:5])})


def posterior_problems(frame: pl.DataFrame) -> list[str]:
    numeric = [c for c, t in frame.schema.items() if t.is_float()]
    bad = frame.filter(
        pl.any_horizontal(~pl.col(numeric).is_finite())
        | ~pl.col("quality_mean").is_between(0, 1)
        | (pl.col("quality_ci_low") > pl.col("quality_mean")) | (pl.col("quality_mean") > pl.col("quality_ci_high"))
        | (pl.col("latency_mean_ms") <= 0) | (pl.col("cost_mean_usd") <= 0)
    )
    return [f"{r['model_id']}/{r['task_type']}" for r in bad.iter_rows(named=True)]


@dg.asset(name=names.SPECIALIST_VS_GENERALIST, deps=[names.MODEL_POSTERIORS], kinds={"scipy", "polars"}, group_name="reports")
def specialist_vs_generalist(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Per task type: the best specialist against the best generalist, and the posterior probability
    that the specialist is better: the learned specialist-vs-generalist preference."""
    as_of = as_of_day(context)
    frame = posteriors.specialist_comparison(
        _read_snapshot(routing_home, names.MODEL_POSTERIORS, as_of), draws=routing_home.registry().learning.thompson_draws, seed=_seed(as_of))
    _write_snapshot(routing_home, names.SPECIALIST_VS_GENERALIST, _snapshot_name(as_of), frame)
    return dg.MaterializeResult(metadata={"comparison": dg.MetadataValue.md(_markdown(frame.with_columns(pl.col(pl.Float64).round(3))))})


@dg.asset(name=names.CANDIDATE_ROUTING_RULES, deps=[names.MODEL_POSTERIORS], kinds={"numpy", "parquet"}, group_name="learning")
def candidate_routing_rules(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """The next rule set, not yet published: per (task type, preference) the models in priority order
    with the posterior probability of being best (batched Thompson sampling) mixed with the
    exploration floor."""
    as_of = as_of_day(context)
    registry = routing_home.registry()
    frame = _read_snapshot(routing_home, names.MODEL_POSTERIORS, as_of)
    rows = candidates.candidate_rules(frame, registry, seed=_seed(as_of))
    # The registry the rules were built for travels with them: publishing checks it is still the one in force.
    snapshot = candidates.rules_frame(rows).with_columns(pl.lit(registry_fingerprint(registry)).alias(_BUILT_FOR))
    _write_snapshot(routing_home, names.CANDIDATE_ROUTING_RULES, _snapshot_name(as_of), snapshot)
    crashpoint("candidate:after_write")
    return dg.MaterializeResult(metadata={"dagster/row_count": len(rows), "exploration_floor": registry.learning.exploration_floor})


_BUILT_FOR = "registry_fingerprint"


def _candidate_registry(routing_home: RoutingHome, as_of) -> str:
    return _read_snapshot(routing_home, names.CANDIDATE_ROUTING_RULES, as_of, columns=[_BUILT_FOR])[_BUILT_FOR][0]


def _load_candidate(routing_home: RoutingHome, as_of) -> list[RuleRow]:
    frame = _read_snapshot(routing_home, names.CANDIDATE_ROUTING_RULES, as_of).drop(_BUILT_FOR, strict=False)
    return [
        RuleRow(**{**r, "task_type": TaskType(r["task_type"]), "preference": RoutingPreference(r["preference"])})
        for r in frame.iter_rows(named=True)
    ]


@dg.asset_check(asset=names.CANDIDATE_ROUTING_RULES, name=names.RULES_COVERAGE_CHECK, blocking=True)
def rules_coverage(context: dg.AssetCheckExecutionContext, routing_home: RoutingHome) -> dg.AssetCheckResult:
    """Every task type × preference sends all its traffic to enabled models (an eligible one, or the
    explicit highest-quality fallback); disabled models get none. Blocks publication when violated:
    the previous rule set stays in force."""
    problems = candidates.coverage_problems(_load_candidate(routing_home, as_of_day(context)))
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": len(problems), "examples": "; ".join(problems[:5])})


@dg.asset(
    name=names.POLICY_EVALUATION, deps=[names.ROUTING_DECISIONS, names.MODEL_PERFORMANCE, names.CANDIDATE_ROUTING_RULES],
    kinds={"polars", "parquet"}, group_name="reports",
)
def policy_evaluation(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Off-policy evaluation of the candidate rules on the last 7 days of logged decisions: the
    logged policy's mean quality next to IPS and self-normalised IPS estimates of what the candidate
    rules would have achieved, using the propensity every decision recorded."""
    as_of = as_of_day(context)
    since = as_of - dt.timedelta(days=routing_home.registry().learning.evaluation_window_days - 1)
    lake = Lake(routing_home.path)
    decisions = lake.scan_days(names.ROUTING_DECISIONS, as_of)
    performance = lake.scan_days(names.MODEL_PERFORMANCE, as_of)
    candidate = _read_snapshot(routing_home, names.CANDIDATE_ROUTING_RULES, as_of)
    if decisions is None or performance is None:
        frame = pl.DataFrame(schema=evaluation.EVALUATION_SCHEMA)
    else:
        recent = lambda lf: lf.filter(pl.col("day") >= since)  # noqa: E731
        feedback = evaluation.logged_feedback(recent(decisions), recent(performance)).collect()
        frame = evaluation.off_policy_estimates(feedback, candidate)
    _write_snapshot(routing_home, names.POLICY_EVALUATION, _snapshot_name(as_of), frame)
    overall = frame.filter(pl.col("task_type") == "all")
    metadata = {"window": f"{since} .. {as_of}", "dagster/row_count": frame.height,
                "estimates": dg.MetadataValue.md(_markdown(frame.with_columns(pl.col(pl.Float64).round(4))))}
    if overall.height and overall["n"][0]:
        row = overall.row(0, named=True)
        metadata |= {"logged_quality": round(row["logged_quality"], 4), "snips_quality": round(row["snips_quality"], 4),
                     "effective_sample_size": round(row["effective_sample_size"], 1)}
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name=names.MODEL_ROUTING_RULES, deps=[names.CANDIDATE_ROUTING_RULES, names.POLICY_EVALUATION],
    kinds={"sqlite", "parquet"}, group_name="learning",
)
def model_routing_rules(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """The published, versioned model_routing_rules table in routing.db, written in one transaction
    (routers switch to it within a second), with a Parquet snapshot per version and what changed."""
    as_of = as_of_day(context)
    rows = _load_candidate(routing_home, as_of)
    conn = routing_home.connect()
    try:
        previous = _previous_rule_set(conn)
        registry = routing_home.registry()
        built_for = _candidate_registry(routing_home, as_of)

        def registry_unchanged(locked):
            # Checked inside the publishing transaction: a `routing init` cannot slip in between.
            if registry_fingerprint(registry_from_db(locked)) != built_for:
                raise dg.Failure(description=(
                    "the registry changed while learning (`routing init`): these rules were built for the old one"
                    " and are not published; run `routing learn` again"
                ))
        today = dt.datetime.now(dt.timezone.utc).date()
        inputs = {
            "as_of": str(as_of), "dagster_run_id": context.run.run_id,
            "outcomes_seen": _outcomes_seen(routing_home, as_of), "registry_source": registry.source,
            # `routing init` republishes only when the registry differs from what these rules used.
            "registry_fingerprint": registry_fingerprint(registry),
            "days": [run_partition_keys(context)[0], run_partition_keys(context)[-1]] if run_partition_keys(context) else [],
        }
        if as_of >= today:
            inputs["partial_day"] = True  # the UTC day was not over: its evidence is incomplete
        crashpoint("publish:before")
        version = publish_rule_set(conn, rows, source="learned", as_of=str(as_of), inputs=inputs, precondition=registry_unchanged)
        # From here on the rules are in force: what follows only records it, and a failure below
        # is reported as "published, then failed", never as "no rules published".
        # Re-learning an earlier day (a backfill) never moves the learned frontier backwards.
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            (LEARNED_THROUGH, str(as_of)),
        )
        crashpoint("after_publish")
        plan.record_learned(routing_home.path, conn, run_partition_keys(context))
        crashpoint("publish:after_ledger")
    finally:
        conn.close()
    _write_snapshot(routing_home, names.MODEL_ROUTING_RULES, f"version={version}.parquet", candidates.rules_frame(rows))
    crashpoint("publish:after_snapshot")
    change = candidates.rules_change_markdown(previous, rows)
    previous_version = previous.version if previous is not None else None
    progress(context, f"published rule set v{version} (as of {as_of}; previous v{previous_version})")
    return dg.MaterializeResult(metadata={
        "rule_set_version": version, "previous_version": previous_version, "as_of": str(as_of),
        "dagster/row_count": len(rows), "inputs": dg.MetadataValue.json(json.loads(json.dumps(inputs))),
        "changes": dg.MetadataValue.md(change),
    })


def _previous_rule_set(conn):
    """The rule set in force before this one, for the change table; a set that cannot be read
    never blocks publishing a good one over it."""
    rule_set, _note = load_usable_rule_set(conn)
    return rule_set


def _outcomes_seen(routing_home: RoutingHome, as_of) -> int:
    return int(_read_snapshot(routing_home, names.MODEL_POSTERIORS, as_of, columns=["n_raw"])["n_raw"].sum())


def _markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width
    body = "\n".join("| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows())
    return header + "\n" + body
