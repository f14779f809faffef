"""Learning: forgotten statistics → posteriors → candidate rules → the published rule set.

Each step takes the value of the step before (through the lake IO manager) and returns its own;
checks receive the value they check. The day everything is as of is run config of
``model_posteriors`` and travels with the values from there.
"""

import datetime as dt
import functools
import hashlib
import importlib.util
import json
import pkgutil
from pathlib import Path

import dagster as dg
import polars as pl

from routing_pipelines import plan
from routing_pipelines.assets import names
from routing_pipelines.learning import candidates, evaluation, gate, posteriors, rule_changes
from routing_pipelines.learning.candidates import rules_frame
from routing_pipelines.learning.values import CandidateRules, PolicyEvaluation, Posteriors, SpecialistComparison
from routing_pipelines.resources import LearningDay, PublicationGate, RoutingHome, progress
from routing_runtime.admin import registry_fingerprint
from routing_runtime.faults import crashpoint
from routing_runtime.home import NotInitialisedError
from routing_runtime.hub import Hub, HubError
from routing_runtime.compiled_rules import CODE_VERSION
from routing_runtime.store import Store
from routing_runtime.sync import SyncError, push_rule_sets

POOL = names.LEARNING_POOL


def _seed(as_of: dt.date) -> int:
    return as_of.toordinal()


@dg.asset(
    name=names.MODEL_POSTERIORS, deps=[names.DAILY_MODEL_STATS], kinds={"scipy", "polars", "parquet"}, group_name="learning",
    pool=POOL,
)
def model_posteriors(context: dg.AssetExecutionContext, config: LearningDay, routing_home: RoutingHome) -> dg.Output[Posteriors]:
    """Bayesian posteriors of quality (Beta), outcome mix (Dirichlet), latency and cost (log-normal,
    Normal-Inverse-Gamma) per (model, task type), from all daily statistics up to the learning day
    with exponential forgetting (evidence before a detected change point is discounted), priors
    from the registry shrunk toward the specialist/generalist group."""
    as_of = config.day(routing_home)
    registry = routing_home.registry()
    daily = routing_home.lake.scan_days(names.DAILY_MODEL_STATS, as_of)
    frame, detected = posteriors.posteriors_as_of(daily, as_of, registry)
    value = Posteriors(as_of, frame)
    progress(context, f"posteriors as of {as_of}: {frame.height} (model, task type) cells, {value.outcomes_seen} outcomes")
    preview = frame.select(
        "task_type", "model_id", "n_raw",
        *[pl.format("{} [{}, {}]", *(pl.col(c).round(digits) for c in columns)).alias(label) for label, columns, digits in (
            ("quality", ("quality_mean", "quality_ci_low", "quality_ci_high"), 3),
            ("latency ms", ("latency_mean_ms", "latency_ci_low_ms", "latency_ci_high_ms"), 0),
            ("cost $", ("cost_mean_usd", "cost_ci_low_usd", "cost_ci_high_usd"), 6),
        )],
    ).sort("task_type", "quality", descending=[False, True])
    recent = detected.filter(pl.col("changed_on") > as_of - dt.timedelta(days=14)).sort("changed_on", descending=True)
    return dg.Output(value, metadata={
        "as_of": str(as_of), "half_life_days": registry.learning.half_life_days,
        "change_points": dg.MetadataValue.md(
            _markdown(recent.with_columns(pl.col("before", "after").round(4))) if recent.height else "none in the last 14 days"
        ),
        "dagster/row_count": frame.height, "outcomes_seen": value.outcomes_seen,
        "posteriors": dg.MetadataValue.md(
            f"Posterior mean [{registry.learning.credible_level:.0%} credible interval] per cell.\n\n" + _markdown(preview)
        ),
    })


@dg.asset_check(asset=names.MODEL_POSTERIORS, name=names.POSTERIOR_SANITY_CHECK, blocking=True)
def posterior_sanity(model_posteriors: Posteriors) -> dg.AssetCheckResult:
    """Every posterior is finite, quality means lie in [0, 1] inside their credible interval,
    latency and cost are positive. Blocks publication when violated."""
    problems = posterior_problems(model_posteriors.frame)
    return dg.AssetCheckResult(passed=not problems, metadata={
        "as_of": str(model_posteriors.as_of), "problems": len(problems), "examples": "; ".join(problems[:5]),
    })


