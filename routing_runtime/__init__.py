"""routing_runtime: pick the best LLM for each request, in-process, in microseconds.

The runtime is standard library only. It reads the rule set that ``routing init`` or the
nightly learning run (``routing learn``, extra ``[pipeline]``) published in ``ROUTING_HOME``::

    from routing_runtime import ModelRouter

    router = ModelRouter.open()                          # $ROUTING_HOME, else ./.routing
    d = router.select_model("Why does this raise KeyError?", preference="balanced")
    ...  # call d.model_id; if the provider fails: d = router.fallback(d, error="503 from provider")
    router.record_performance(d.decision_id, outcome="success", quality_score=0.9,
                              latency_ms=840, tokens_used=1210, cost_usd=0.0009)
"""

from routing_runtime.classifier import Classification, classify_task
from routing_runtime.home import NotInitialisedError
from routing_runtime.router import ModelRouter, RoutingDecision
from routing_runtime.types import Outcome, RoutingPreference, TaskType

# The registry (TOML parsing, dataclasses) is only needed by `routing init` and the learning
# run, so it loads on first use rather than with every agent's import.
_LAZY = {"ModelConfig", "ModelRegistry", "RegistryError", "TaskPolicy"}


def __getattr__(name: str):
    if name in _LAZY:
        from routing_runtime import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'routing_runtime' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "Classification",
    "ModelConfig",
    "ModelRegistry",
    "ModelRouter",
    "NotInitialisedError",
    "Outcome",
    "RegistryError",
    "RoutingDecision",
    "RoutingPreference",
    "TaskPolicy",
    "TaskType",
    "classify_task",
]
