"""Ways into the router from the LLM clients agents already use.

* :mod:`routing_runtime.integrations.litellm` (extra ``[litellm]``): ``attach(llm_router, router)``
  routes a LiteLLM ``Router``'s calls and records their outcomes.
* :mod:`routing_runtime.integrations.sdk` (standard library): ``track_call`` times a call made with
  any OpenAI-style SDK and records its outcome from the response's ``usage``.

Importing ``routing_runtime`` imports neither; the LiteLLM module imports LiteLLM.
"""
