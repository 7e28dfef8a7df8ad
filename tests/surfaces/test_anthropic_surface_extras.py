"""What real Anthropic clients found missing on the Messages surface, driven by the official
``anthropic`` and ``openai`` SDKs against a gateway on the simulator: 529 overloads (also while the
target cools down), the structured-outputs beta's ``output_format``, count_tokens answered by an
Anthropic upstream, and the rate-limit headers of both formats."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web
from anthropic.types import MessageParam
from anthropic.types.beta import BetaMessageParam

from modelgate.limits.headers import UNLIMITED
from modelgate.simulator import SimConfig, SimulatorThread, message_tokens
from tests.support import (
    RecordingUpstream,
    RunningGateway,
    anthropic_client,
    gateway_in_thread,
    native_sim_config,
)

MASTER_KEY = "mg-test-extras"
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello there"}]
BETA_HELLO: list[BetaMessageParam] = [{"role": "user", "content": "Hello there"}]
BETA = "structured-outputs-2025-11-13"
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"], "additionalProperties": False}
OPENAI_KINDS = [f"x-ratelimit-{part}-{kind}" for kind in ("requests", "tokens")
                for part in ("limit", "remaining", "reset")]


@pytest.fixture(scope="module")
def upstream() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        "claude-overloaded": {"fault": "status=529"},
        "claude-overloaded-stream": {"fault": "status=529"},
        "gpt-overloaded": {"fault": "status=529"},
    }})
    with SimulatorThread(config) as sim:
        yield sim


@pytest.fixture(scope="module")
def gateway(upstream: SimulatorThread) -> Iterator[RunningGateway]:
    config = native_sim_config(upstream.base_url, master_key=MASTER_KEY, routing={"failures": 1, "cooldown": 60})
    config["deployments"] += [
        {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"},
        {"name": "claude-overloaded", "provider": "anthropic", "model": "claude-overloaded"},
        {"name": "claude-overloaded-stream", "provider": "anthropic", "model": "claude-overloaded-stream"},
        {"name": "gpt-overloaded", "provider": "openai", "model": "gpt-overloaded"},
    ]
    with gateway_in_thread(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic_client(gateway, MASTER_KEY) as sdk:
        yield sdk


def new_key(gateway: RunningGateway, **limits: Any) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"},
                          json={"project": "extras", **limits}, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


# --- 529 overloaded ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_529_stays_529_while_the_target_cools_down(client: anthropic.Anthropic, stream: bool) -> None:
    model = "claude-overloaded-stream" if stream else "claude-overloaded"
    for attempt in ("the upstream's answer", "the cooling target's refusal"):
        with pytest.raises(anthropic.OverloadedError) as caught:
            client.messages.create(model=model, max_tokens=10, messages=HELLO, stream=stream)
        assert caught.value.status_code == 529, attempt
        assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    # The second answer came from the breaker, not the upstream, and says so.
    assert "can take requests now" in caught.value.message
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_openai_surface_keeps_the_upstream_status_of_an_overload(gateway: RunningGateway) -> None:
    sdk = openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0)
    for _ in range(2):  # the upstream's 529, then the cooling target's refusal
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.chat.completions.create(model="gpt-overloaded", messages=[{"role": "user", "content": "Hi"}])
        assert caught.value.status_code == 529
        assert caught.value.body["type"] == "server_error"  # type: ignore[index]


# --- output_format (structured-outputs beta) ---------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o", "claude"])
def test_beta_output_format_is_honoured_on_every_target(client: anthropic.Anthropic, model: str) -> None:
    message = client.beta.messages.create(model=model, max_tokens=200, messages=BETA_HELLO, betas=[BETA],
                                          extra_body={"output_format": {"type": "json_schema", "schema": CITY}})
    (block,) = message.content
    assert block.type == "text"
    value = httpx.Response(200, content=block.text).json()
    assert set(value) == {"city", "population"} and isinstance(value["population"], int)


def test_beta_output_format_reaches_an_anthropic_upstream_as_given(gateway: RunningGateway) -> None:
    with RecordingUpstream(_anthropic_message) as recorder:
        config = {"master_key": MASTER_KEY,
                  "providers": {"a": {"type": "anthropic", "base_url": recorder.base_url, "api_key": "sk-rec"}},
                  "deployments": [{"name": "claude", "provider": "a", "model": "claude-sonnet-4-5"}]}
        with (gateway_in_thread(config) as running,
              anthropic.Anthropic(base_url=running.base_url, api_key=MASTER_KEY, max_retries=0) as sdk):
            sdk.beta.messages.create(model="claude", max_tokens=200, messages=BETA_HELLO, betas=[BETA],
                                     extra_body={"output_format": {"type": "json_schema", "schema": CITY}})
        sent = recorder.requests[-1]
    assert sent["json"]["output_format"] == {"type": "json_schema", "schema": CITY}
    assert "output_config" not in sent["json"]
    assert BETA in sent["headers"]["anthropic-beta"]


def test_output_format_mistakes_are_named(client: anthropic.Anthropic) -> None:
    fmt = {"type": "json_schema", "schema": CITY}
    with pytest.raises(anthropic.BadRequestError, match=BETA) as caught:
        client.messages.create(model="gpt-4o", max_tokens=50, messages=HELLO, extra_body={"output_format": fmt})
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="not both"):
        client.beta.messages.create(model="gpt-4o", max_tokens=50, messages=BETA_HELLO, betas=[BETA],
                                    extra_body={"output_format": fmt, "output_config": {"format": fmt}})
    with pytest.raises(anthropic.BadRequestError, match="json_schema"):
        client.beta.messages.create(model="gpt-4o", max_tokens=50, messages=BETA_HELLO, betas=[BETA],
                                    extra_body={"output_format": {"type": "json_object"}})


# --- count_tokens --------------------------------------------------------------------------------


def test_count_tokens_on_an_anthropic_deployment_asks_the_upstream(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model="claude", messages=HELLO)
    # The simulator's own count (its documented estimator), as its messages API reports it...
    assert counted.input_tokens == message_tokens("Hello there")
    assert counted.input_tokens == client.messages.create(model="claude", max_tokens=20,
                                                          messages=HELLO).usage.input_tokens
    # ...where other deployments keep the gateway's estimate: 3 + 4 + ceil(11 / 4).
    assert client.messages.count_tokens(model="gpt-4o", messages=HELLO).input_tokens == 3 + 4 + 3
    with pytest.raises(anthropic.OverloadedError):
        client.messages.count_tokens(model="claude-overloaded", messages=HELLO)


def test_count_tokens_request_sent_upstream() -> None:
    with RecordingUpstream(_count) as recorder:
        config = {"master_key": MASTER_KEY,
                  "providers": {"a": {"type": "anthropic", "base_url": recorder.base_url, "api_key": "sk-rec"}},
                  "deployments": [{"name": "claude", "provider": "a", "model": "claude-sonnet-4-5"}]}
        with (gateway_in_thread(config) as running,
              anthropic.Anthropic(base_url=running.base_url, api_key=MASTER_KEY, max_retries=0) as sdk):
            counted = sdk.messages.count_tokens(model="claude", system="Be brief.", messages=HELLO,
                                                thinking={"type": "enabled", "budget_tokens": 2048},
                                                extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"})
            with pytest.raises(anthropic.AuthenticationError):
                sdk.with_options(api_key="wrong").messages.count_tokens(model="claude", messages=HELLO)
        (sent,) = recorder.requests
    assert counted.input_tokens == 42
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["headers"]["x-api-key"] == "sk-rec"
    assert sent["headers"]["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    assert sent["json"] == {"model": "claude-sonnet-4-5", "system": "Be brief.",
                            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
                            "thinking": {"type": "enabled", "budget_tokens": 2048}}


async def _count(request: web.Request) -> web.Response:
    return web.json_response({"input_tokens": 42})


async def _anthropic_message(request: web.Request) -> web.Response:
    return web.json_response({
        "id": "msg_rec", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": '{"city": "Oslo", "population": 700000}'}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5}})


# --- rate-limit headers ------------------------------------------------------------------------


def _reset_after(value: str, started: float) -> float:
    """Seconds from ``started`` to an RFC 3339 reset time."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - started


