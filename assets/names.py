"""Asset, check, job, pool and code-location names: one place, imported everywhere."""

INBOX = "inbox"
ROUTING_DECISIONS = "routing_decisions"
MODEL_PERFORMANCE = "model_performance"
DAILY_MODEL_STATS = "daily_model_stats"
MODEL_POSTERIORS = "model_posteriors"
SPECIALIST_VS_GENERALIST = "specialist_vs_generalist"
CANDIDATE_ROUTING_RULES = "candidate_routing_rules"
POLICY_EVALUATION = "policy_evaluation"
MODEL_ROUTING_RULES = "model_routing_rules"

LOG_VALIDITY_CHECK = "log_validity"
POSTERIOR_SANITY_CHECK = "posterior_sanity"
RULES_COVERAGE_CHECK = "rules_coverage"

NIGHTLY_JOB = "nightly_learning"
NIGHTLY_SCHEDULE = "nightly_learning_0200_utc"
#: Every step of the learning graph is in this pool; the instance allows one run in it at a time.
LEARNING_POOL = "routing_home"
#: The module `routing ui` serves as its code location; Dagster names the location after it, and
#: runs of `routing learn` are labelled with that name so the UI lists them with the job.
CODE_LOCATION = "routing_pipelines.definitions"
