"""An OpenAI embeddings body, read into the job a llama.cpp embedding engine runs and checked
before a model is taken for it: every problem is a ``BadRequest`` (a 400 naming the field).

``input`` is a string, a list of strings, a list of token ids or a list of lists of token ids, as
OpenAI takes it. Token ids go to the model as they are: the engine adds no special token to them
(a BERT model's [CLS] and [SEP] are the client's to send), while a text is tokenized as the model's
tokenizer does, special tokens and all. ``encoding_format`` is float or base64 (little-endian
float32, as OpenAI's). ``dimensions`` is checked against the model by the engine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from modelgate.engines.chat_request import BadRequest

MAX_INPUTS = 2048  # as OpenAI


@dataclass(slots=True)
class EmbeddingJob:
    """An embeddings request, read and checked before a model is taken for it."""

    inputs: list[str | list[int]]
    encoding: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


def read_embedding_job(body: Any) -> EmbeddingJob:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    inputs = _inputs(body.get("input"))
    encoding: Literal["float", "base64"]
    match body.get("encoding_format") or "float":
        case "float":
            encoding = "float"
        case "base64":
            encoding = "base64"
        case _:
            raise BadRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise BadRequest("dimensions must be a whole number of at least 1", param="dimensions")
    return EmbeddingJob(inputs=inputs, encoding=encoding, dimensions=dimensions)


def _inputs(raw: Any) -> list[str | list[int]]:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        raise BadRequest("input is required: a string, an array of strings, or token arrays", param="input")
    if all(_token(x) for x in raw):
        return [list(raw)]
    if len(raw) > MAX_INPUTS:
        raise BadRequest(f"input has {len(raw)} items; send at most {MAX_INPUTS} in one request", param="input")
    inputs: list[str | list[int]] = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            inputs.append(item)
        elif isinstance(item, list) and item and all(_token(x) for x in item):
            inputs.append(list(item))
        else:
            raise BadRequest(f"input[{index}] is neither a string nor a non-empty array of token ids",
                             param=f"input[{index}]")
    return inputs


def _token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