def test_anthropic_surface_carries_anthropic_ratelimit_headers(gateway: RunningGateway) -> None:
    key = new_key(gateway, rpm=5, tpm=10_000)
    started = time.time()
    with anthropic_client(gateway, key) as sdk:
        raw = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=20, messages=HELLO)
        with sdk.messages.with_streaming_response.create(model="gpt-4o", max_tokens=20, messages=HELLO,
                                                         stream=True) as streamed:
            streamed_headers = streamed.headers
    headers = raw.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "5"
    assert headers["anthropic-ratelimit-requests-remaining"] == "4"
    assert 0 <= _reset_after(headers["anthropic-ratelimit-requests-reset"], started) <= 60 + 1
    for kind in ("tokens", "input-tokens", "output-tokens"):
        assert headers[f"anthropic-ratelimit-{kind}-limit"] == "10000"
        assert 0 < int(headers[f"anthropic-ratelimit-{kind}-remaining"]) < 10_000
        assert headers[f"anthropic-ratelimit-{kind}-reset"].endswith("Z")
    assert streamed_headers["anthropic-ratelimit-requests-remaining"] == "3"


def test_anthropic_refusal_carries_its_ratelimit_headers(gateway: RunningGateway) -> None:
    key = new_key(gateway, rpm=1)
    with anthropic_client(gateway, key) as sdk:
        first = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=20, messages=HELLO)
        with pytest.raises(anthropic.RateLimitError) as caught:
            sdk.messages.create(model="gpt-4o", max_tokens=20, messages=HELLO)
    # Only the limited kind: this key has no tokens-per-minute limit.
    assert not any(name.startswith("anthropic-ratelimit-tokens") for name in first.headers)
    refused = caught.value.response.headers
    assert (refused["anthropic-ratelimit-requests-limit"], refused["anthropic-ratelimit-requests-remaining"]) == (
        "1", "0")
    assert _reset_after(refused["anthropic-ratelimit-requests-reset"], time.time()) > 0
    assert int(refused["retry-after"]) >= 1


def test_openai_surface_carries_all_six_headers(gateway: RunningGateway) -> None:
    requests_only = new_key(gateway, rpm=100)
    tokens_only = new_key(gateway, tpm=50_000)
    seen: dict[str, Any] = {}
    for name, key in (("requests_only", requests_only), ("tokens_only", tokens_only), ("master", MASTER_KEY)):
        sdk = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=10)
        embedded = sdk.embeddings.with_raw_response.create(model="embed", input="Hi")
        for headers in (raw.headers, embedded.headers):
            assert all(header in headers for header in OPENAI_KINDS), (name, dict(headers))
        seen[name] = raw.headers
    assert seen["requests_only"]["x-ratelimit-limit-requests"] == "100"
    assert seen["requests_only"]["x-ratelimit-limit-tokens"] == str(UNLIMITED)
    assert seen["tokens_only"]["x-ratelimit-limit-tokens"] == "50000"
    assert int(seen["tokens_only"]["x-ratelimit-remaining-tokens"]) < 50_000
    assert seen["tokens_only"]["x-ratelimit-remaining-requests"] == str(UNLIMITED)
    assert seen["master"]["x-ratelimit-reset-tokens"] == "0s"
