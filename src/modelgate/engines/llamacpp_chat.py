"""One chat completion on a llama.cpp model: the prompt built with the model's own chat template,
tokens generated with exact counts, tool calls read from what the model wrote.

Runs inside a ``ChatService`` (``llamacpp_service.py``: the llamacpp engine's child process, or a
replica of the ray engine), one ``Llama`` per request at a time, in a thread: llama.cpp releases
the GIL while it computes. The prompt is formatted as llama-cpp-python's own chat handler formats
it (the Jinja template of the GGUF's ``tokenizer.chat_template``), but the generation loop is
ours, so that the usage is the count of tokens the tokenizer made of the prompt and the count the
model sampled, streamed or not. The request itself is read and checked by ``chat_request.py``
before a model is taken for it.

**Tools.** A conversation with tools (offered, called or answered) is rendered by the template the
GGUF keeps for tool use (``tokenizer.chat_template.tool_use``) where it has one, else by its own.
Whether that template renders tools is tried when the model loads: it is rendered with one tool,
whose name must then be in the prompt; a model whose template does not is refused tools with a
400. The calls are read from the output in the format the template writes them
(``catalog/chat_template.py``, ``tool_calls.py``). With ``tool_choice`` required or a named
function, decoding is held to a grammar of a valid call of the allowed tools, in that format, with
arguments of the tool's schema; with ``auto`` the model writes what it will and what is not a
valid call is content; with ``none`` the template is not shown the tools and nothing is read as a
call.
"""

from __future__ import annotations

import codecs
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from llama_cpp import Llama, llama_model_get_vocab, llama_vocab_is_eog
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import LlamaGrammar

from modelgate.catalog.chat_template import TOOL_USE_KEY, ToolFormat, tool_call_format
from modelgate.engines.chat_request import BadRequest, ChatJob, ToolUse, parsed_grammar, schema_gbnf
from modelgate.engines.tool_calls import CallReader, Piece, call_schema, marker_start, template_call_id

# The tool a template is tried with when the model loads: a template that renders tools shows its name.
PROBE_NAME = "modelgate_probe_tool"
PROBE_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": PROBE_NAME, "description": "Looks a word up.",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}}
CALL_RULE = "tool-call"  # the grammar's rule for one call; the converter never makes a rule of this name


@dataclass(slots=True)
class Outcome:
    finish_reason: str  # "stop" | "length" | "tool_calls" | "cancelled"
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class ToolTemplate:
    """The template that renders a conversation with tools, and the format it writes calls in."""

    formatter: Jinja2ChatFormatter
    format: ToolFormat


