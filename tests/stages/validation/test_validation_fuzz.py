"""Fuzzing parameter decoding and the whole hook: any input gives a value or a clean refusal."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.stages.validation.params import (
    Param,
    ParamError,
    coerce_scalar,
    decode_cookie,
    decode_header,
    decode_path,
    decode_query,
    is_integer_text,
    is_number_text,
    parse_query,
)
from bastion.stages.validation.schema import ANY, Shape
from bastion.types import Block
from tests.stages.validation.helpers import body_stage, param_stage, send

SCALARS = [frozenset({t}) for t in ("integer", "number", "boolean", "string", "null")] + [
    frozenset(), frozenset({"integer", "string"}), frozenset({"number", "null"})]
shapes = st.builds(
    Shape,
    types=st.sampled_from([*SCALARS, frozenset({"array"}), frozenset({"object"})]),
    items=st.one_of(st.none(), st.builds(Shape, types=st.sampled_from(SCALARS))),
    properties=st.lists(st.tuples(st.text(max_size=5), st.builds(Shape, types=st.sampled_from(SCALARS))),
                        max_size=3).map(tuple),
)
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.sampled_from(
    ["", "1", "-0", "1e5", "1e999", "nan", "true", ",", "a,1,b", ";id=1", ".1.2", "a=1,b", "[", "{}", "%", "%ff"])


#: The grammar of JSON integers and numbers (with the parameter bounds), as a regex.
INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,39})\Z")
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,39})(?:\.[0-9]{1,40})?(?:[eE][+-]?[0-9]{1,3})?\Z")
numeric = st.from_regex(r"-?[0-9]{0,42}(\.[0-9]{0,41})?([eE][+-]?[0-9]{0,4})?", fullmatch=True)


@settings(max_examples=2000)
@given(text=numeric | texts | st.text(alphabet="-+.eE0123456789\u0663", max_size=12))
def test_number_grammar_matches_the_regex(text: str) -> None:
    """The str-method checks accept exactly what the JSON number grammar does."""
    assert is_integer_text(text) == bool(INTEGER.match(text))
    assert is_number_text(text) == bool(NUMBER.match(text))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, shape=shapes)
def test_coerce_scalar_never_raises(text: str, shape: Shape) -> None:
    """Any text converts to a JSON value, or stays the text (the schema then reports the type)."""
    value = coerce_scalar(text, shape)
    assert value is None or isinstance(value, (str, int, float, bool))
    if isinstance(value, float):
        assert value == value and abs(value) != float("inf")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, shape=shapes, explode=st.booleans(), json_content=st.booleans(),
       style=st.sampled_from(["simple", "label", "matrix"]))
def test_path_header_cookie_decoding_raises_only_param_error(text: str, shape: Shape, explode: bool,
                                                             json_content: bool, style: str) -> None:
    """Decoding any path, header or cookie text in any style gives a value or a ParamError, nothing else."""
    for location, chosen in (("path", style), ("header", "simple"), ("cookie", "form")):
        param = Param.make("id", location, False, chosen, explode, shape, json_content)  # type: ignore[arg-type]
        try:
            if location == "path":
                decode_path(param, text)
            elif location == "header":
                decode_header(param, [text, text])
            else:
                decode_cookie(param, text)
        except ParamError:
            pass


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(query=texts, shape=shapes, explode=st.booleans(), repeat=st.booleans(),
       style=st.sampled_from(["form", "spaceDelimited", "pipeDelimited", "deepObject"]))
def test_query_decoding_raises_only_param_or_unicode_errors(query: str, shape: Shape, explode: bool, repeat: bool,
                                                            style: str) -> None:
    """Any query string in any style is read, or refused with ParamError / UnicodeDecodeError."""
    try:
        parsed = parse_query(query, 1000)
        for name in ["id", *parsed]:
            decode_query(Param.make(name, "query", False, style, explode, shape), parsed, repeat)
    except (ParamError, UnicodeDecodeError):
        pass


STAGE = param_stage([
    {"name": "n", "in": "query", "schema": {"type": "integer", "maximum": 5}},
    {"name": "ids", "in": "query", "explode": False, "schema": {"type": "array", "items": {"type": "number"}}},
    {"name": "f", "in": "query", "style": "deepObject", "schema": {"type": "object", "properties": {
        "a": {"type": "boolean"}}}},
    {"name": "X-N", "in": "header", "schema": {"type": "integer"}},
    {"name": "c", "in": "cookie", "schema": {"type": "array", "items": {"type": "integer"}}},
], reject_unknown_query_params=True)
JSON_STAGE = body_stage({"type": "object", "properties": {"a": {"type": "string", "pattern": "^[a-z]+$"}}}, strict=True)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(query=texts, header=texts, cookie=texts)
def test_stage_answers_any_parameters_with_none_or_a_400(query: str, header: str, cookie: str) -> None:
    """The whole hook, on arbitrary query, header and cookie text, passes or refuses with 400 -- never raises."""
    outcome, _ = send(STAGE, query=query, headers=[("x-n", header), ("cookie", "c=" + cookie)])
    assert outcome is None or (isinstance(outcome, Block) and outcome.status == 400)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200) | texts.map(str.encode))
def test_stage_answers_any_json_body_with_none_or_a_400(body: bytes) -> None:
    """Arbitrary bytes as a JSON body pass or get a 400 -- never an exception."""
    outcome, _ = send(JSON_STAGE, body=body, content_type="application/json")
    assert outcome is None or outcome.status == 400


def test_any_shape_is_usable() -> None:
    """ANY (no type information) keeps text as text."""
    assert coerce_scalar("12", ANY) == "12"


_KEYS = st.sampled_from(["a", "b", "role", 'q"', "x\\y", "\u00e9", "a:b", ":"])
_SCALARS = st.one_of(st.none(), st.integers(), st.sampled_from(["", '":', "\\", "a b", ":", "x: y"]))
#: JSON text of strings with an escaped colon or quote (json.dumps never writes these).
_ESCAPED = st.sampled_from(['"\\u003a"', '"a\\u003Ab"', '"\\u0022:"', '"\\u003a\\u003a"'])


@st.composite
def _json_text(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON text whose objects may repeat keys, with varied spacing and escaping."""
    import json as stdjson

    if depth > 2 or draw(st.booleans()):
        if draw(st.integers(0, 5)) == 0:
            return draw(_ESCAPED)
        return stdjson.dumps(draw(_SCALARS), ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        items = draw(st.lists(st.deferred(lambda: _json_text(depth + 1)), max_size=3))
        return "[" + ",".join(items) + "]"
    pairs = draw(st.lists(st.tuples(_KEYS, st.deferred(lambda: _json_text(depth + 1))), max_size=4))
    sep = draw(st.sampled_from([":", ": ", " :", "\n:"]))
    keys = [draw(_ESCAPED) if draw(st.integers(0, 7)) == 0 else stdjson.dumps(k, ensure_ascii=draw(st.booleans()))
            for k, _ in pairs]
    return "{" + ",".join(key + sep + v for key, (_, v) in zip(keys, pairs, strict=True)) + "}"


@settings(max_examples=1500, deadline=None)
@given(_json_text())
def test_duplicate_key_shortcut_agrees_with_a_full_parse(text: str) -> None:
    """``duplicate_key`` (a comparison or a count in C, a full parse only when undecided)
    finds a repeated key exactly when a parser keeping every pair does, whatever the
    spacing around colons and however colons and quotes are escaped."""
    import json as stdjson

    import orjson

    from bastion.stages.validation.body import duplicate_key

    seen_dup = False

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        nonlocal seen_dup
        seen_dup = seen_dup or len({k for k, _ in pairs}) != len(pairs)
        return dict(pairs)

    body = text.encode()
    stdjson.loads(body, object_pairs_hook=hook)
    assert (duplicate_key(body, orjson.loads(body)) is not None) == seen_dup


@pytest.mark.parametrize(
    "body",
    [b'{"a" : 1, "a": 2}', b'{"x":"\\u003a", "a":1, "a":2}', b'{"a\\u003ab":1,"a:b":2}', b'{"a":1 ,"a" :2}'],
)
def test_duplicate_keys_the_colon_count_could_miss_are_found(body: bytes) -> None:
    """Bodies where a key's colon is spaced away, or a string's colon is escaped, so that a
    count of '":' or of colons alone would balance: the full parse still finds the key."""
    import orjson

    from bastion.stages.validation.body import duplicate_key

    assert duplicate_key(body, orjson.loads(body)) is not None
