"""The engine's side of tools, on the real model in this process: which template renders a
conversation with tools, what the prompt shows, and a valid call in each format a template can
ask for, written under the grammar of ``tool_choice: required`` and read back by the parser.

Each template here is a copy of SmolLM2-135M-Instruct's GGUF with another chat template in its
metadata, loaded by llama-cpp-python as the engine loads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from modelgate.catalog.chat_template import renders_tools
from modelgate.catalog.gguf import read_gguf
from tests.local_models import TOOLS_CHAT_TEMPLATE, with_metadata

WEATHER: dict[str, Any] = {
    "$defs": {"Unit": {"enum": ["celsius", "fahrenheit"]}},
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/Unit"}},
    "required": ["city", "unit"], "additionalProperties": False,
}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now.",
                                         "parameters": WEATHER}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
ANSWERED: list[Any] = [
    *QUESTION,
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_Paris0001x", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
    {"role": "tool", "tool_call_id": "call_Paris0001x", "content": "18 degrees, sunny"},
]

# Mistral's way: tools in [AVAILABLE_TOOLS], calls after [TOOL_CALLS], and call ids of nine letters
# and digits, which its templates insist on.
MISTRAL_TEMPLATE = """\
{%- if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}
{%- for m in messages %}
{%- if m.role == 'user' %}[INST]{{ m.content }}[/INST]
{%- elif m.role == 'tool' %}
{%- if m.tool_call_id | length != 9 %}{{ raise_exception('tool call ids must be 9 letters and digits') }}{% endif %}
[TOOL_RESULTS]{"call_id": "{{ m.tool_call_id }}", "content": {{ m.content | tojson }}}[/TOOL_RESULTS]
{%- elif m.tool_calls %}[TOOL_CALLS][
{%- for c in m.tool_calls %}
{%- if c.id | length != 9 %}{{ raise_exception('tool call ids must be 9 letters and digits') }}{% endif %}
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}, "id": "{{ c.id }}"}
{%- endfor %}]{{ eos_token }}
{%- else %}{{ m.content }}{{ eos_token }}{% endif %}
{%- endfor %}"""
# Llama 3.1's way: a JSON object of name and parameters; results come back as the ipython role.
LLAMA3_TEMPLATE = """\
{%- if tools %}<|im_start|>system
Answer a question you need a function for with {"name": function name, "parameters": its arguments}.
{% for t in tools %}{{ t | tojson }}
{% endfor %}<|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == 'tool' %}<|im_start|>ipython
{{ m.content }}<|im_end|>
{% elif m.tool_calls %}<|im_start|>assistant
<|python_tag|>{{ {"name": m.tool_calls[0].function.name, "parameters": m.tool_calls[0].function.arguments} | tojson }}\
<|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}<|im_start|>assistant
"""
# A template that shows tools in a way of its own, with no marker of a known format.
JSON_TEMPLATE = """\
{%- for m in messages %}<|im_start|>{{ m.role }}
{% if m.role == 'user' and tools %}Functions: {{ tools | tojson }}
{% endif %}{{ m.content }}<|im_end|>
{% endfor %}<|im_start|>assistant
"""
# Says "tools" in a tag, but cannot show them: only rendering it tells.
REFUSING_TEMPLATE = """\
{%- if tools %}{{ raise_exception('this model was not trained with tools') }}{% endif %}
{%- for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}<|im_start|>assistant
"""


@pytest.fixture(scope="module")
def load(smollm2: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """A ChatModel of a copy of SmolLM2's GGUF with the metadata given."""
    from llama_cpp import Llama

    from modelgate.engines.llamacpp_chat import ChatModel

    folder = tmp_path_factory.mktemp("templates")
    loaded: list[Any] = []

    def make(name: str, **metadata: str) -> Any:
        path = with_metadata(Path(smollm2), folder / f"{name}.gguf", metadata)
        llm = Llama(model_path=str(path), n_ctx=1024, verbose=False)
        loaded.append(llm)
        return ChatModel(llm)

    yield make
    for llm in loaded:
        llm.close()


