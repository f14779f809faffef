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
PUBLICATION_GATE_CHECK = "publication_gate"

NIGHTLY_JOB = "nightly_learning"
NIGHTLY_SCHEDULE = "nightly_learning_0200_utc"
#: Every step of the learning graph is in this pool; the instance allows one run in it at a time.
LEARNING_POOL = "routing_home"
#: The code location `routing ui` and workspace.yaml serve (module and attribute), under a name
#: of ours: runs of `routing learn` are labelled with it so the UI lists them with the job.
CODE_MODULE = "routing_pipelines.definitions"
CODE_LOCATION = "routing"
#: Dagster's label of the one repository of that location (``repository@location``).
REPOSITORY_LABEL = f"__repository__@{CODE_LOCATION}"
#: The IO manager of the small values passed between the steps of one run (the day chunks of an
#: ingest and their counts): pickles under the instance's storage, so steps in other processes read them.
STEP_IO_MANAGER = "step_io_manager"
