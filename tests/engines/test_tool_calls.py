"""Reading tool calls out of a model's text as it comes, in each format, and the schema of a valid
call: what is a call, what stays content, and that the answer is the same however the text is cut
into pieces."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from modelgate.catalog.chat_template import ToolFormat, renders_tools, tool_call_format
from modelgate.engines.tool_calls import CallReader, ToolCall, call_schema, template_call_id
from tests.engines.conftest import _missing

NAMES = {"get_weather", "get_time"}
WEATHER = '{"city": "Paris"}'


def read(fmt: ToolFormat, text: str, *, step: int = 0, single: bool = False) -> list[Any]:
    """What a reader makes of ``text``: fed whole, or ``step`` characters at a time; content pieces
    joined, calls as (name, arguments)."""
    reader = CallReader(fmt, NAMES, single=single)
    pieces: list[Any] = []
    for at in range(0, len(text), step or len(text) or 1):
        pieces += reader.feed(text[at:at + (step or len(text))])
    pieces += reader.finish()
    out: list[Any] = []
    for piece in pieces:
        if isinstance(piece, ToolCall):
            out.append((piece.name, json.loads(piece.arguments)))
        elif out and isinstance(out[-1], str):
            out[-1] += piece
        else:
            out.append(piece)
    return out


CASES: list[tuple[ToolFormat, str, list[Any]]] = [
    ("hermes", f'<tool_call>\n{{"name": "get_weather", "arguments": {WEATHER}}}\n</tool_call>',
     [("get_weather", {"city": "Paris"})]),
    ("hermes", f'Let me look.\n<tool_call>{{"name": "get_weather", "arguments": {WEATHER}}}</tool_call>\n'
               '<tool_call>{"name": "get_time", "arguments": {"timezone": "CET"}}</tool_call>\n',
     ["Let me look.", ("get_weather", {"city": "Paris"}), ("get_time", {"timezone": "CET"})]),
    # Written to the end without its closing tag (the model stopped there): still a whole call.
    ("hermes", f'<tool_call>{{"name": "get_weather", "arguments": {WEATHER}}}', [("get_weather", {"city": "Paris"})]),
    # Arguments as JSON text, and a call with none.
    ("hermes", '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>'
               '<tool_call>{"name": "get_time"}</tool_call>',
     [("get_weather", {"city": "Paris"}), ("get_time", {})]),
    ("mistral", f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {WEATHER}}}, '
                '{"name": "get_time", "arguments": {}}]',
     [("get_weather", {"city": "Paris"}), ("get_time", {})]),
    ("mistral", f"Sure. [TOOL_CALLS]get_weather[ARGS]{WEATHER}[TOOL_CALLS]get_time[ARGS]{{}}",
     ["Sure.", ("get_weather", {"city": "Paris"}), ("get_time", {})]),
    ("llama3", f'<|python_tag|>{{"name": "get_weather", "parameters": {WEATHER}}}',
     [("get_weather", {"city": "Paris"})]),
    ("llama3", f' {{"name": "get_weather", "parameters": {WEATHER}}}; {{"name": "get_time", "parameters": {{}}}}',
     [("get_weather", {"city": "Paris"}), ("get_time", {})]),
    ("json", f'{{"name": "get_weather", "arguments": {WEATHER}}}', [("get_weather", {"city": "Paris"})]),
    ("json", "Paris is sunny today.", ["Paris is sunny today."]),
]


@pytest.mark.parametrize(("fmt", "text", "expected"), CASES)
def test_calls_and_content_in_each_format_however_the_text_is_cut(fmt: ToolFormat, text: str,
                                                                  expected: list[Any]) -> None:
    for step in (0, 1, 2, 7):
        assert read(fmt, text, step=step) == expected, f"fed {step or 'whole'} at a time"


@pytest.mark.parametrize(("fmt", "text"), [
    ("hermes", '<tool_call>{"name": "get_weather", "arguments": {"city": "Par</tool_call>'),  # broken JSON
    ("hermes", '<tool_call>{"name": "get_weather", "arguments": {"city": '),  # cut short
    ("hermes", f'<tool_call>{{"name": "get_news", "arguments": {WEATHER}}}</tool_call>'),  # not a tool given
    ("hermes", '<tool_call>{"name": "get_weather", "arguments": [1, 2]}</tool_call>'),  # arguments not an object
    ("mistral", "[TOOL_CALLS]get_weather[ARGS]{oops}"),
    ("llama3", "{x} is how a set is written."),
    ("json", '{"name": "get_weather", "arguments": {"city": "Paris"}} and then some'),
])
def test_what_is_no_valid_call_is_content_as_written(fmt: ToolFormat, text: str) -> None:
    for step in (0, 1):
        assert read(fmt, text, step=step) == [text.lstrip()]


def test_a_raw_newline_in_a_string_is_escaped_in_the_arguments() -> None:
    [call] = CallReader("hermes", NAMES).feed('<tool_call>{"name": "get_weather", "arguments": {"city": "a\nb"}}'
                                              "</tool_call>")
    assert isinstance(call, ToolCall)
    assert call.arguments == '{"city": "a\\nb"}'


def test_single_keeps_the_first_call() -> None:
    text = ('<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
            '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    assert read("hermes", text, single=True) == [("get_weather", {})]


def test_a_marker_that_never_completes_is_content() -> None:
    assert read("hermes", "a <tool_ca", step=1) == ["a <tool_ca"]
    assert read("mistral", "[TOOL", step=1) == ["[TOOL"]


def test_call_ids_fit_the_template() -> None:
    fitted = template_call_id("call_abc123", "mistral")
    assert len(fitted) == 9 and fitted.isalnum()
    assert template_call_id("call_abc123", "mistral") == fitted  # the call and its result still match
    assert template_call_id("abcDEF123", "mistral") == "abcDEF123"
    assert template_call_id("call_abc123", "hermes") == "call_abc123"


ITEM_A: dict[str, Any] = {"$defs": {"Item": {"type": "string"}}, "type": "object",
                          "properties": {"item": {"$ref": "#/$defs/Item"}, "again": {"$ref": "#/properties/item"}},
                          "required": ["item"]}
ITEM_B: dict[str, Any] = {"definitions": {"Item": {"type": "integer"}}, "type": "object",
                          "properties": {"item": {"$ref": "#/definitions/Item"}}, "required": ["item"]}


def test_the_schema_of_a_call_keeps_each_tools_definitions_apart() -> None:
    schema = call_schema({"a": ITEM_A, "b": ITEM_B}, "hermes")
    valid = jsonschema.Draft202012Validator(schema)
    assert valid.is_valid({"name": "a", "arguments": {"item": "x", "again": "y"}})
    assert valid.is_valid({"name": "b", "arguments": {"item": 3}})
    assert not valid.is_valid({"name": "a", "arguments": {"item": 3}})
    assert not valid.is_valid({"name": "b", "arguments": {"item": "x"}})
    assert not valid.is_valid({"name": "c", "arguments": {"item": 3}})
    llama = call_schema({"a": ITEM_A}, "llama3")
    assert jsonschema.Draft202012Validator(llama).is_valid({"name": "a", "parameters": {"item": "x"}})


def test_the_schema_of_a_call_becomes_a_grammar() -> None:
    try:
        from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf
    except ImportError as error:
        _missing("llama-cpp-python", error)
    grammar = json_schema_to_gbnf(json.dumps(call_schema({"a": ITEM_A, "b": ITEM_B}, "hermes")))
    assert LlamaGrammar.from_string(grammar, verbose=False) is not None


@pytest.mark.parametrize(("template", "shows"), [
    ("{% if tools %}{{ tools | tojson }}{% endif %}{{ messages }}", True),
    ("{%- for tool in tools %}{{ tool.function.name }}{% endfor %}", True),
    ("You have no tools. {{ messages }}", False),  # in the text, not a variable
    ("{{ 'tools are not here' }}{{ messages }}", False),  # in a string
    ("{{ toolset }}", False),
])
def test_a_template_renders_tools_when_a_tag_uses_them(template: str, shows: bool) -> None:
    assert renders_tools(template) is shows


@pytest.mark.parametrize(("marker", "fmt"), [
    ("<tool_call>", "hermes"), ("[TOOL_CALLS]", "mistral"), ("<|python_tag|>", "llama3"), ("ipython", "llama3"),
    ("<function>", "json"),
])
def test_the_format_is_the_template_s(marker: str, fmt: str) -> None:
    assert tool_call_format("{% if tools %}{{ tools }}{% endif %}" + marker) == fmt
