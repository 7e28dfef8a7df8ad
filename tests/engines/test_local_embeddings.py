"""A gateway with a ``local`` deployment of a real embedding model (all-MiniLM-L6-v2, converted from
its sentence-transformers folder by ``modelgate models add``) under llama.cpp, driven over real
sockets by the openai SDK.

The served vectors are compared with the model computed here in numpy from the folder's own weights
and Hugging Face's own tokenizer (``tests/bert_reference.py``): each must point the same way
(cosine similarity above 0.99) and the usage must be the exact count of tokens the tokenizer makes.
"""

from __future__ import annotations

import base64
import sqlite3
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from tests.bert_reference import SentenceBert, cosine
from tests.support import RunningGateway, gateway_in_thread

TEXTS = ["The cat sits on the mat.", "A kitten is resting on a rug.",
         "Quarterly revenue grew 12% in Zürich — a naïve café résumé.", "hello"]


@pytest.fixture(scope="module")
def reference(minilm_folder: Path) -> SentenceBert:
    return SentenceBert(minilm_folder)


@pytest.fixture(scope="module")
def served(minilm_store: Path, smollm2: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[RunningGateway, Path]]:
    folder = tmp_path_factory.mktemp("embeddings")
    database = folder / "modelgate.db"
    config = {"database_url": f"sqlite:///{database}", "journal_dir": str(folder / "journal"),
              "providers": {"local": {"type": "local", "models_dir": str(minilm_store)}},
              "deployments": [
                  {"name": "minilm", "provider": "local", "model": "minilm", "timeout": 60, "max_concurrency": 2},
                  {"name": "smollm2", "provider": "local", "model": smollm2, "context_window": 512, "timeout": 60}]}
    with gateway_in_thread(config) as gateway:
        yield gateway, database


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0)


def test_a_batch_is_the_models_own_vectors_with_the_exact_token_count(
        served: tuple[RunningGateway, Path], reference: SentenceBert) -> None:
    gateway, database = served
    raw = client(gateway).embeddings.with_raw_response.create(model="minilm", input=TEXTS, encoding_format="float")
    answer = raw.parse()
    assert [item.index for item in answer.data] == [0, 1, 2, 3]
    for text, item in zip(TEXTS, answer.data, strict=True):
        assert len(item.embedding) == 384
        assert np.linalg.norm(item.embedding) == pytest.approx(1.0, abs=1e-4)  # modules.json: Normalize
        assert cosine(item.embedding, reference.embed(text)) > 0.99, text
    tokens = sum(len(reference.ids(text)) for text in TEXTS)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == tokens
    assert answer.model == "minilm"
    assert raw.headers["x-modelgate-deployment"] == "minilm" and raw.headers["x-modelgate-provider"] == "local"
    # Metered as every request is: the record carries the engine's count.
    assert usage(database, raw.headers["x-request-id"]) == ("embeddings", 200, tokens)


def test_base64_is_the_same_vectors_and_the_sdk_default(served: tuple[RunningGateway, Path]) -> None:
    gateway, _ = served
    sdk = client(gateway)
    floats = sdk.embeddings.create(model="minilm", input="a string alone", encoding_format="float")
    encoded = sdk.embeddings.create(model="minilm", input="a string alone", encoding_format="base64")
    raw = base64.b64decode(str(encoded.data[0].embedding))
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(floats.data[0].embedding, abs=1e-6)
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded = sdk.embeddings.create(model="minilm", input="a string alone")
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_token_ids_are_embedded_as_given(served: tuple[RunningGateway, Path], reference: SentenceBert) -> None:
    gateway, _ = served
    ids = [reference.ids(text) for text in TEXTS[:2]]
    sdk = client(gateway)
    by_ids = sdk.embeddings.create(model="minilm", input=ids, encoding_format="float")
    by_text = sdk.embeddings.create(model="minilm", input=TEXTS[:2], encoding_format="float")
    for a, b in zip(by_ids.data, by_text.data, strict=True):
        assert cosine(a.embedding, b.embedding) > 0.9999
    assert by_ids.usage.prompt_tokens == sum(map(len, ids)) == by_text.usage.prompt_tokens
    # One array of ids is one input; run alone rather than in a batch, it differs only in rounding.
    one = sdk.embeddings.create(model="minilm", input=ids[0], encoding_format="float")
    assert len(one.data) == 1 and cosine(one.data[0].embedding, by_ids.data[0].embedding) > 0.9999


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(served: tuple[RunningGateway, Path]) -> None:
    gateway, _ = served
    texts = ["How do I reset my password?", "I forgot my password and need to change it.",
             "The volcano erupted for three days."]
    vectors = [d.embedding for d in client(gateway).embeddings.create(model="minilm", input=texts).data]
    paraphrase, unrelated = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    assert paraphrase > 0.6 and unrelated < 0.2 and paraphrase > unrelated + 0.4


def test_requests_at_once_each_get_their_own_vectors(served: tuple[RunningGateway, Path]) -> None:
    gateway, _ = served
    sdk = client(gateway)
    alone = {text: sdk.embeddings.create(model="minilm", input=text, encoding_format="float").data[0].embedding
             for text in TEXTS}
    # max_concurrency 2: two run at once, each on a model context of its own; the rest wait their turn.
    with ThreadPoolExecutor(max_workers=len(TEXTS) * 2) as pool:
        answers = list(pool.map(lambda text: (text, sdk.embeddings.create(
            model="minilm", input=text, encoding_format="float").data[0].embedding), TEXTS * 2))
    for text, vector in answers:
        assert cosine(vector, alone[text]) > 0.9999, text


def test_an_input_past_the_context_is_refused_by_index_never_cut(served: tuple[RunningGateway, Path],
                                                                   reference: SentenceBert) -> None:
    gateway, database = served
    long = "word " * 300
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).embeddings.create(model="minilm", input=["short", long])
    error = raised.value
    assert error.code == "context_length_exceeded"
    assert error.param == "input[1]"
    assert f"input[1] is {len(reference.ids(long))} tokens" in error.message
    assert "context of 256 tokens" in error.message  # sentence_bert_config.json's max_seq_length
    assert usage(database, error.response.headers["x-request-id"])[:2] == ("embeddings", 400)


def test_the_400s_name_what_to_send_instead(served: tuple[RunningGateway, Path]) -> None:
    gateway, _ = served
    sdk = client(gateway)
    with pytest.raises(openai.BadRequestError) as dimensions:
        sdk.embeddings.create(model="minilm", input="hi", dimensions=128)
    assert dimensions.value.param == "dimensions" and "384 dimensions" in dimensions.value.message
    with pytest.raises(openai.BadRequestError) as token:
        sdk.embeddings.create(model="minilm", input=[[101, 30522, 102]])
    assert token.value.param == "input" and "token id 30522" in token.value.message
    with pytest.raises(openai.BadRequestError) as chat:
        sdk.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])
    assert chat.value.code == "model_not_supported" and "is an embedding model" in chat.value.message
    with pytest.raises(openai.BadRequestError) as embed:
        sdk.embeddings.create(model="smollm2", input="hi")
    assert embed.value.code == "model_not_supported" and "is a chat model" in embed.value.message


def usage(database: Path, request_id: str) -> tuple[str, int, int]:
    """The route, status and input tokens of a request's usage record, once the recorder wrote it."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(database) as connection:
            row: Any = connection.execute("SELECT route, status, input_tokens FROM usage WHERE request_id = ?",
                                          (request_id,)).fetchone()
        if row is not None:
            return row[0], row[1], row[2]
        assert time.monotonic() < deadline, f"no usage record of {request_id}"
        time.sleep(0.05)