def posterior_problems(frame: pl.DataFrame) -> list[str]:
    numeric = [c for c, t in frame.schema.items() if t.is_float()]
    bad = frame.filter(
        pl.any_horizontal(~pl.col(numeric).is_finite())
        | ~pl.col("quality_mean").is_between(0, 1)
        | (pl.col("quality_ci_low") > pl.col("quality_mean")) | (pl.col("quality_mean") > pl.col("quality_ci_high"))
        | (pl.col("latency_mean_ms") <= 0) | (pl.col("cost_mean_usd") <= 0)
    )
    return [f"{r['model_id']}/{r['task_type']}" for r in bad.iter_rows(named=True)]


@dg.asset(name=names.SPECIALIST_VS_GENERALIST, kinds={"scipy", "polars"}, group_name="reports", pool=POOL)
def specialist_vs_generalist(routing_home: RoutingHome, model_posteriors: Posteriors) -> dg.Output[SpecialistComparison]:
    """Per task type: the best specialist against the best generalist, and the posterior probability
    that the specialist is better: the learned specialist-vs-generalist preference."""
    as_of = model_posteriors.as_of
    draws = routing_home.registry().learning.thompson_draws
    frame = posteriors.specialist_comparison(model_posteriors.frame, draws=draws, seed=_seed(as_of))
    return dg.Output(SpecialistComparison(as_of, frame), metadata={
        "comparison": dg.MetadataValue.md(_markdown(frame.with_columns(pl.col(pl.Float64).round(3)))),
    })


@dg.asset(name=names.CANDIDATE_ROUTING_RULES, kinds={"numpy", "parquet"}, group_name="learning", pool=POOL)
def candidate_routing_rules(routing_home: RoutingHome, model_posteriors: Posteriors) -> dg.Output[CandidateRules]:
    """The next rule set, not yet published: per (task type, preference) the models in priority order
    with the posterior probability of being best (batched Thompson sampling) mixed with the
    exploration floor; and the same held to a safe step from the rules in force where a model's
    evidence is mostly not tied to decisions (what the publication gate publishes)."""
    as_of = model_posteriors.as_of
    with routing_home.open_store() as db:
        registry = db.registry()
        try:
            in_force, _note = db.load_usable_rule_set()
        except NotInitialisedError:  # nothing servable (every model disabled): the coverage check says so
            in_force = None
    candidate = candidates.candidate_rules(
        model_posteriors.frame, registry, seed=_seed(as_of), in_force=list(in_force.rows) if in_force else [],
    )
    # The registry the rules were built for travels with them: publishing checks it is still the one in force.
    value = CandidateRules.build(as_of, candidate, registry_fingerprint(registry))
    return dg.Output(value, metadata={
        "as_of": str(as_of), "dagster/row_count": len(value.rows), "exploration_floor": registry.learning.exploration_floor,
        "rules_in_force": in_force.version if in_force else None, "held_models": len(value.holds),
        "holds": dg.MetadataValue.md(_markdown(pl.DataFrame([h.to_json() for h in value.holds])) if value.holds else "none"),
    })


@dg.asset_check(asset=names.CANDIDATE_ROUTING_RULES, name=names.RULES_COVERAGE_CHECK, blocking=True)
def rules_coverage(candidate_routing_rules: CandidateRules) -> dg.AssetCheckResult:
    """Every task type × preference sends all its traffic to enabled models (an eligible one, or the
    explicit highest-quality fallback); disabled models get none. Blocks publication when violated:
    the previous rule set stays in force."""
    problems = [*candidates.coverage_problems(list(candidate_routing_rules.rows)),
                *candidates.coverage_problems(list(candidate_routing_rules.learned_rows))]
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": len(problems), "examples": "; ".join(problems[:5])})


