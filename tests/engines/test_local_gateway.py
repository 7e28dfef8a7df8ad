"""A gateway with a ``local`` deployment of a real model (SmolLM2-135M-Instruct under llama.cpp),
driven over real sockets by the openai and anthropic SDKs.

The engine's answers are compared with llama-cpp-python's own ``create_chat_completion`` on the
same file in this process: greedy decoding (temperature 0) makes both deterministic, so text,
prompt tokens and completion tokens must be equal, whole and streamed, on every surface.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelgate.simulator import SimulatorThread
from modelgate.storage import ReplicaRun, Storage
from tests.engines.conftest import engine_children
from tests.support import (
    DEADLINE_S,
    RunningGateway,
    anthropic_client,
    gateway_in_thread,
    openai_sim_config,
    wait_until,
)

QUESTION = "What is the capital of France?"
MAX_TOKENS = 12


def local_config(model: str, **engine: Any) -> dict[str, Any]:
    return {"providers": {"local": {"type": "local"}},
            "deployments": [{"name": "smollm2", "provider": "local", "model": model, "context_window": 2048,
                             "timeout": 60, **engine}]}


@pytest.fixture(scope="module")
def gateway(smollm2: str) -> Iterator[RunningGateway]:
    with gateway_in_thread(local_config(smollm2, max_concurrency=2)) as gateway:
        yield gateway


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0)


def expected(reference: Any, question: str = QUESTION, max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    answer = reference.create_chat_completion(messages=[{"role": "user", "content": question}],
                                              temperature=0, max_tokens=max_tokens)
    return {"text": answer["choices"][0]["message"]["content"], "usage": answer["usage"],
            "finish_reason": answer["choices"][0]["finish_reason"]}


def test_chat_completions_whole_is_llama_cpps_answer_with_its_counts(gateway: RunningGateway, reference: Any) -> None:
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
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want["text"]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"])


def test_messages_through_the_anthropic_sdk(gateway: RunningGateway, reference: Any) -> None:
    want = expected(reference)
    with anthropic_client(gateway, "none") as sdk:
        message = sdk.messages.create(model="smollm2", max_tokens=MAX_TOKENS, extra_body={"temperature": 0},
                                      messages=[{"role": "user", "content": QUESTION}])
        assert message.content[0].type == "text"
        assert message.content[0].text == want["text"]
        assert (message.usage.input_tokens, message.usage.output_tokens) == (
            want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"])
        with sdk.messages.stream(model="smollm2", max_tokens=MAX_TOKENS, extra_body={"temperature": 0},
                                 messages=[{"role": "user", "content": QUESTION}]) as stream:
            final = stream.get_final_message()
        assert final.content[0].type == "text"
        assert final.content[0].text == want["text"]
        assert final.usage.output_tokens == want["usage"]["completion_tokens"]


def test_responses_create(gateway: RunningGateway, reference: Any) -> None:
    want = expected(reference)
    response = client(gateway).responses.create(model="smollm2", input=QUESTION, temperature=0,
                                                max_output_tokens=MAX_TOKENS, store=False)
    assert response.output_text == want["text"]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"])


def test_a_prompt_past_the_context_window_is_a_400(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hello " * 2100}], max_tokens=4)
    assert raised.value.code == "context_length_exceeded"


def test_beyond_the_queue_a_request_gets_429_with_retry_after(smollm2: str) -> None:
    config = local_config(smollm2, max_concurrency=1, queue=0)
    with gateway_in_thread(config) as gateway, httpx.Client(timeout=DEADLINE_S * 3) as http:
        # With no queue nothing waits for the model to load either (503 meanwhile): the SDK retries.
        patient = openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=10)
        patient.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        body = {"model": "smollm2", "stream": True, "max_tokens": 400, "temperature": 0,
                "messages": [{"role": "user", "content": "Write a long story about a dragon and a knight."}]}
        with http.stream("POST", f"{gateway.v1}/chat/completions", json=body) as slow:
            assert slow.status_code == 200
            lines = slow.iter_lines()
            next(lines)  # the answer has begun: the one slot is taken
            with pytest.raises(openai.RateLimitError) as raised:
                client(gateway).chat.completions.create(
                    model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
            assert int(raised.value.response.headers["retry-after"]) >= 1
            assert "at capacity" in raised.value.message
            rest = "".join(lines)
        assert '"finish_reason":"length"' in rest.replace(" ", "")


def test_a_replica_killed_mid_stream_fails_the_request_and_comes_back(smollm2: str) -> None:
    others = set(engine_children())  # the module's gateway's

    def mine() -> set[int]:
        return set(engine_children()) - others

    with gateway_in_thread(local_config(smollm2)) as gateway:
        sdk = client(gateway)
        sdk.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        [first] = mine()
        stream = sdk.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            max_tokens=400, temperature=0, stream=True)
        chunks = iter(stream)
        next(chunks)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(openai.APIError) as raised:
            for _ in chunks:
                pass
        assert "exited with code -9 while answering" in str(raised.value.message)
        wait_until(lambda: mine() - {first}, DEADLINE_S, "a new replica")
        answer = sdk.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=2)
        assert answer.usage is not None and answer.usage.completion_tokens >= 1
        [second] = mine()
        assert second != first
    assert not mine(), "the engine's processes outlived the gateway"


HEALTH = {"health_interval": 0.5, "health_timeout": 0.5}


def test_a_replica_that_stops_answering_is_killed_its_stream_fails_fast_and_it_comes_back(
        smollm2: str, tmp_path: Path) -> None:
    others = set(engine_children())

    def mine() -> set[int]:
        return set(engine_children()) - others

    database = f"sqlite:///{tmp_path / 'modelgate.db'}"
    with gateway_in_thread({**local_config(smollm2, **HEALTH), "database_url": database}) as gateway:
        sdk = client(gateway)
        sdk.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        [first] = mine()
        stream = sdk.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            max_tokens=400, temperature=0, stream=True)
        chunks = iter(stream)
        next(chunks)
        os.kill(first, signal.SIGSTOP)  # alive, holding its socket, answering nothing
        stopped = time.monotonic()
        try:
            with pytest.raises(openai.APIError) as raised:
                for _ in chunks:
                    pass
            failed = time.monotonic() - stopped
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(first, signal.SIGCONT)  # not left stopped if the check never came
        # Within about interval + timeout, where the deployment's timeout (60 s) would have waited.
        assert failed < 5, f"the stream took {failed:.1f}s to fail"
        assert "was killed while answering because it did not answer its health check within 0.5s" in (
            raised.value.message)
        wait_until(lambda: first not in set(engine_children()), DEADLINE_S, "the hung replica killed")
        wait_until(lambda: mine(), DEADLINE_S, "a new replica")
        answer = sdk.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=2)
        assert answer.usage is not None and answer.usage.completion_tokens >= 1
    assert not mine(), "the engine's processes outlived the gateway"
    runs = asyncio.run(_runs(database))
    assert [r.end_reason for r in runs] == ["hung", "stopped"]


async def _runs(database: str) -> list[ReplicaRun]:
    storage = await Storage.open(database)
    try:
        return await storage.replica_hours.runs(provider="local")
    finally:
        await storage.close()


def test_a_whole_answer_from_a_hung_replica_falls_back(smollm2: str, sim: SimulatorThread) -> None:
    config = openai_sim_config(sim.base_url)
    config["providers"]["local"] = {"type": "local"}
    config["deployments"] = [
        {"name": "smollm2", "provider": "local", "model": smollm2, "context_window": 2048, "timeout": 60,
         "fallbacks": ["gpt-4o"], **HEALTH},
        {"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"}]
    others = set(engine_children())
    with gateway_in_thread(config) as gateway:
        sdk = client(gateway)
        sdk.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        [replica] = set(engine_children()) - others
        answers: list[Any] = []
        asking = threading.Thread(target=lambda: answers.append(sdk.chat.completions.with_raw_response.create(
            model="smollm2", messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            max_tokens=400, temperature=0)))
        asking.start()
        time.sleep(1.0)  # admitted at once and generating (400 tokens take several seconds here)
        os.kill(replica, signal.SIGSTOP)
        try:
            asking.join(DEADLINE_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(replica, signal.SIGCONT)
        assert not asking.is_alive(), "the request waited on the hung replica"
        [raw] = answers
        # Nothing had been sent to the client yet: the router took the fallback.
        assert raw.headers["x-modelgate-provider"] == "openai"
        assert raw.parse().choices[0].message.content
        wait_until(lambda: replica not in set(engine_children()), DEADLINE_S, "the hung replica killed")


def test_the_health_report_shows_each_local_replica(smollm2: str) -> None:
    others = set(engine_children())
    config = {**local_config(smollm2, replicas=2), "master_key": "mk-local-health"}
    with gateway_in_thread(config) as gateway:
        sdk = openai.OpenAI(base_url=gateway.v1, api_key="mk-local-health", max_retries=0)
        sdk.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2)

        def engine() -> dict[str, Any]:
            report = httpx.get(f"{gateway.base_url}/health/deployments", timeout=10,
                               headers={"authorization": "Bearer mk-local-health"}).json()
            [deployment] = report["deployments"]
            [target] = deployment["targets"]
            return dict(target["engine"])

        wait_until(lambda: all(r["state"] == "ready" for r in engine()["replicas"]), DEADLINE_S, "both replicas")
        found = engine()
        assert [r["index"] for r in found["replicas"]] == [0, 1]
        assert {r["pid"] for r in found["replicas"]} == set(engine_children()) - others
        assert all(r["running"] == 0 for r in found["replicas"])
        assert (found["waiting"], found["restarts"], found["failure"]) == (0, 0, None)


def test_metrics_show_the_replicas_their_work_and_their_queue(gateway: RunningGateway) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client(gateway).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=2)
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=30).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    model = next(labels for name, labels in samples if name == "modelgate_local_queue_length")
    assert dict(model)["provider"] == "local"
    states = {dict(labels)["state"]: value for (name, labels), value in samples.items()
              if name == "modelgate_local_replicas"}
    assert states == {"starting": 0.0, "ready": 1.0, "dead": 0.0, "stopped": 0.0}
    assert samples[("modelgate_local_queue_length", model)] == 0.0
    assert samples[("modelgate_local_requests_running", model)] == 0.0
    overhead = [value for (name, labels), value in samples.items()
                if name == "modelgate_gateway_overhead_seconds_count" and dict(labels)["deployment"] == "smollm2"]
    assert overhead and overhead[0] >= 1
