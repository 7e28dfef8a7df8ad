"""A Llama folder converted by ``modelgate models add --gguf`` and served by name from the model store,
under the llamacpp engine and on a real local Ray cluster, driven over real sockets by the openai SDK.

The answers are compared with llama-cpp-python's own ``create_chat_completion`` on the converted
file in this process (greedy decoding makes both deterministic), and the prompt's token count with
Hugging Face's tokenizer on the folder's ChatML template rendered by hand: the count the gateway
meters is the model's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import openai
import pytest

from modelgate.catalog.model_store import ModelStore
from tests.engines.conftest import RayCluster
from tests.llama_reference import TinyLlama
from tests.support import RunningGateway, gateway_in_thread

QUESTION = "How are you today?"
MAX_TOKENS = 10


def config(store: Path, **engine: Any) -> dict[str, Any]:
    return {"providers": {"local": {"type": "local", "models_dir": str(store)}},
            "deployments": [{"name": "tiny", "provider": "local", "model": "tiny-llama", "timeout": 60, **engine}]}


@pytest.fixture(scope="module")
def want(llama_store: Path, llama_folder: Path) -> dict[str, Any]:
    """llama-cpp-python's greedy answer on the converted file, and the prompt's count by Hugging Face's tokenizer."""
    llm = llama_cpp.Llama(model_path=str(ModelStore(llama_store).resolve("tiny-llama").path), n_ctx=256,
                          verbose=False)
    try:
        answer: Any = llm.create_chat_completion(messages=[{"role": "user", "content": QUESTION}], temperature=0,
                                                 max_tokens=MAX_TOKENS)
    finally:
        llm.close()
    prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    assert answer["usage"]["prompt_tokens"] == len(TinyLlama(llama_folder).ids(prompt))
    return {"text": answer["choices"][0]["message"]["content"], "usage": answer["usage"],
            "finish_reason": answer["choices"][0]["finish_reason"]}


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0, timeout=120)


def assert_whole_and_streamed(gateway: RunningGateway, want: dict[str, Any]) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=MAX_TOKENS)
    answer = raw.parse()
    assert answer.choices[0].message.content == want["text"] and want["text"]
    assert answer.choices[0].finish_reason == want["finish_reason"]
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"])
    assert raw.headers["x-modelgate-provider"] == "local"

    stream = client(gateway).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=MAX_TOKENS,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want["text"]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"])


def test_the_converted_model_is_served_by_its_store_name_under_llamacpp(
        llama_store: Path, want: dict[str, Any]) -> None:
    with gateway_in_thread(config(llama_store)) as gateway:
        assert_whole_and_streamed(gateway, want)


@pytest.fixture(scope="module")
def ray_gateway(llama_store: Path, ray_cluster: RayCluster) -> Iterator[RunningGateway]:
    with gateway_in_thread(config(llama_store, engine="ray", ray={"address": ray_cluster.address})) as gateway:
        yield gateway


def test_the_converted_model_runs_on_the_ray_engine(ray_gateway: RunningGateway, want: dict[str, Any]) -> None:
    assert_whole_and_streamed(ray_gateway, want)