@dg.asset(
    name=names.POLICY_EVALUATION, deps=[names.ROUTING_DECISIONS, names.MODEL_PERFORMANCE],
    kinds={"polars", "scipy", "parquet"}, group_name="learning", pool=POOL,
)
def policy_evaluation(
    config: PublicationGate, routing_home: RoutingHome, candidate_routing_rules: CandidateRules, model_posteriors: Posteriors,
) -> dg.Output[PolicyEvaluation]:
    """Off-policy evaluation of the rules to publish on the last days of logged decisions (the
    registry's ``evaluation_window_days``, default 7; per task type only the days since its models
    last changed): per (task type, preference) and per preference over all task types, on that
    preference's own objective, the logged policy's value next to SNIPS and doubly robust
    estimates of the candidate with intervals, its relative improvement and the effective sample
    size; and the publication gate's verdict (checked by ``publication_gate``)."""
    as_of = candidate_routing_rules.as_of
    settings = routing_home.registry().learning
    since = as_of - dt.timedelta(days=settings.evaluation_window_days - 1)
    rows = candidate_routing_rules.rows_to_publish(gated=config.enforce)
    decisions = routing_home.lake.scan_days(names.ROUTING_DECISIONS, as_of)
    performance = routing_home.lake.scan_days(names.MODEL_PERFORMANCE, as_of)
    if decisions is None or performance is None:
        frame = pl.DataFrame(schema=evaluation.EVALUATION_SCHEMA)
    else:
        recent = lambda lf: lf.filter(pl.col("day") >= since)  # noqa: E731
        feedback = evaluation.since_last_change(
            evaluation.logged_feedback(recent(decisions), recent(performance)).collect(), model_posteriors.frame,
        )
        frame = evaluation.off_policy_estimates(feedback, rules_frame(list(rows)), model_posteriors.frame, settings.gate_level)
    verdict = gate.verdict(frame, list(candidate_routing_rules.holds), settings, enforced=config.enforce)
    verdict["evaluation_days"] = [str(since), str(as_of)]
    value = PolicyEvaluation(as_of, frame, verdict)
    shown = frame.select(
        "task_type", "preference", "objective", "n", pl.col("effective_sample_size").round(1),
        *[pl.format("{} [{}, {}]", *(_rounded(pl.col(f"{name}_{part}")) for part in ("value", "low", "high"))).alias(name)
          for name in ("logged", "snips", "dr", "improvement", "dr_improvement")],
    )
    return dg.Output(value, metadata={
        "window": f"{since} .. {as_of}", "dagster/row_count": frame.height, "gate": verdict["status"],
        "gate_figures": dg.MetadataValue.json(verdict),
        "estimates": dg.MetadataValue.md(
            f"Value [{settings.gate_level:.0%} interval] per cell on its preference's objective; improvement is the"
            " candidate's relative gain over the logged policy by SNIPS (what the gate judges by), dr_improvement"
            " the same by doubly robust.\n\n" + _markdown(shown)
        ),
    })


def _rounded(expression: pl.Expr) -> pl.Expr:
    return expression.round_sig_figs(4)


@dg.asset_check(asset=names.POLICY_EVALUATION, name=names.PUBLICATION_GATE_CHECK, blocking=True)
def publication_gate(policy_evaluation: PolicyEvaluation) -> dg.AssetCheckResult:
    """Blocks publication when the rules to publish are worse than the logged policy with
    confidence in some cell or preference (the rules in force stay); names the cells held to a
    safe step. Passes, recording what it found, under `routing learn --no-gate`."""
    verdict = policy_evaluation.gate
    lines = gate.describe(verdict)
    return dg.AssetCheckResult(
        passed=not policy_evaluation.blocked,
        description=f"gate {verdict['status']}" + (": " + "; ".join(lines[:5]) if lines else ""),
        metadata={"status": verdict["status"], "examples": "; ".join(lines[:5]), "gate": dg.MetadataValue.json(verdict)},
    )


