"""quickcheck.accepts (the validity test that spares `secompile count` the jsonschema import)
says yes only where jsonschema finds no error: on every document the zoo and the broken-spec
corpus hand the schema, and on the type rules that differ between the two ways of checking."""
from __future__ import annotations

import copy
import pathlib

import pytest

import secompile
from secompile.lang import schema as schema_module
from secompile.lang.quickcheck import accepts
from secompile.lang.schema import INCLUDE_SCHEMA, SCHEMA

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
HOSTILE = {"021-billion-laughs.yaml", "154-template-bomb.yaml",
           "114-expr-round-huge-ndigits.yaml", "125-expr-string-repetition.yaml"}


def jsonschema_errors(data, schema) -> int:
    return sum(1 for _ in schema_module._compiled(schema).iter_errors(data))


def documents_seen(monkeypatch, sources) -> list[tuple]:
    """Every (document, schema) the schema layer checks while loading `sources`."""
    seen = []

    def recording(data, schema):
        seen.append((copy.deepcopy(data), schema))
        return accepts(data, schema)

    monkeypatch.setattr(schema_module, "accepts", recording)
    for source in sources:
        try:
            secompile.load_spec(source)
        except secompile.SpecError:
            pass
    return seen


def agree(seen) -> tuple[int, int, list]:
    said_yes = [accepts(d, s) for d, s in seen]
    wrong = [i for i, ((d, s), yes) in enumerate(zip(seen, said_yes))
             if yes != (jsonschema_errors(d, s) == 0)]
    return sum(said_yes), len(seen), wrong


def test_zoo_documents_are_accepted_quickly(monkeypatch):
    seen = documents_seen(monkeypatch, secompile.list_models())
    yes, n, wrong = agree(seen)
    assert n > 50 and wrong == [] and yes == n      # every zoo document is valid


def test_corpus_documents_agree_with_jsonschema(monkeypatch):
    seen = documents_seen(monkeypatch, [p for p in sorted(CORPUS.glob("*.yaml"))
                                        if p.name not in HOSTILE])
    yes, n, wrong = agree(seen)
    assert wrong == [] and 0 < yes < n             # both answers occur


SPEC = {"name": "n", "input": {"channels": 3, "size": 32},
        "stages": [{"blocks": [{"template": "t"}], "out": 8}]}


@pytest.mark.parametrize("value", [2, 2.0, True, None, "2", "$ 2", [2], {"a": 2}, -1])
def test_integer_rule_agrees(value):
    data = copy.deepcopy(SPEC)
    data["input"]["size"] = value
    for schema in (SCHEMA, INCLUDE_SCHEMA):
        assert accepts(data, schema) == (jsonschema_errors(data, schema) == 0)


@pytest.mark.parametrize("schema, value, expected", [
    ({"enum": [1, "a"]}, True, False), ({"enum": [1, "a"]}, 1.0, True),
    ({"enum": [True]}, 1, False), ({"const": None}, None, True), ({"const": "1"}, 1, False),
    ({"type": "number"}, False, False), ({"type": ["string", "null"]}, None, True),
    ({"minimum": 1}, True, True), ({"pattern": "^a"}, 3, True), ({"pattern": "b"}, "abc", True),
    ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, {"a": "x", "b": 1},
     False),
    ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"ab": 1, "Cd": 2}, False),
    ({"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"maxItems": 0}},
     {"a": 1}, False),
])
def test_keywords_agree(schema, value, expected):
    assert accepts(value, schema) is expected
    assert (jsonschema_errors(value, schema) == 0) is expected


@pytest.mark.parametrize("schema", [{"enum": [[1]]}, {"const": {"a": 1}}, {"$ref": "other.json#/x"},
                                    {"uniqueItems": True}, {"items": {"$id": "x"}}])
def test_what_it_does_not_know_goes_to_jsonschema(schema):
    assert accepts([1], schema) is False           # a no: jsonschema decides