def job(**body: Any) -> Any:
    from modelgate.engines.chat_request import read_job

    return read_job({"messages": QUESTION, "tools": [TOOL], "temperature": 0, "max_tokens": 80, **body})


def run(model: Any, work: Any) -> tuple[Any, list[Any]]:
    pieces: list[Any] = []
    outcome = model.run(work, pieces.append)
    return outcome, pieces


def test_the_prompt_shows_the_tools_the_calls_and_their_results(load: Callable[..., Any]) -> None:
    model = load("hermes", **{"tokenizer.chat_template": TOOLS_CHAT_TEMPLATE})
    assert model.tool_template is not None and model.tool_template.format == "hermes"
    prompt, _, _ = model.prompt(job(messages=ANSWERED))
    assert json.dumps(TOOL) in prompt
    # The arguments go to the template as the object they are, not as JSON text quoted again.
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>' in (
        prompt)
    assert "<tool_response>\n18 degrees, sunny\n</tool_response>" in prompt
    # tool_choice none: the tools are not shown, the conversation's calls and results still are.
    hidden, _, _ = model.prompt(job(messages=ANSWERED, tool_choice="none"))
    assert "<tools>" not in hidden and "<tool_response>" in hidden


def test_the_template_kept_for_tool_use_renders_tools(load: Callable[..., Any], smollm2: str) -> None:
    own = read_gguf(smollm2).chat_template
    assert own is not None
    path_model = load("tool-use", **{"tokenizer.chat_template": own,
                                     "tokenizer.chat_template.tool_use": TOOLS_CHAT_TEMPLATE})
    with_tools, _, _ = path_model.prompt(job())
    assert "<tools>" in with_tools
    plain, _, _ = path_model.prompt(job(tools=None))
    assert "<tools>" not in plain and "You are a helpful AI assistant named SmolLM" in plain


def test_a_template_that_cannot_show_tools_has_no_tool_support(load: Callable[..., Any]) -> None:
    from modelgate.engines.chat_request import BadRequest

    assert renders_tools(REFUSING_TEMPLATE)  # what the text alone suggests
    model = load("refusing", **{"tokenizer.chat_template": REFUSING_TEMPLATE})
    assert model.tool_template is None
    with pytest.raises(BadRequest) as raised:
        run(model, job())
    assert raised.value.code == "tools_not_supported"
    outcome, pieces = run(model, job(tools=None, max_tokens=3))  # without tools it serves
    assert outcome.completion_tokens > 0 and all(isinstance(p, str) for p in pieces)


@pytest.mark.parametrize(("fmt", "template"), [
    ("hermes", TOOLS_CHAT_TEMPLATE), ("mistral", MISTRAL_TEMPLATE), ("llama3", LLAMA3_TEMPLATE),
    ("json", JSON_TEMPLATE),
])
def test_required_writes_a_valid_call_in_each_format(load: Callable[..., Any], fmt: str, template: str) -> None:
    from modelgate.engines.tool_calls import ToolCall

    model = load(f"required-{fmt}", **{"tokenizer.chat_template": template})
    assert model.tool_template is not None and model.tool_template.format == fmt
    for messages in (QUESTION, ANSWERED):  # Mistral's ids: the conversation's are made to fit its template
        outcome, pieces = run(model, job(messages=messages, tool_choice="required", parallel_tool_calls=False))
        assert outcome.finish_reason == "tool_calls", pieces
        calls = [p for p in pieces if isinstance(p, ToolCall)]
        assert len(calls) == 1 and not [p for p in pieces if isinstance(p, str) and p.strip()]
        assert calls[0].name == "get_weather"
        jsonschema.validate(json.loads(calls[0].arguments), WEATHER)
        assert len(calls[0].id) == 9 if fmt == "mistral" else calls[0].id.startswith("call_")
