"""A gateway with a ``local`` deployment on the ray engine: SmolLM2's GGUF as a Ray Serve
application on a real local Ray cluster (``ray_cluster``), driven over real sockets by the
openai SDK.

Each Ray replica serves the model as the llamacpp engine's worker does, so the answers are
compared, as there, with llama-cpp-python's own on the same file in this process (greedy
decoding): text, prompt tokens and completion tokens must be equal, whole and streamed. Tool
calls come back as under llamacpp, from a copy of the GGUF whose chat template renders tools.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.engines.conftest import RayCluster
from tests.engines.test_local_gateway import MAX_TOKENS, QUESTION, expected
from tests.engines.test_local_tools import QUESTION as TOOL_QUESTION
from tests.engines.test_local_tools import TOOLS, assert_valid
from tests.local_models import TOOLS_CHAT_TEMPLATE, with_metadata
from tests.support import DEADLINE_S, RunningGateway, gateway_in_thread, wait_until

APP = "modelgate-smollm2-135m-instruct-q4-1-"  # the application's name on the cluster, before its digest


def ray_config(model: str, address: str, ray: dict[str, Any] | None = None, **engine: Any) -> dict[str, Any]:
    return {"providers": {"local": {"type": "local"}},
            "deployments": [{"name": "smollm2", "provider": "local", "model": model, "context_window": 2048,
                             "timeout": 60, "engine": "ray", "ray": {"address": address, **(ray or {})}, **engine}]}


@pytest.fixture(scope="module")
def gateway(smollm2: str, ray_cluster: RayCluster) -> Iterator[RunningGateway]:
    config = ray_config(smollm2, ray_cluster.address, max_concurrency=2,
                        ray={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1})
    with gateway_in_thread(config) as gateway:
        yield gateway


def client(gateway: RunningGateway) -> openai.OpenAI:
    # The application is deployed as the gateway starts: the first request may wait for it.
    return openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0, timeout=120)


def applications(cluster: RayCluster) -> dict[str, Any]:
    return {name: app for name, app in cluster.details().items() if name.startswith(APP)}


def test_chat_completions_whole_is_llama_cpps_answer_with_its_counts(gateway: RunningGateway,
                                                                     reference: Any) -> None:
    want = expected(reference)
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="smollm2", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=MAX_TOKENS)
    answer = raw.parse()
    assert answer.choices[0].message.content == want["text"]
    assert answer.choices[0].finish_reason == want["finish_reason"]
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"])
    assert raw.headers["x-modelgate-deployment"] == "smollm2"
    assert raw.headers["x-modelgate-provider"] == "local"
    assert raw.headers["x-modelgate-model"] == "SmolLM2-135M-Instruct.Q4_1"


def test_chat_completions_streamed_carries_the_exact_usage(gateway: RunningGateway, reference: Any) -> None:
    want = expected(reference)
    stream = client(gateway).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=MAX_TOKENS,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want["text"]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"])


def test_a_prompt_past_the_context_window_is_a_400(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hello " * 2100}], max_tokens=4)
    assert raised.value.code == "context_length_exceeded"


def test_the_application_on_the_cluster_has_the_deployments_autoscaling(gateway: RunningGateway,
                                                                        ray_cluster: RayCluster) -> None:
    client(gateway).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=1)
    [(name, app)] = applications(ray_cluster).items()
    assert app["status"] == "RUNNING" and app["route_prefix"] == f"/{name}"
    chat = app["deployments"]["chat"]
    assert chat["config"]["autoscaling_config"]["min_replicas"] == 1
    assert chat["config"]["autoscaling_config"]["max_replicas"] == 2
    assert chat["config"]["autoscaling_config"]["target_ongoing_requests"] == 1
    assert chat["config"]["max_ongoing_requests"] == 2  # max_concurrency: requests one Ray replica runs at once
    assert "RUNNING" in chat["replica_states"]
    # Served at Ray Serve's own HTTP proxy, where the gateway sends the requests.
    routes = httpx.get(f"http://127.0.0.1:{ray_cluster.http}/-/routes", timeout=10).json()
    assert routes[f"/{name}"] == name


def test_the_application_is_removed_when_the_gateway_stops(smollm2: str, ray_cluster: RayCluster) -> None:
    config = ray_config(smollm2, ray_cluster.address, max_concurrency=1, ray={"target_ongoing_requests": 3})
    with gateway_in_thread(config) as gateway:
        answer = client(gateway).chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert answer.usage is not None and answer.usage.completion_tokens >= 1
        # Other settings, another application: both are on the cluster now.
        mine = [n for n, a in applications(ray_cluster).items()
                if a["deployments"]["chat"]["config"]["autoscaling_config"]["target_ongoing_requests"] == 3]
        assert len(mine) == 1
    wait_until(lambda: mine[0] not in applications(ray_cluster), DEADLINE_S * 3, "the application's removal")


def test_tools_run_on_the_ray_engine_as_on_llamacpp(smollm2: str, ray_cluster: RayCluster,
                                                    tmp_path: Path) -> None:
    tools_gguf = with_metadata(Path(smollm2), tmp_path / "SmolLM2-tools.gguf",
                               {"tokenizer.chat_template": TOOLS_CHAT_TEMPLATE})
    ask: dict[str, Any] = {"model": "smollm2", "messages": TOOL_QUESTION, "tools": TOOLS, "tool_choice": "required",
                           "parallel_tool_calls": False, "temperature": 0, "max_tokens": 80}
    with gateway_in_thread(ray_config(str(tools_gguf), ray_cluster.address, max_concurrency=1)) as gateway:
        answer = client(gateway).chat.completions.create(**ask)
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        calls = choice.message.tool_calls
        assert calls is not None and len(calls) == 1 and calls[0].id.startswith("call_")
        assert_valid(calls[0].function.name, calls[0].function.arguments)
        chunks = list(client(gateway).chat.completions.create(**ask, stream=True))
        deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
        # Each call whole in one delta, as the llamacpp worker sends it.
        assert len(deltas) == 1 and deltas[0].index == 0 and deltas[0].function is not None
        assert deltas[0].id and deltas[0].id.startswith("call_")
        assert_valid(deltas[0].function.name or "", deltas[0].function.arguments or "")
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
            "tool_calls"]
        # A Ray replica's health names the format the template writes calls in, as the worker's does.
        [name] = [n for n in ray_cluster.details() if n.startswith("modelgate-smollm2-tools-")]
        health = httpx.get(f"http://127.0.0.1:{ray_cluster.http}/{name}/health", timeout=30)
        assert health.status_code == 200 and json.loads(health.content)["tool_format"] == "hermes"


def test_an_unreachable_cluster_is_a_503_naming_it_with_retry_after(smollm2: str, ray_installed: None) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    with gateway_in_thread(ray_config(smollm2, address)) as gateway, httpx.Client(timeout=30) as http:
        body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

        def refused() -> bool:
            # Until the first start has failed, a request waits for it (and fails with it).
            return http.post(f"{gateway.v1}/chat/completions", json=body).status_code == 503

        wait_until(refused, DEADLINE_S, "a 503 from the deployment on the unreachable cluster")
        answer = http.post(f"{gateway.v1}/chat/completions", json=body)
        assert answer.status_code == 503
        assert int(answer.headers["retry-after"]) >= 1
        message = answer.json()["error"]["message"]
        assert f"cannot reach the Ray cluster at '{address}'" in message
        assert "tried again in the background" in message
