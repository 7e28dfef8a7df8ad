"""Tool calls in a local model's output: found as it is generated, and the JSON Schema of a valid call.

A model writes its calls in the format its chat template shows it (``catalog/chat_template.py``
names the format). ``CallReader`` reads the generated text as it comes, passes on as content
what cannot be part of a call, holds what may be, and gives each call once it is complete:

    hermes    text <tool_call>{"name": ..., "arguments": {...}}</tool_call> ...   (anywhere in the answer)
    mistral   text [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]         (to the end of the answer)
              or [TOOL_CALLS]name[ARGS]{...}, as Mistral's newer templates write it
    llama3    {"name": ..., "parameters": {...}}; ...  at the start, or after <|python_tag|>
    json      {"name": ..., "arguments": {...}}       at the start of the answer

A call counts only if it is a JSON object naming one of the request's tools, with arguments that
are a JSON object (or none, read as ``{}``). Anything else the model wrote where a call was
expected (broken JSON, a tool it was not given) is passed on as content, exactly as written: a
client never gets a call whose ``arguments`` do not parse. The arguments are given as the JSON
text of the object the model wrote, written again (so a raw newline inside one of its strings,
which a grammar's string rule lets through, becomes ``\\n``).

``call_schema`` is the JSON Schema of one valid call of the allowed tools, which the engine turns
into a grammar for ``tool_choice`` required or named (``llamacpp_chat.py``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelgate.catalog.chat_template import ToolFormat

ARGUMENT_KEYS = ("arguments", "parameters")
# The arguments of a tool that declares none: an object, as OpenAI's always are.
NO_PARAMETERS: dict[str, Any] = {"type": "object"}
MISTRAL_ID_LENGTH = 9  # Mistral's templates refuse any other length of tool call id
_ALNUM = string.ascii_letters + string.digits
_DECODER = json.JSONDecoder(strict=False)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the JSON text of an object


@dataclass(frozen=True, slots=True)
class Syntax:
    """Where calls are in a format: after one of ``opens`` (up to ``close``, or to the end of the
    answer), or the whole answer when it starts as JSON and ``bare`` is set."""

    opens: tuple[str, ...]
    close: str | None
    bare: bool
    argument_key: str  # what the format calls the arguments when the grammar writes a call


SYNTAX: dict[ToolFormat, Syntax] = {
    "hermes": Syntax(("<tool_call>",), "</tool_call>", bare=False, argument_key="arguments"),
    "mistral": Syntax(("[TOOL_CALLS]",), None, bare=False, argument_key="arguments"),
    "llama3": Syntax(("<|python_tag|>",), None, bare=True, argument_key="parameters"),
    "json": Syntax((), None, bare=True, argument_key="arguments"),
}


def new_call_id(fmt: ToolFormat) -> str:
    """An id for a call the model wrote: OpenAI's shape, or what Mistral's templates take back."""
    if fmt == "mistral":
        return "".join(secrets.choice(_ALNUM) for _ in range(MISTRAL_ID_LENGTH))
    return f"call_{secrets.token_hex(12)}"


def template_call_id(call_id: str, fmt: ToolFormat) -> str:
    """``call_id`` as the template may show it: for Mistral's, nine letters and digits, the same
    for an assistant's call and the tool message answering it."""
    if fmt != "mistral" or (len(call_id) == MISTRAL_ID_LENGTH and call_id.isalnum()):
        return call_id
    digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(MISTRAL_ID_LENGTH):
        digest, rest = divmod(digest, len(_ALNUM))
        chars.append(_ALNUM[rest])
    return "".join(chars)


Piece = str | ToolCall


class CallReader:
    """The text of one answer, fed as it is generated, as content and tool calls.

    ``names`` are the tools the request offers; ``single``: keep the first call only
    (``parallel_tool_calls: false``).
    """

    def __init__(self, fmt: ToolFormat, names: set[str], *, single: bool = False) -> None:
        self.fmt = fmt
        self.syntax = SYNTAX[fmt]
        self.names = names
        self.single = single
        self.calls = 0
        self._held = ""  # text not yet passed on: a marker's beginning, or a call being written
        self._in_call = False
        self._opened = ""  # the marker that began the call being written
        self._started = False  # whether anything but whitespace has come (for a bare JSON call)
        self._space = ""  # whitespace held until content follows (none before or between calls)

    def feed(self, text: str) -> list[Piece]:
        """The content and calls that ``text``, after what came before, makes certain."""
        self._held += text
        out: list[Piece] = []
        while True:
            if self._in_call:
                close = self.syntax.close
                end = self._held.find(close) if close else -1
                if end < 0:
                    return out
                body, self._held = self._held[:end], self._held[end + len(close or ""):]
                self._in_call = False
                self._take(out, body, self._opened + body + (close or ""))
                continue
            if not self._started:
                stripped = self._held.lstrip()
                if not stripped:
                    return out
                self._started = True
                if self.syntax.bare and stripped[0] in "{[":
                    self._open("", stripped)
                    continue
            at, marker = self._marker()
            if marker is None:
                keep = marker_start(self._held, self.syntax.opens)
                self._content(out, self._held[:len(self._held) - keep])
                self._held = self._held[len(self._held) - keep:]
                return out
            self._content(out, self._held[:at])
            self._open(marker, self._held[at + len(marker):])

    def finish(self) -> list[Piece]:
        """What is left at the end of the answer: a call written to the end, or held content."""
        out: list[Piece] = []
        if self._in_call:
            self._in_call = False
            self._take(out, self._held, self._opened + self._held)
        else:
            self._content(out, self._held)
        self._held = ""
        if self._space and not self.calls:
            out.append(self._space)
        self._space = ""
        return out

    # -- inside ------------------------------------------------------------------------------

    def _marker(self) -> tuple[int, str | None]:
        found = [(self._held.find(m), m) for m in self.syntax.opens if m in self._held]
        return min(found) if found else (-1, None)

    def _open(self, marker: str, rest: str) -> None:
        self._in_call = True
        self._opened = marker
        self._held = rest

    def _content(self, out: list[Piece], text: str) -> None:
        """Pass on ``text`` as content but for its trailing whitespace, held until more content
        comes: whitespace just before a call (or between calls) is no content."""
        body = text.rstrip()
        if body:
            out.append(self._space + body)
            self._space = ""
        self._space += text[len(body):]

    def _take(self, out: list[Piece], body: str, raw: str) -> None:
        """The calls ``body`` (what followed a marker) holds; where it holds none, ``raw`` (the
        marker and all) is content."""
        calls = parse_calls(body, self.fmt, self.names)
        if calls is None:
            self._content(out, raw)
            return
        self._space = ""
        for call in calls:
            if self.single and self.calls:
                return
            self.calls += 1
            out.append(call)