@dg.asset(name=names.MODEL_ROUTING_RULES, kinds={"sqlite", "parquet"}, group_name="learning", pool=POOL)
def model_routing_rules(
    context: dg.AssetExecutionContext, routing_home: RoutingHome, candidate_routing_rules: CandidateRules,
    policy_evaluation: PolicyEvaluation, model_posteriors: Posteriors,
) -> dg.MaterializeResult:
    """The published, versioned model_routing_rules table in routing.db, written in one transaction
    (routers switch to it within a second), with a Parquet snapshot per version, the gate's
    verdict and the off-policy estimates it was published with, and what changed and why."""
    candidate = candidate_routing_rules
    verdict = policy_evaluation.gate
    as_of = candidate.as_of
    rows = list(candidate.rows_to_publish(gated=verdict["enforced"]))
    lake = routing_home.lake
    db = routing_home.open_store()
    try:
        previous, _note = db.load_usable_rule_set()
        registry = db.registry()

        def registry_unchanged(locked):
            # Checked inside the publishing transaction: a `routing init` cannot slip in between.
            if registry_fingerprint(locked.registry()) != candidate.registry_fingerprint:
                raise dg.Failure(description=(
                    "the registry changed while learning (`routing init`): these rules were built for the old one"
                    " and are not published; run `routing learn` again"
                ))
        learned = plan.unlearned_days(routing_home.path, db, as_of)
        inputs = {
            "as_of": str(as_of), "dagster_run_id": context.run.run_id, "code_version": code_version(),
            "outcomes_seen": model_posteriors.outcomes_seen, "registry_source": registry.source,
            # `routing init` republishes only when the registry differs from what these rules used.
            "registry_fingerprint": candidate.registry_fingerprint,
            "days": [str(learned[0]), str(learned[-1])] if learned else [],
            "evaluation_days": verdict.get("evaluation_days", []),
            "gate": verdict,
            "off_policy": policy_evaluation.overall(),
        }
        if as_of >= dt.datetime.now(dt.timezone.utc).date():
            inputs["partial_day"] = True  # the UTC day was not over: its evidence is incomplete
        learned_days = plan.learned_days(routing_home.path, [str(d) for d in learned])
        crashpoint("publish:before")
        # The rules, the learned frontier (never moved backwards by a backfill) and the days
        # learned, in one transaction.
        version = db.publish_rule_set(
            rows, source="learned", as_of=str(as_of), inputs=inputs, precondition=registry_unchanged,
            learned_through=str(as_of), learned_days=learned_days,
        )
        # From here on the rules are in force: a failure below is reported as "published, then
        # failed", never as "no rules published". The frontier and the ledger were committed with
        # the rules, so both points now mark the same moment (kill tests stop at each).
        crashpoint("after_publish")
        crashpoint("publish:after_ledger")
    finally:
        db.close()
    lake.write_rule_set(names.MODEL_ROUTING_RULES, version, rules_frame(rows))
    crashpoint("publish:after_snapshot")
    hub = publish_to_hub(routing_home.path, version)
    before = lake.read_value_as_of(names.MODEL_POSTERIORS, dt.date.fromisoformat(previous.as_of)) if previous and previous.as_of else None
    change = rule_changes.change_markdown(previous.rows if previous else None, rows, before, model_posteriors.frame)
    previous_version = previous.version if previous is not None else None
    progress(context, f"published rule set v{version} (as of {as_of}; previous v{previous_version}; gate {verdict['status']})")
    gate_lines = gate.describe(verdict)
    return dg.MaterializeResult(data_version=dg.DataVersion(f"v{version} as of {as_of}"), metadata={
        "rule_set_version": version, "previous_version": previous_version, "as_of": str(as_of),
        "dagster/row_count": len(rows), "inputs": dg.MetadataValue.json(json.loads(json.dumps(inputs))),
        "gate": verdict["status"],
        "gate_detail": dg.MetadataValue.md("\n".join(f"- {line}" for line in gate_lines) if gate_lines else "nothing blocked or held"),
        "changes": dg.MetadataValue.md(change), "hub": hub,
    })


def learning_sources() -> dict[str, Path]:
    """The source file of every module of ``routing_pipelines``, by module name: in a checkout
    (``pipelines/`` and ``assets/``, editable) and in a wheel alike, and nothing else of a checkout
    (tests, scripts, a virtual environment)."""
    import routing_pipelines
    import routing_pipelines.assets

    modules = {"routing_pipelines", "routing_pipelines.assets"}
    for package in (routing_pipelines, routing_pipelines.assets):  # assets/ sits apart in a checkout
        modules |= {m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")}
    specs = {name: importlib.util.find_spec(name) for name in modules}
    return {name: Path(spec.origin) for name, spec in sorted(specs.items())
            if spec is not None and spec.origin and spec.origin.endswith(".py")}


@functools.cache
def code_version() -> str:
    """The runtime's version and a digest of the learning code's sources (``learning_sources``):
    two rule sets with the same value were learned by the same code."""
    digest = hashlib.sha256()
    for name, source in learning_sources().items():
        digest.update(name.encode() + b"\0" + source.read_bytes())
    return f"{CODE_VERSION}, routing_pipelines {digest.hexdigest()[:12]}"


def publish_to_hub(home: Path, version: int) -> str | None:
    """Put the rule sets this home published and the hub lacks on the hub the home is tied to
    (its URL, or None for a home of its own). Hosts pull them from there with `routing sync`.
    The rules are in force here whatever happens; a hub that fails is retried by the next learn."""
    with Store.open_home(home, needed_by="the pipeline") as db:
        tie = db.hub_tie()
        if tie is None:
            return None
        try:
            push_rule_sets(home, Hub.parse(tie[0]), db)
        except (HubError, SyncError) as exc:
            raise dg.Failure(description=(
                f"published rule set v{version} in {home}, but not on the hub: {exc}. Hosts keep the rules they have;"
                " the next `routing learn` puts it on the hub"
            )) from None
    return tie[0]


def _markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width
    body = "\n".join("| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows())
    return header + "\n" + body
