"""The schemas a local model's grammar holds to, and the check of its answers: ``grammar_schema``
refuses what llama-cpp-python's converter would pass over, names the keyword and where it is, and
gives the converter a schema it turns into a grammar that llama.cpp parses; ``violation`` agrees
with ``jsonschema`` on what is valid, and says which constraint failed."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from modelgate.engines.json_schema import UnsupportedSchema, grammar_schema, violation
from tests.engines.conftest import _missing

PERSON: dict[str, Any] = {
    "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]},
                                                       "born": {"type": "string", "format": "date"}},
                      "required": ["kind"], "additionalProperties": False, "title": "Pet"}},
    "type": "object",
    "title": "Person",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20, "description": "given name"},
        "age": {"type": "integer"},
        "email": {"anyOf": [{"type": "string", "pattern": "^[a-z]+@[a-z]+\\.[a-z]+$"}, {"type": "null"}]},
        "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}, "maxItems": 2},
        "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": False},
        "id": {"type": "string", "format": "uuid"},
        "tags": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "kind": {"const": "person"},
        "score": {"type": ["number", "null"]},
        "extra": {},
    },
    "required": ["name", "age", "pets"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def gbnf() -> Any:
    try:
        from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf
    except ImportError as error:
        _missing("llama-cpp-python", error)

    def make(schema: dict[str, Any]) -> Any:
        return LlamaGrammar.from_string(json_schema_to_gbnf(json.dumps(grammar_schema(schema))), verbose=False)
    return make


def test_what_the_grammar_holds_to_becomes_a_grammar(gbnf: Any) -> None:
    assert gbnf(PERSON) is not None
    readable = grammar_schema(PERSON)
    assert "title" not in readable and "description" not in readable["properties"]["name"]
    # The converter reads {} as "an object"; "anything" is said as it understands it.
    assert readable["properties"]["extra"]["type"] == ["object", "array", "string", "number", "boolean", "null"]


@pytest.mark.parametrize(("schema", "keyword", "where"), [
    ({"type": "integer", "minimum": 0}, "minimum", "the schema uses"),
    ({"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}, "format", "#/properties/a"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems", "beside 'items'"),
    ({"type": "string", "pattern": "^a+$", "minLength": 3}, "minLength", "beside 'pattern'"),
    ({"type": "string", "pattern": "abc"}, "pattern", "not anchored"),
    ({"allOf": [{"type": "object"}]}, "allOf", "the schema uses"),
    ({"anyOf": [{"type": "string"}], "properties": {"a": {}}}, "properties", "beside 'anyOf'"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "required", "'b'"),
    ({"$ref": "https://example.com/schema.json"}, "$ref", "cannot fetch"),
    ({"$ref": "#/$defs/Missing"}, "$ref", "points to nothing"),
    ({"type": "object", "minProperties": 1}, "minProperties", "the schema uses"),
    ({"type": "objekt"}, "type", "not a JSON Schema type"),
])
def test_what_the_grammar_would_pass_over_is_refused_by_name(schema: dict[str, Any], keyword: str,
                                                             where: str) -> None:
    with pytest.raises(UnsupportedSchema) as raised:
        grammar_schema(schema)
    assert raised.value.keyword == keyword
    assert where in str(raised.value)


VALID = [
    {"name": "Ann", "age": 30, "pets": []},
    {"name": "Ann", "age": 30.0, "pets": [{"kind": "cat", "born": "2020-02-29"}], "email": None, "score": None,
     "point": [1, 2.5], "id": "123e4567-e89b-12d3-a456-426614174000", "tags": {"a": True}, "kind": "person",
     "extra": [1, {"x": None}]},
]
INVALID = [
    ({"name": "Ann", "age": 30}, "$: the required property 'pets' is missing (required)"),
    ({"name": "Ann", "age": "30", "pets": []}, '$.age: "30" is not of type integer (type)'),
    ({"name": "Ann", "age": True, "pets": []}, "$.age: True is not of type integer (type)"),
    ({"name": "", "age": 1, "pets": []}, '$.name: "" is shorter than minLength 1'),
    ({"name": "A", "age": 1, "pets": [{"kind": "cow"}]}, "$.pets[0].kind: \"cow\" is not one of ['cat', 'dog'] (enum)"),
    ({"name": "A", "age": 1, "pets": [{"kind": "cat", "born": "2021-02-29"}]}, "is not a date (format)"),
    ({"name": "A", "age": 1, "pets": [{}, {}, {}]}, "$.pets: 3 items, more than maxItems 2"),
    ({"name": "A", "age": 1, "pets": [], "email": "nope"}, "matches none of the 2 schemas of anyOf"),
    ({"name": "A", "age": 1, "pets": [], "point": [1, 2, 3]}, "more than the 2 the schema lists (prefixItems)"),
    ({"name": "A", "age": 1, "pets": [], "kind": "dog"}, '$.kind: "dog" is not "person" (const)'),
    ({"name": "A", "age": 1, "pets": [], "tags": {"a": 1}}, "$.tags.a: 1 is not of type boolean (type)"),
    ({"name": "A", "age": 1, "pets": [], "nick": "x"}, "the property 'nick' is not one the schema allows"),
    ({"name": "A", "age": 1, "pets": [], "id": "not-a-uuid"}, "is not a uuid (format)"),
]


@pytest.mark.parametrize("value", VALID)
def test_valid_answers_pass_as_jsonschema_says(value: Any) -> None:
    jsonschema.validate(value, PERSON, format_checker=jsonschema.FormatChecker())
    assert violation(value, PERSON) is None


@pytest.mark.parametrize(("value", "said"), INVALID)
def test_invalid_answers_say_which_constraint_failed(value: Any, said: str) -> None:
    assert not jsonschema.Draft202012Validator(PERSON, format_checker=jsonschema.FormatChecker()).is_valid(value)
    failed = violation(value, PERSON)
    assert failed is not None and said in failed


def test_one_of_wants_exactly_one() -> None:
    schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    assert violation(1.5, schema) is None
    assert violation(1, schema) == "$: 1 matches 2 of the schemas of oneOf, not exactly one"


def test_the_engine_refuses_an_unsupported_schema_before_taking_a_model(gbnf: Any) -> None:
    from modelgate.engines.chat_request import BadRequest, read_job

    body = {"messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "number",
                                                                                             "multipleOf": 2}}}}
    with pytest.raises(BadRequest) as raised:
        read_job(body)
    assert raised.value.code == "unsupported_schema" and "'multipleOf'" in str(raised.value)
    assert read_job({**body, "response_format": {"type": "json_object"}}).grammar is not None
