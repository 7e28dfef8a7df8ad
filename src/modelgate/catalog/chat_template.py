"""What a model's chat template says about tools, read from its text (no Jinja needed).

A chat template that can show a model its tools uses the ``tools`` variable in a Jinja tag
(``{% if tools %}``, ``{% for tool in tools %}``, ``{{ tools | tojson }}``). The word in the
template's literal text ("You have no tools") or in a string inside a tag shows nothing, so only
the tags are searched, with their string literals taken out.

The way the template writes an assistant's tool calls is the way the model was trained to write
them, and so the format its answers are parsed in (``engines/tool_calls.py``)::

    hermes    <tool_call>{"name": ..., "arguments": {...}}</tool_call>     Hermes, Qwen 2.5/3, SmolLM3
    mistral   [TOOL_CALLS][{"name": ..., "arguments": {...}}]              Mistral, Mixtral, Ministral
    llama3    {"name": ..., "parameters": {...}} (after <|python_tag|>)   Llama 3.1, 3.2, 3.3
    json      {"name": ..., "arguments": {...}}                           any other template with tools

A model file may carry a template of its own for requests with tools (GGUF
``tokenizer.chat_template.tool_use``, as Hermes and Command-R do); where it does, that one
renders them.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["TOOL_USE_KEY", "ToolFormat", "renders_tools", "tool_call_format"]

ToolFormat = Literal["hermes", "mistral", "llama3", "json"]
TOOL_USE_KEY = "tokenizer.chat_template.tool_use"

_TAG = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)
_TOOLS = re.compile(r"\btools\b")


def renders_tools(template: str | None) -> bool:
    """Whether ``template`` uses the ``tools`` variable in one of its Jinja tags."""
    if not template:
        return False
    for match in _TAG.finditer(template):
        code = _STRING.sub("''", match.group(1) or match.group(2) or "")
        if _TOOLS.search(code):
            return True
    return False


def tool_call_format(template: str) -> ToolFormat:
    """The format in which ``template`` writes an assistant's tool calls, so the model writes them."""
    if "<tool_call>" in template:
        return "hermes"
    if "[TOOL_CALLS]" in template:
        return "mistral"
    if "<|python_tag|>" in template or "ipython" in template:
        return "llama3"
    return "json"
