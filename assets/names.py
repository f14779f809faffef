"""Asset, check, job and tag names: one place, imported everywhere."""

ROUTING_DECISIONS = "routing_decisions"
MODEL_PERFORMANCE = "model_performance"
DAILY_MODEL_STATS = "daily_model_stats"
MODEL_POSTERIORS = "model_posteriors"
SPECIALIST_VS_GENERALIST = "specialist_vs_generalist"
CANDIDATE_ROUTING_RULES = "candidate_routing_rules"
MODEL_ROUTING_RULES = "model_routing_rules"

LOG_VALIDITY_CHECK = "log_validity"
POSTERIOR_SANITY_CHECK = "posterior_sanity"
RULES_COVERAGE_CHECK = "rules_coverage"

NIGHTLY_JOB = "nightly_learning"
NIGHTLY_SCHEDULE = "nightly_learning_0200_utc"
AS_OF_TAG = "routing/as_of"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
