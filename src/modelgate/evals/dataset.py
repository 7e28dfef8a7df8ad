"""Evaluation datasets: JSONL, one item per line.

An item is an input and what to score its answer against::

    {"id": "cap-fr",                                   optional; else its line number
     "messages": [{"role": "user", "content": "..."}], or "input": "..." / [...] (Responses-style)
     "tools": [...], "response_format": {...},          optional, sent with the request
     "expected": "Paris",                               the answer; for regex the pattern, for numeric the number
     "expected_json": {...},                            an object; for tool_call {"name", "arguments"}
     "tolerance": 0.01,                                 numeric: how far off still passes (default 1e-6)
     "rubric": "...",                                   what a judge scores by
     "tags": ["geography"]}

A line that is not such an item stops the load with its line number and what is wrong: a run never
starts on half a dataset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


class DatasetError(ValueError):
    """The dataset cannot be read; the message names the file and line."""


@dataclass(slots=True, kw_only=True)
class Item:
    index: int  # 0-based position in the file
    id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    expected: Any = None
    expected_json: Any = None
    tolerance: float | None = None
    rubric: str | None = None
    tags: list[str] = field(default_factory=list)

    def request(self, deployment: str) -> dict[str, Any]:
        """The Chat Completions body that asks ``deployment`` this item (streamed, with usage, so
        that the time to first token is measured)."""
        body: dict[str, Any] = {"model": deployment, "messages": self.messages, "stream": True,
                                "stream_options": {"include_usage": True}}
        if self.tools:
            body["tools"] = self.tools
        if self.response_format:
            body["response_format"] = self.response_format
        return body

    @property
    def question(self) -> str:
        """The last user turn's text (what a judge is shown as the question)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _text(message.get("content"))
        return ""


@dataclass(slots=True, kw_only=True)
class Dataset:
    path: str
    sha256: str
    items: list[Item]


def load_dataset(path: str | Path) -> Dataset:
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise DatasetError(f"{file}: cannot be read ({error.strerror or error})") from None
    items: list[Item] = []
    seen: set[str] = set()
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise DatasetError(f"{file}:{number}: not JSON ({error})") from None
        item = _item(data, len(items), number, file)
        if item.id in seen:
            raise DatasetError(f"{file}:{number}: id {item.id!r} is used twice; ids must be unique")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise DatasetError(f"{file}: has no item (one JSON object per line)")
    return Dataset(path=str(path), sha256=hashlib.sha256(raw).hexdigest(), items=items)


def _item(data: Any, index: int, number: int, file: Path) -> Item:
    where = f"{file}:{number}"
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: an item is a JSON object, not {type(data).__name__}")
    known = {"id", "messages", "input", "tools", "response_format", "expected", "expected_json", "tolerance",
             "rubric", "tags"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DatasetError(f"{where}: unknown key(s) {', '.join(unknown)}; an item has {', '.join(sorted(known))}")
    if ("messages" in data) == ("input" in data):
        raise DatasetError(f"{where}: give either messages (Chat Completions) or input (Responses-style)")
    messages = data["messages"] if "messages" in data else _from_input(data["input"], where)
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise DatasetError(f"{where}: messages must be a non-empty list of {{\"role\", \"content\"}} objects")
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DatasetError(f"{where}: tags must be a list of strings")
    tolerance = data.get("tolerance")
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, int | float)
                                  or tolerance < 0):
        raise DatasetError(f"{where}: tolerance must be a number, 0 or more")
    for name in ("tools",):
        if name in data and not isinstance(data[name], list):
            raise DatasetError(f"{where}: {name} must be a list")
    if "response_format" in data and not isinstance(data["response_format"], dict):
        raise DatasetError(f"{where}: response_format must be an object")
    rubric = data.get("rubric")
    if rubric is not None and not isinstance(rubric, str):
        raise DatasetError(f"{where}: rubric must be a string")
    return Item(index=index, id=str(data.get("id", number)), messages=messages, tools=data.get("tools"),
                response_format=data.get("response_format"), expected=data.get("expected"),
                expected_json=data.get("expected_json"), tolerance=tolerance, rubric=rubric, tags=tags)


def _from_input(value: Any, where: str) -> list[dict[str, Any]]:
    """A Responses-style input as Chat Completions messages: a string is one user turn; a list of
    message items keeps their roles, their input_text / output_text parts as text."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise DatasetError(f"{where}: input must be a string or a list of message items")
    messages = []
    for entry in value:
        if not isinstance(entry, dict) or "role" not in entry:
            raise DatasetError(f"{where}: each input item must be a message with a role")
        role = "system" if entry["role"] == "developer" else entry["role"]
        messages.append({"role": role, "content": _text(entry.get("content"))})
    return messages


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
