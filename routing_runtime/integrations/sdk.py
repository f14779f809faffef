"""Time a model call made with any SDK and record its outcome: the plain-SDK path.

For agents that call their provider's SDK directly (OpenAI, Anthropic, an OpenAI-compatible
server) rather than through LiteLLM. Standard library only::

    from openai import OpenAI
    from routing_runtime import ModelRouter
    from routing_runtime.integrations.sdk import track_call

    router, client = ModelRouter.open(), OpenAI()
    decision = router.select_model("Fix this KeyError in parse_config()", "balanced")
    with track_call(router, decision) as call:
        response = client.chat.completions.create(model=decision.model_id, messages=[...])
        call.done(response)               # or call.done(response, quality=0.9) once scored

What is recorded when the ``with`` block ends:

* ``call.done(response)`` was called: ``success`` (or the outcome ``quality`` implies, see
  :func:`~routing_runtime.types.outcome_for_quality`), the latency from entering the block to
  ``done``, the response's ``usage`` tokens, and their cost at the registry's list prices.
* the block raised before ``done``: the call never answered, so it is a provider error
  (:meth:`~routing_runtime.ModelRouter.record_provider_error`: no ``model_performance`` row, so an
  outage never reads as low quality) and the exception propagates. To record a *bad answer*,
  call ``done(response, quality=...)``: an exception raised after ``done`` (parsing the answer)
  propagates, and the ``done`` outcome is recorded.
* neither: ``success`` with the latency to the end of the block and no tokens or cost.

``usage`` is read from an object or a dict, in the OpenAI Chat Completions form
(``prompt_tokens``, ``completion_tokens``, ``total_tokens``) or the Responses/Anthropic form
(``input_tokens``, ``output_tokens``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from routing_runtime.router import ModelRouter, RoutingDecision
from routing_runtime.types import Outcome, outcome_for_quality, parse_enum

__all__ = ["TrackedCall", "Usage", "list_price_usd", "track_call", "usage_of"]


class Usage(NamedTuple):
    """The tokens of one call, as its response reports them."""

    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def usage_of(response: Any) -> Usage | None:
    """The tokens in ``response.usage`` (or ``response["usage"]``), or None when it has none.

    >>> usage_of({"usage": {"prompt_tokens": 1200, "completion_tokens": 400, "total_tokens": 1600}})
    Usage(input_tokens=1200, output_tokens=400)
    >>> usage_of({"usage": {"input_tokens": 30, "output_tokens": 5}}).total_tokens
    35
    >>> usage_of({"usage": {"input_tokens": 30, "output_tokens": 5, "cache_read_input_tokens": 2000}})
    Usage(input_tokens=2030, output_tokens=5)
    >>> usage_of({"choices": []}) is None
    True
    """
    usage = _field(response, "usage")
    if usage is None:
        return None
    # Anthropic counts prompt-cache tokens apart from input_tokens, and bills them.
    for names, extra_input in ((("prompt_tokens", "completion_tokens"), ()), (("input_tokens", "output_tokens"), _CACHE_TOKENS)):
        tokens = [_field(usage, name) for name in names]
        if all(_count(t) for t in tokens):
            tokens[0] += sum(t for t in (_field(usage, n) for n in extra_input) if _count(t))
            return Usage(*tokens)
    return None


#: Anthropic's prompt-cache token counts, beside ``input_tokens`` (priced here as input tokens).
_CACHE_TOKENS = ("cache_creation_input_tokens", "cache_read_input_tokens")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def list_price_usd(router: ModelRouter, model_id: str, usage: Usage) -> float | None:
    """The cost of ``usage`` on ``model_id`` at the registry's list prices (None: not registered).

    >>> from routing_runtime import ModelRouter
    >>> from routing_runtime.admin import initialise
    >>> import tempfile
    >>> home = tempfile.mkdtemp()
    >>> _ = initialise(home)
    >>> with ModelRouter.open(home) as router:
    ...     round(list_price_usd(router, "gpt-4o", Usage(1200, 400)), 6)
    0.007
    >>> import shutil
    >>> shutil.rmtree(home)
    """
    model = next((m for m in router.registry.models if m.id == model_id), None)
    return None if model is None else model.call_cost_usd(usage.input_tokens, usage.output_tokens)


class TrackedCall:
    """One call being timed by :func:`track_call`: tell it the response with :meth:`done`."""

    def __init__(self, decision: RoutingDecision) -> None:
        self.decision = decision
        self._started = time.perf_counter()
        self._finished: float | None = None
        self._response: Any = None
        self._quality: float | None = None
        self._outcome: Outcome | None = None
        self.misused = False

    def done(self, response: Any = None, *, quality: float | None = None, outcome: Outcome | str | None = None) -> None:
        """The call answered with ``response`` (its ``usage`` gives tokens and cost). ``quality``
        in [0, 1] is the answer's score, and sets the outcome unless ``outcome`` is given.
        Raises ValueError for a bad ``outcome`` or a second ``done``."""
        try:
            if self._finished is not None:
                raise ValueError(f"decision {self.decision.decision_id}: done() was already called for this call")
            self._outcome = parse_enum(Outcome, outcome, "outcome") if outcome is not None else None
        except ValueError:
            self.misused = True  # the call itself did not fail: no provider error for it
            raise
        self._finished = time.perf_counter()
        self._response, self._quality = response, quality

    def _record(self, router: ModelRouter, at: datetime | None) -> str:
        finished = self._finished if self._finished is not None else time.perf_counter()
        usage = usage_of(self._response)
        return router.record_performance(
            self.decision.decision_id, self._outcome or outcome_for_quality(self._quality),
            quality_score=self._quality, latency_ms=(finished - self._started) * 1000.0,
            tokens_used=usage.total_tokens if usage else None,
            cost_usd=list_price_usd(router, self.decision.model_id, usage) if usage else None, at=at,
        )


@contextmanager
def track_call(router: ModelRouter, decision: RoutingDecision, *, at: datetime | None = None) -> Iterator[TrackedCall]:
    """Time the model call made inside the ``with`` block and record its outcome on ``decision``.

    ``at`` stamps the outcome (default: now). See the module's documentation for what is
    recorded; a problem recording (a bad ``quality``) raises ValueError after the block.

    >>> from routing_runtime import ModelRouter
    >>> from routing_runtime.admin import initialise
    >>> import tempfile
    >>> home = tempfile.mkdtemp()
    >>> _ = initialise(home)
    >>> router = ModelRouter.open(home)
    >>> decision = router.select_model("Write a pytest test for slugify()")
    >>> with track_call(router, decision) as call:
    ...     response = {"usage": {"prompt_tokens": 900, "completion_tokens": 300, "total_tokens": 1200}}
    ...     call.done(response, quality=0.9)
    >>> router.close()
    >>> import shutil
    >>> shutil.rmtree(home)
    """
    if not isinstance(decision, RoutingDecision):
        raise TypeError(f"decision={decision!r} must be the RoutingDecision select_model (or fallback) returned")
    call = TrackedCall(decision)
    try:
        yield call
    except BaseException as exc:
        if call._finished is not None:
            # The model answered (done() was called); the error is the caller's own, after it
            # (parsing a bad answer, a second done()): the answer's outcome is recorded, never
            # an outage, and a problem recording it never replaces the caller's error.
            try:
                call._record(router, at)
            except (LookupError, ValueError) as problem:
                exc.add_note(f"routing: outcome not recorded on {decision.decision_id}: {problem}")
        elif isinstance(exc, Exception) and not call.misused:
            try:
                router.record_provider_error(decision.decision_id, f"{type(exc).__name__}: {exc}")
            except (LookupError, ValueError) as problem:  # the caller's error stays the one raised
                exc.add_note(f"routing: provider error not recorded on {decision.decision_id}: {problem}")
        raise  # KeyboardInterrupt and the like: nothing is known about the call, nothing recorded
    call._record(router, at)


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)