class ChatModel:
    """A loaded model and its chat template: formats prompts and runs one job at a time."""

    def __init__(self, llm: Llama) -> None:
        self.llm = llm
        self.vocab = llama_model_get_vocab(llm.model)
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("the GGUF file has no chat template (tokenizer.chat_template); "
                             "it is not an instruct model this engine can chat with")
        self.formatter = self._formatter(template)
        self.tool_template = self._tool_template(llm.metadata.get(TOOL_USE_KEY), template)

    def _formatter(self, template: str) -> Jinja2ChatFormatter:
        eos = self.llm.token_eos()
        bos = self.llm.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=self.llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self.llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def _tool_template(self, *templates: str | None) -> ToolTemplate | None:
        """The first of ``templates`` that renders tools, tried with ``PROBE_TOOL``."""
        for template in templates:
            if not template:
                continue
            formatter = self._formatter(template)
            try:
                shown = formatter(messages=[{"role": "user", "content": "?"}],
                                  tools=[PROBE_TOOL]).prompt  # type: ignore[list-item]
            except (jinja2.TemplateError, ValueError, TypeError, LookupError, AttributeError):
                continue  # a template that cannot render a tool does not support tools
            if PROBE_NAME in shown:
                return ToolTemplate(formatter, tool_call_format(template))
        return None

    def prompt(self, job: ChatJob) -> tuple[str, list[str], bool]:
        """The prompt's text, the stop strings (the request's and the template's), and whether the
        template wrote the BOS token itself."""
        formatter = self.formatter
        messages = job.messages
        extra: dict[str, Any] = {}
        if job.uses_tools:
            if self.tool_template is None:
                raise BadRequest("this local model has no tool support: its chat template "
                                 "(tokenizer.chat_template) renders no tools; send the request without tools, "
                                 "or use a deployment of a model whose template has them", param="tools",
                                 code="tools_not_supported")
            formatter = self.tool_template.formatter
            messages = [_for_template(m, self.tool_template.format) for m in messages]
            if job.tools is not None and job.tools.choice != "none":
                extra["tools"] = job.tools.tools
        try:
            result = formatter(messages=messages, **extra)  # type: ignore[arg-type]
        except (jinja2.TemplateError, ValueError) as error:
            raise BadRequest(f"the model's chat template cannot render these messages: {error}", param="messages",
                             code="template_error") from None
        stops = list(job.stop)
        if result.stop:
            stops += [result.stop] if isinstance(result.stop, str) else [s for s in result.stop if s]
        return result.prompt, stops, bool(result.added_special)

    def prompt_tokens(self, job: ChatJob) -> tuple[list[int], list[str]]:
        """The prompt's tokens and the stop strings."""
        text, stops, added_special = self.prompt(job)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=not added_special, special=True), stops

    def call_grammar(self, tools: ToolUse) -> LlamaGrammar:
        """The grammar of an answer that is one valid call (or several, where parallel calls are
        allowed) of the allowed tools, written in the model's format."""
        assert self.tool_template is not None
        fmt = self.tool_template.format
        rules = schema_gbnf(call_schema(tools.allowed, fmt), "tools", "tools").splitlines()
        rules = [f"{CALL_RULE} ::= {line[len('root ::= '):]}" if line.startswith("root ::= ") else line
                 for line in rules]
        call = CALL_RULE
        if fmt == "hermes":
            one = f'"<tool_call>\\n" {call} "\\n</tool_call>"'
            root = f'{one} ("\\n" {one})*' if tools.parallel else one
        elif fmt == "mistral":
            root = f'"[TOOL_CALLS][" {call} ("," " "? {call})* "]"' if tools.parallel else \
                f'"[TOOL_CALLS][" {call} "]"'
        else:  # one JSON object: the whole answer is the call
            root = call
        return parsed_grammar("\n".join([f"root ::= {root}", *rules]), "tools")

    def run(self, job: ChatJob, emit: Callable[[Piece], None]) -> Outcome:
        """Generate the answer of ``job``, passing each piece of text to ``emit`` as it is final
        (held back while it could be the start of a stop string or of a tool call), and each tool
        call once it is complete; the counts are exact."""
        tokens, stops = self.prompt_tokens(job)
        n_ctx = self.llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise BadRequest(f"the prompt is {len(tokens)} tokens, more than this model's context window of "
                             f"{n_ctx} tokens leaves room to answer in; shorten it", param="messages",
                             code="context_length_exceeded")
        room = n_ctx - len(tokens)
        limit = min(job.max_tokens, room) if job.max_tokens else room
        tools = job.tools
        if tools is None or tools.choice == "none":
            reason, produced = self._generate(job, tokens, stops, limit, job.grammar, emit, special=False)
            return Outcome(reason, len(tokens), produced)
        assert self.tool_template is not None  # prompt() refuses tools to a model without
        grammar = self.call_grammar(tools) if tools.constrained else job.grammar
        reader = CallReader(self.tool_template.format, tools.names, single=not tools.parallel)

        def read(text: str) -> None:
            for piece in reader.feed(text):
                emit(piece)

        # Special tokens are text here: some formats mark a call with one ([TOOL_CALLS], <|python_tag|>).
        reason, produced = self._generate(job, tokens, stops, limit, grammar, read, special=True)
        if reason != "cancelled":
            for piece in reader.finish():
                emit(piece)
            if reader.calls and reason == "stop":
                reason = "tool_calls"
        return Outcome(reason, len(tokens), produced)

    def _generate(self, job: ChatJob, tokens: list[int], stops: list[str], limit: int,
                  grammar: LlamaGrammar | None, emit: Callable[[str], None], *, special: bool) -> tuple[str, int]:
        """Sample up to ``limit`` tokens after ``tokens``, passing on the text; why it ended
        ("stop", "length" or "cancelled") and how many tokens it sampled."""
        llm = self.llm
        llm.set_seed(job.seed if job.seed is not None else random.randrange(2**32))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        held = ""  # text that may be the start of a stop string
        produced = 0
        reason = "length"
        for token in llm.generate(tokens, temp=job.temperature, top_p=job.top_p,
                                  presence_penalty=job.presence_penalty,
                                  frequency_penalty=job.frequency_penalty, grammar=grammar):
            if job.cancelled.is_set():
                reason = "cancelled"
                break
            if llama_vocab_is_eog(self.vocab, token):
                reason = "stop"
                break
            produced += 1
            held += decoder.decode(llm.detokenize([token], special=special))
            cut = _stop_at(held, stops)
            if cut is not None:
                if cut:
                    emit(held[:cut])
                return "stop", produced
            keep = marker_start(held, stops)
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
        return reason, produced


def _for_template(message: dict[str, Any], fmt: ToolFormat) -> dict[str, Any]:
    """``message`` with its tool call ids as the template of ``fmt`` accepts them."""
    if fmt != "mistral":
        return message
    out = dict(message)
    if "tool_call_id" in out:
        out["tool_call_id"] = template_call_id(out["tool_call_id"], fmt)
    if "tool_calls" in out:
        out["tool_calls"] = [{**call, "id": template_call_id(call["id"], fmt)} for call in out["tool_calls"]]
    return out


def _stop_at(text: str, stops: list[str]) -> int | None:
    """Where the first stop string in ``text`` begins, or None."""
    found = [at for at in (text.find(s) for s in stops) if at >= 0]
    return min(found) if found else None
