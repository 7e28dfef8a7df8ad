"""Datasets: items from messages or Responses-style input; a line that is not an item stops the load
naming its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgate.evals.dataset import DatasetError, load_dataset


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_items_from_messages_and_from_input(tmp_path: Path) -> None:
    path = write(tmp_path,
                 '{"id": "a", "messages": [{"role": "user", "content": "Hi"}], "expected": "Hello", "tags": ["x"]}',
                 "",
                 '{"input": [{"role": "developer", "content": "Be brief"}, '
                 '{"role": "user", "content": [{"type": "input_text", "text": "2+2?"}]}], "expected": 4}',
                 '{"input": "plain", "tools": [{"type": "function", "function": {"name": "f"}}], "tolerance": 0.5}')
    dataset = load_dataset(path)
    assert [item.id for item in dataset.items] == ["a", "3", "4"]  # an id, else the line number
    assert [item.index for item in dataset.items] == [0, 1, 2]
    assert dataset.items[1].messages == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "2+2?"}]
    assert dataset.items[1].question == "2+2?"
    assert dataset.items[2].request("d") == {
        "model": "d", "messages": [{"role": "user", "content": "plain"}], "stream": True,
        "stream_options": {"include_usage": True}, "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert len(dataset.sha256) == 64


@pytest.mark.parametrize(("line", "said"), [
    ("not json", ":1: not JSON"),
    ("[1, 2]", ":1: an item is a JSON object"),
    ('{"messages": [], "expected": 1}', ":1: messages must be a non-empty list"),
    ('{"expected": 1}', ":1: give either messages"),
    ('{"input": "a", "messages": [{"role": "user", "content": "b"}]}', ":1: give either messages"),
    ('{"input": "a", "colour": "red"}', ":1: unknown key(s) colour"),
    ('{"input": "a", "tags": "x"}', ":1: tags must be a list of strings"),
    ('{"input": "a", "tolerance": -1}', ":1: tolerance must be a number, 0 or more"),
])
def test_a_bad_line_is_named(tmp_path: Path, line: str, said: str) -> None:
    with pytest.raises(DatasetError, match=said.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(write(tmp_path, line))


def test_duplicate_ids_and_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=":2: id 'x' is used twice"):
        load_dataset(write(tmp_path, '{"id": "x", "input": "a"}', '{"id": "x", "input": "b"}'))
    with pytest.raises(DatasetError, match="has no item"):
        load_dataset(write(tmp_path, ""))
    with pytest.raises(DatasetError, match="cannot be read"):
        load_dataset(tmp_path / "missing.jsonl")
