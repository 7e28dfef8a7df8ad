"""The provider simulator: a fake upstream speaking the real OpenAI, Azure OpenAI, Anthropic and Gemini wire formats.

It is the gateway's test rig and the backend of ``modelgate serve --demo``. Replies are deterministic functions of
the request; usage follows one documented estimator (:mod:`modelgate.simulator.tokens`); faults and pacing are
injected per request (``x-sim-fault`` header, see :mod:`modelgate.simulator.faults`), per model (config) or at
runtime (``POST /sim/faults``, see :mod:`modelgate.simulator.control`).

Besides the faults of a flaky upstream (``status=429;retry_after=2``, ``timeout``, ``cut=K``, ``malformed``,
``error_after=K``, ``safety``) it plays a hostile one, for the gateway's defences: ``status=429;retry_after=nan``
(any text goes as written: ``1e400``, ``not-a-date``; ``date+30`` sends an HTTP date), ``dribble[=MS]`` (the whole
answer a byte every MS ms, headers included), ``dribble_body=MS`` (the body only), ``endless[=MS]`` (a stream, or a
body, that never ends), ``echo_key[=K]`` (an error quoting the key and auth header it was sent; with K, mid-stream)
and ``model=VALUE`` (the answer names VALUE, JSON where it parses: ``42``, ``"a\\r\\nb"``, ``"\\u6a21"``, as
its model).

Usage::

    from modelgate.simulator import SimConfig, Simulator, SimulatorThread, run

    # async (tests): a server on a free port of 127.0.0.1
    sim = Simulator(SimConfig.from_dict({"api_key": "sk-sim"}))
    await sim.start()                      # or: async with Simulator() as sim:
    client = openai.AsyncOpenAI(base_url=f"{sim.base_url}/v1", api_key="sk-sim")
    await sim.stop()

    # sync code / the demo: its own loop in a background thread
    with SimulatorThread(SimConfig.from_file("sim.yaml")) as sim:
        openai.OpenAI(base_url=f"{sim.base_url}/v1", api_key="k")

    # CLI: blocking, uvloop when available
    run("127.0.0.1", 8900, None)

Routes (relative to ``base_url``):

* OpenAI: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/embeddings``, ``POST /v1/moderations``
  (keyword-driven scores), ``GET /v1/models``
  (Bearer key).
* Azure OpenAI: ``POST /openai/deployments/{deployment}/chat/completions|embeddings?api-version=...``,
  ``POST /openai/responses?api-version=...`` and ``POST /openai/v1/chat/completions|responses|embeddings``
  (``api-key`` header).
* Anthropic: ``POST /v1/messages``, ``POST /v1/messages/count_tokens`` (``x-api-key`` + ``anthropic-version``).
* Gemini: ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``
  (``x-goog-api-key`` header or ``key`` query parameter).
* Control: ``POST /sim/faults``, ``GET /sim/stats``, ``POST /sim/reset``.

Behaviour worth knowing (each mirrors the real provider):

* Reasoning: OpenAI-side models think when their ``ModelSpec.reasoning`` is on (default for the names in
  ``DEFAULT_REASONING_MODELS``), in ``reasoning_content`` or ``reasoning`` per ``reasoning_field``. Anthropic thinks
  only when the request sets ``thinking`` (enabled/adaptive). Gemini thinks for reasoning models or with a
  ``thinkingConfig``, but shows thought parts only with ``includeThoughts``; ``thinkingBudget: 0`` turns it off.
* Signatures (Anthropic thinking/redacted_thinking, Gemini ``thoughtSignature``, the ``encrypted_content`` of
  Responses reasoning items) are HMACs with a per-instance secret and are verified when sent back. The Responses
  API keeps nothing: a reasoning model's item carries ``encrypted_content`` when ``include`` asks for
  ``reasoning.encrypted_content``, its text only when ``reasoning.summary`` is set, and a function call item
  issued beside it and sent back under its ``fc_`` id is refused unless the reasoning item comes before it.
* Gemini auth failures are 400 ``API_KEY_INVALID`` (wrong key) and 403 ``PERMISSION_DENIED`` (no key), as on the
  real API; the other APIs answer 401.
* Anthropic prompt caching: each ``cache_control`` prefix is a cache write the first time, a read afterwards (no
  minimum length, no expiry; ``POST /sim/reset`` forgets).

Module map: ``config`` (SimConfig/ModelSpec) · ``tokens`` (estimator) · ``faults`` (spec parsing, runtime faults)
· ``replies`` + ``schema_values`` (the one reply generator) · ``surface`` + ``exchange`` (shared request pipeline)
· ``openai_chat``/``openai_responses``/``openai_api``/``azure_api``/``anthropic_*``/``gemini_*`` (one wire format
each) · ``control``
· ``server`` (Simulator, SimulatorThread, run). API modules depend on the pipeline and the generator, never on
each other (Azure extends OpenAI).
"""

from modelgate.simulator.config import DEFAULT_REASONING_MODELS, ModelSpec, SimConfig
from modelgate.simulator.faults import Fault, FaultSpecError, parse_fault
from modelgate.simulator.server import Simulator, SimulatorThread, build_app, run
from modelgate.simulator.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens, message_tokens, tool_tokens

__all__ = [
    "DEFAULT_REASONING_MODELS",
    "MESSAGE_OVERHEAD_TOKENS",
    "Fault",
    "FaultSpecError",
    "ModelSpec",
    "SimConfig",
    "Simulator",
    "SimulatorThread",
    "build_app",
    "count_tokens",
    "message_tokens",
    "parse_fault",
    "run",
    "tool_tokens",
]