def parse_calls(body: str, fmt: ToolFormat, names: set[str]) -> list[ToolCall] | None:
    """The calls in ``body``, the text after a format's marker (or a whole bare answer); None
    where it is not one or more valid calls of the tools ``names``."""
    text = body.strip()
    if fmt == "mistral" and not text.startswith(("[", "{")):
        return _mistral_args(text, names)
    values: list[Any] = []
    at = 0
    while at < len(text):
        try:
            value, at = _DECODER.raw_decode(text, at)
        except ValueError:
            return None
        values.extend(value if isinstance(value, list) else [value])
        while at < len(text) and text[at] in " \t\r\n;,":  # Llama 3.1 separates calls with ';'
            at += 1
    calls = [_call(value, fmt, names) for value in values]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _mistral_args(text: str, names: set[str]) -> list[ToolCall] | None:
    """``name[ARGS]{...}`` calls, each after its own ``[TOOL_CALLS]`` but the first."""
    calls = []
    for part in text.split("[TOOL_CALLS]"):
        name, marker, rest = part.strip().partition("[ARGS]")
        if not marker:
            return None
        try:
            arguments, end = _DECODER.raw_decode(rest.strip())
        except ValueError:
            return None
        call = _call({"name": name.strip(), "arguments": arguments}, "mistral", names)
        if call is None or rest.strip()[end:].strip():
            return None
        calls.append(call)
    return calls


def _call(value: Any, fmt: ToolFormat, names: set[str]) -> ToolCall | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or value["name"] not in names:
        return None
    arguments: Any = next((value[k] for k in ARGUMENT_KEYS if k in value), {})
    if isinstance(arguments, str):  # some models write the arguments as JSON text
        try:
            arguments = _DECODER.decode(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(new_call_id(fmt), value["name"], json.dumps(arguments, ensure_ascii=False))


def marker_start(text: str, markers: Sequence[str]) -> int:
    """The length of the longest end of ``text`` that begins one of ``markers``: text to hold back,
    as the rest of a marker may follow."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest


def call_schema(tools: dict[str, dict[str, Any]], fmt: ToolFormat) -> dict[str, Any]:
    """The JSON Schema of one call of any of ``tools`` (name → the schema of its arguments, as
    ``json_schema.grammar_schema`` gives it), with the keys the format writes.

    Each tool's arguments schema is kept in ``$defs`` (``t0``, ``t1``, ...) with its own
    definitions beside it under names that begin with its own (``t0-Item``), so that two tools'
    ``Item`` stay two, and each reference points where its target now is: through objects only,
    as llama-cpp-python's converter follows them."""
    key = SYNTAX[fmt].argument_key
    options: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for index, (name, parameters) in enumerate(tools.items()):
        defs[f"t{index}"] = _rebased(parameters, f"t{index}", defs)
        options.append({"type": "object", "properties": {"name": {"const": name}, key: {"$ref": f"#/$defs/t{index}"}},
                        "required": ["name", key], "additionalProperties": False})
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "$defs": defs}


def _rebased(parameters: dict[str, Any], home: str, defs: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` to be kept at ``$defs/<home>``: its own definitions moved into ``defs`` as
    ``<home>-<name>``, and its references rewritten to match."""
    moved = {container: parameters.get(container) for container in ("$defs", "definitions")}

    def ref(target: str) -> str:
        for container in moved:
            head = f"#/{container}/"
            if target.startswith(head):
                return f"#/$defs/{home}-{target[len(head):]}"
        return f"#/$defs/{home}{target[1:]}"

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        return {k: ref(v) if k == "$ref" and isinstance(v, str) else walk(v) for k, v in node.items()}

    for found in moved.values():
        if isinstance(found, dict):
            for name, sub in found.items():
                defs[f"{home}-{name}"] = walk(sub)
    rebased: dict[str, Any] = walk({k: v for k, v in parameters.items() if k not in moved})
    return rebased
