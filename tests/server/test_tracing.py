"""Traces: the gateway exports its spans over OTLP/HTTP to a receiver in the test, which decodes
them with opentelemetry-proto. One SERVER span per request, one CLIENT span per upstream attempt
(its child), named and attributed by the GenAI semantic conventions; a client's ``traceparent``
continues its trace and each attempt sends its own upstream. Plain, streamed, failed-over and
refused requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from modelgate.simulator import SimConfig, SimulatorThread
from tests.server.otlp import Receiver
from tests.support import RecordingUpstream, gateway_in_thread

MASTER = "mk-traces"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
EMAIL = "ops@example.com"
SECRET = "sk-ant-api03-" + "x" * 40


def attributes(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        out[attribute.key] = getattr(value, value.WhichOneof("value"))
    return out


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[Receiver, RecordingUpstream, list[Span]]]:
    """A gateway that traces, the load of every test below run through it, and the spans it
    exported by the time it stopped."""
    receiver = Receiver()
    sim_config = SimConfig.from_dict({"api_key": "sk-sim", "models": {"broken": {"fault": "status=500"}}})
    with SimulatorThread(sim_config) as sim, RecordingUpstream() as recorded:
        v1 = f"{sim.base_url}/v1"
        config = {
            "master_key": MASTER,
            "telemetry": {"otlp_endpoint": receiver.url, "service_name": "gateway-under-test"},
            "providers": {"openai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "openai"},
                          "recorded": {"type": "openai", "base_url": f"{recorded.base_url}/v1", "api_key": "k",
                                       "flavor": "openai"}},
            "deployments": [
                {"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"},
                {"name": "rec", "provider": "recorded", "model": "rec-model"},
                {"name": "captured", "provider": "openai", "model": "gpt-4o", "capture_content": True},
                {"name": "failover", "strategy": "priority", "retries": 0,
                 "targets": [{"provider": "openai", "model": "broken"},
                             {"provider": "openai", "model": "gpt-4o"}]},
            ],
        }
        with gateway_in_thread(config) as gateway:
            client = openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)
            client.chat.completions.create(
                model="rec", messages=[{"role": "user", "content": "traced"}], temperature=0.2, max_tokens=20,
                extra_headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
            for _ in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}],
                                                    stream=True, stream_options={"include_usage": True}):
                pass
            client.chat.completions.create(model="failover", messages=[{"role": "user", "content": "again"}])
            for _ in client.chat.completions.create(
                    model="captured", stream=True,
                    messages=[{"role": "system", "content": f"Write to {EMAIL} only"},
                              {"role": "user", "content": f"My key is {SECRET}; say hello"}]):
                pass
            limited = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                                 json={"project": "p", "rpm": 1}).json()["key"]
            team = openai.OpenAI(base_url=gateway.v1, api_key=limited, max_retries=0)
            team.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "one"}])
            with pytest.raises(openai.RateLimitError):
                team.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "two"}])
        # The gateway has stopped: its last spans were sent as it did.
        yield receiver, recorded, list(receiver.spans)
    receiver.close()


def server_span(spans: list[Span], deployment: str, nth: int = 0) -> Span:
    found = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER
             and attributes(s).get("gen_ai.request.model") == deployment]
    return sorted(found, key=lambda s: s.start_time_unix_nano)[nth]


def children(spans: list[Span], parent: Span) -> list[Span]:
    return sorted((s for s in spans if s.parent_span_id == parent.span_id), key=lambda s: s.start_time_unix_nano)


def test_export_goes_to_the_collector_as_the_service(traced: tuple[Receiver, RecordingUpstream, list[Span]]) -> None:
    receiver, _, spans = traced
    assert set(receiver.paths) == {"/v1/traces"} and receiver.services == {"gateway-under-test"}
    assert len([s for s in spans if s.kind == Span.SPAN_KIND_SERVER]) == 6


def test_a_plain_request_continues_the_clients_trace_and_sends_it_upstream(
        traced: tuple[Receiver, RecordingUpstream, list[Span]]) -> None:
    _, recorded, spans = traced
    server = server_span(spans, "rec")
    assert server.trace_id.hex() == TRACE_ID and server.parent_span_id.hex() == CLIENT_SPAN
    assert server.name == "chat rec"
    said = attributes(server)
    assert said["gen_ai.operation.name"] == "chat" and said["gen_ai.provider.name"] == "openai"
    assert said["gen_ai.response.model"] == "recorded-model" and said["modelgate.deployment"] == "rec"
    assert (said["gen_ai.usage.input_tokens"], said["gen_ai.usage.output_tokens"]) == (3, 1)
    assert said["gen_ai.request.temperature"] == 0.2 and said["gen_ai.request.max_tokens"] == 20
    assert said["gen_ai.request.stream"] is False and said["http.response.status_code"] == 200
    assert said["modelgate.key_id"] == "master" and said["modelgate.attempts"] == 1
    assert "error.type" not in said and server.status.code != Status.STATUS_CODE_ERROR
    (attempt,) = children(spans, server)
    assert attempt.kind == Span.SPAN_KIND_CLIENT and attempt.name == "chat rec-model"
    tried = attributes(attempt)
    assert tried["server.address"] == "127.0.0.1" and tried["modelgate.attempt"] == 1
    assert tried["gen_ai.provider.name"] == "openai" and tried["gen_ai.request.model"] == "rec-model"
    assert tried["gen_ai.response.model"] == "recorded-model"  # what the upstream says it is
    # The upstream got the attempt's own traceparent: same trace, the CLIENT span as its parent.
    (sent,) = [r for r in recorded.requests if r["path"].endswith("/chat/completions")]
    assert sent["headers"]["traceparent"] == f"00-{TRACE_ID}-{attempt.span_id.hex()}-01"


def test_a_stream_has_its_time_to_first_chunk(traced: tuple[Receiver, RecordingUpstream, list[Span]]) -> None:
    _, _, spans = traced
    server = server_span(spans, "gpt-4o")
    said = attributes(server)
    assert said["gen_ai.request.stream"] is True and said["gen_ai.response.time_to_first_chunk"] > 0
    assert said["gen_ai.usage.output_tokens"] > 0
    assert len(server.trace_id) == 16 and server.trace_id.hex() != TRACE_ID  # a trace of its own
    (attempt,) = children(spans, server)
    assert attempt.end_time_unix_nano >= attempt.start_time_unix_nano
    assert server.end_time_unix_nano >= attempt.end_time_unix_nano  # the answer's last byte


def test_a_failover_shows_each_attempt(traced: tuple[Receiver, RecordingUpstream, list[Span]]) -> None:
    _, _, spans = traced
    server = server_span(spans, "failover")
    assert attributes(server)["modelgate.attempts"] == 2 and server.status.code != Status.STATUS_CODE_ERROR
    failed, answered = children(spans, server)
    assert failed.name == "chat broken" and answered.name == "chat gpt-4o"
    assert failed.status.code == Status.STATUS_CODE_ERROR and attributes(failed)["http.response.status_code"] == 500
    assert attributes(failed)["error.type"] and attributes(failed)["modelgate.attempt"] == 1
    assert answered.status.code != Status.STATUS_CODE_ERROR and attributes(answered)["modelgate.attempt"] == 2


def test_a_refused_request_has_no_attempt(traced: tuple[Receiver, RecordingUpstream, list[Span]]) -> None:
    _, _, spans = traced
    refused = server_span(spans, "gpt-4o", nth=2)
    said = attributes(refused)
    assert said["http.response.status_code"] == 429 and said["error.type"] == "rate_limit_exceeded"
    assert refused.status.code == Status.STATUS_CODE_ERROR and said["modelgate.project"] == "p"
    assert children(spans, refused) == []


def test_content_only_where_asked_and_redacted(traced: tuple[Receiver, RecordingUpstream, list[Span]]) -> None:
    _, _, spans = traced
    said = attributes(server_span(spans, "captured"))
    assert orjson.loads(said["gen_ai.system_instructions"]) == [{"type": "text", "content": "Write to [EMAIL] only"}]
    assert orjson.loads(said["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "My key is [SECRET]; say hello"}]}]
    (answer,) = orjson.loads(said["gen_ai.output.messages"])
    assert answer["role"] == "assistant" and answer["finish_reason"] == "stop"
    assert answer["parts"][0]["type"] == "text" and answer["parts"][0]["content"]
    assert [value.string_value for value in said["gen_ai.response.finish_reasons"].values] == ["stop"]
    for deployment in ("gpt-4o", "rec", "failover"):  # telemetry.capture_content is false
        assert not {"gen_ai.input.messages", "gen_ai.output.messages"} & set(attributes(server_span(spans, deployment)))


def test_the_response_id_and_finish_reasons(traced: tuple[Receiver, RecordingUpstream, list[Span]]) -> None:
    _, _, spans = traced
    said = attributes(server_span(spans, "failover"))
    assert said["gen_ai.response.id"].startswith("chatcmpl")
    finish = said["gen_ai.response.finish_reasons"]
    assert [value.string_value for value in finish.values] == ["stop"]


def test_a_trace_not_kept_makes_no_span_and_a_clients_sampled_trace_is_kept() -> None:
    receiver = Receiver()
    try:
        with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim"})) as sim:
            config = {"master_key": MASTER,
                      "telemetry": {"otlp_endpoint": receiver.url, "sample_ratio": 0},
                      "providers": {"openai": {"type": "openai", "base_url": f"{sim.base_url}/v1",
                                               "api_key": "sk-sim", "flavor": "openai"}},
                      "deployments": [{"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"}]}
            with gateway_in_thread(config) as gateway:
                client = openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)
                for _ in range(5):
                    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "kept"}],
                                               extra_headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "not"}],
                                               extra_headers={"traceparent": f"00-{'1' * 32}-{CLIENT_SPAN}-00"})
        spans = list(receiver.spans)
        assert sorted(Span.SpanKind.Name(s.kind) for s in spans) == ["SPAN_KIND_CLIENT", "SPAN_KIND_SERVER"]
        assert {s.trace_id.hex() for s in spans} == {TRACE_ID}
    finally:
        receiver.close()
