"""One chat completion on a llama.cpp model: the request read, the prompt built with the model's
own chat template, tokens generated with exact counts.

Runs inside the engine's child process (``llamacpp_worker.py``), one ``Llama`` per request at a
time, in a thread: llama.cpp releases the GIL while it computes. The prompt is formatted as
llama-cpp-python's own chat handler formats it (the Jinja template of the GGUF's
``tokenizer.chat_template``), but the generation loop is ours, so that the usage is the count of
tokens the tokenizer made of the prompt and the count the model sampled, streamed or not.

``response_format`` json_object decodes under llama.cpp's JSON grammar; json_schema under the
grammar llama-cpp-python's converter makes of the schema, once ``engines/json_schema.py`` has
found in it nothing the converter would pass over (a 400 naming the keyword otherwise).
"""

from __future__ import annotations

import codecs
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llama_cpp import Llama, llama_model_get_vocab, llama_vocab_is_eog
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar, json_schema_to_gbnf

from modelgate.engines.json_schema import UnsupportedSchema, grammar_schema

ROLES = ("system", "developer", "user", "assistant")
MAX_STOPS = 4  # as OpenAI


class BadRequest(ValueError):
    """A request this engine cannot run; ``code`` and ``param`` as OpenAI names them."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


@dataclass(slots=True)
class ChatJob:
    """A chat completion request, read and checked before a model is taken for it."""

    messages: list[dict[str, str]]
    max_tokens: int | None
    stream: bool
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    grammar: LlamaGrammar | None = None  # what response_format holds the output to
    cancelled: threading.Event = field(default_factory=threading.Event)


def read_job(body: Any) -> ChatJob:
    """The job of an OpenAI chat completions body; ``BadRequest`` for what this engine cannot run."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if body.get("tools") or body.get("functions"):
        raise BadRequest("this local model's engine does not run tools yet; send the request without tools, "
                         "or use a deployment of a model served with tool support", param="tools",
                         code="unsupported_parameter")
    if body.get("n") not in (None, 1):
        raise BadRequest("n must be 1 for a local model", param="n")
    messages = [_message(m, i) for i, m in enumerate(_list(body.get("messages"), "messages"))]
    if not messages:
        raise BadRequest("messages must not be empty", param="messages")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise BadRequest("max_tokens must be a positive whole number", param="max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise BadRequest(f"stop must be up to {MAX_STOPS} non-empty strings", param="stop")
    job = ChatJob(messages=messages, max_tokens=limit, stream=body.get("stream") is True, stop=stops,
                  grammar=_grammar(body.get("response_format")))
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise BadRequest(f"{name} must be a number", param=name)
            setattr(job, name, float(value))
    seed = body.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise BadRequest("seed must be a whole number", param="seed")
        job.seed = seed
    return job


def _grammar(fmt: Any) -> LlamaGrammar | None:
    """The grammar of ``response_format``: JSON for json_object, the schema's for json_schema."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return _parsed(JSON_GBNF)
    if kind != "json_schema":
        raise BadRequest("response_format.type must be 'text', 'json_object' or 'json_schema'",
                         param="response_format")
    spec = fmt.get("json_schema")
    schema = spec.get("schema", {}) if isinstance(spec, dict) else None
    param = "response_format.json_schema.schema"
    try:
        readable = grammar_schema(schema)
    except UnsupportedSchema as error:
        raise BadRequest(f"response_format.json_schema: {error}", param=param, code="unsupported_schema") from None
    try:
        grammar = json_schema_to_gbnf(json.dumps(readable))
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise BadRequest(f"response_format.json_schema: a local model's grammar cannot be made of this schema "
                         f"({type(error).__name__}: {error})", param=param, code="unsupported_schema") from None
    return _parsed(grammar)


def _parsed(grammar: str) -> LlamaGrammar:
    try:
        return LlamaGrammar.from_string(grammar, verbose=False)
    except ValueError as error:
        raise BadRequest(f"response_format: the grammar made of it does not parse: {error}",
                         param="response_format", code="unsupported_schema") from None


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"{param} must be a list", param=param)
    return value


def _message(message: Any, index: int) -> dict[str, str]:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise BadRequest(f"{param} must be an object", param=param)
    role = message.get("role")
    if role not in ROLES:
        raise BadRequest(f"{param}.role {role!r} is not one this engine runs ({', '.join(ROLES)})",
                         param=f"{param}.role")
    content = message.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for part in _list(content, f"{param}.content"):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadRequest(f"{param}.content: this local model reads text only", param=f"{param}.content")
            texts.append(part["text"])
        text = "\n\n".join(texts)
    # Chat templates know system, not developer (OpenAI's newer name for it).
    return {"role": "system" if role == "developer" else role, "content": text}


@dataclass(slots=True)
class Outcome:
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int


class ChatModel:
    """A loaded model and its chat template: formats prompts and runs one job at a time."""

    def __init__(self, llm: Llama) -> None:
        self.llm = llm
        self.vocab = llama_model_get_vocab(llm.model)
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("the GGUF file has no chat template (tokenizer.chat_template); "
                             "it is not an instruct model this engine can chat with")
        eos = llm.token_eos()
        bos = llm.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def prompt_tokens(self, job: ChatJob) -> tuple[list[int], list[str]]:
        """The prompt's tokens and the stop strings (the request's and the template's)."""
        result = self.formatter(messages=job.messages)  # type: ignore[arg-type]
        tokens = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stops = list(job.stop)
        if result.stop:
            stops += [result.stop] if isinstance(result.stop, str) else [s for s in result.stop if s]
        return tokens, stops

    def run(self, job: ChatJob, emit: Callable[[str], None]) -> Outcome:
        """Generate the answer of ``job``, passing each piece of text to ``emit`` as it is final
        (held back while it could be the start of a stop string); the counts are exact."""
        llm = self.llm
        tokens, stops = self.prompt_tokens(job)
        n_ctx = llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise BadRequest(f"the prompt is {len(tokens)} tokens, more than this model's context window of "
                             f"{n_ctx} tokens leaves room to answer in; shorten it", param="messages",
                             code="context_length_exceeded")
        room = n_ctx - len(tokens)
        limit = min(job.max_tokens, room) if job.max_tokens else room
        llm.set_seed(job.seed if job.seed is not None else random.randrange(2**32))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        held = ""  # text that may be the start of a stop string
        produced = 0
        reason = "length"
        for token in llm.generate(tokens, temp=job.temperature, top_p=job.top_p,
                                  presence_penalty=job.presence_penalty,
                                  frequency_penalty=job.frequency_penalty, grammar=job.grammar):
            if job.cancelled.is_set():
                reason = "cancelled"
                break
            if llama_vocab_is_eog(self.vocab, token):
                reason = "stop"
                break
            produced += 1
            held += decoder.decode(llm.detokenize([token]))
            cut = _stop_at(held, stops)
            if cut is not None:
                if cut:
                    emit(held[:cut])
                return Outcome("stop", len(tokens), produced)
            keep = _stop_prefix(held, stops)
            if len(held) > keep:
                emit(held[:len(held) - keep])
                held = held[len(held) - keep:]
            if produced >= limit:
                break
        if reason != "cancelled":
            # What was held back as the start of a stop string that never came is part of the answer.
            rest = held + decoder.decode(b"", final=True)
            if rest:
                emit(rest)
        return Outcome(reason, len(tokens), produced)


def _stop_at(text: str, stops: list[str]) -> int | None:
    """Where the first stop string in ``text`` begins, or None."""
    found = [at for at in (text.find(s) for s in stops) if at >= 0]
    return min(found) if found else None


def _stop_prefix(text: str, stops: list[str]) -> int:
    """The length of the longest end of ``text`` that begins a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
