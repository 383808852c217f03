"""The validation stage, sans-IO: requests against small OpenAPI 3.0 and 3.1 documents."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from bastion.errors import PolicyError
from bastion.pipeline.registry import ORDER
from bastion.pipeline.stage import RouteInfo
from bastion.stages.validation import SPEC, ValidationConfig, ValidationStage
from tests.stages.validation.helpers import body_stage, build, detail, document, param_stage, passes, send

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["bookId", "quantity"],
    "properties": {
        "bookId": {"type": "string", "format": "uuid"},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 10},
        "note": {"type": "string", "maxLength": 20},
    },
}
UUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


# -- the stage in the pipeline --------------------------------------------------------------


def test_spec_is_on_by_default_and_runs_before_detection() -> None:
    """The stage is default-on, named for x-bastion-validation, and validates before detection inspects."""
    names = [spec.name for spec in ORDER]
    assert SPEC.default_on is True
    assert SPEC.extension == "x-bastion-validation"
    assert names.index("validation") < names.index("detection")


def test_route_without_operation_gets_no_stage() -> None:
    """A hand-declared route (no OpenAPI operation) has nothing to validate: no stage in its chain at all."""
    assert ValidationStage.from_config(ValidationConfig(), RouteInfo("r", "s", "/x", frozenset({"GET"}), False)) is None


def test_body_is_buffered_only_when_the_operation_declares_one() -> None:
    """needs_request_body is true only for operations with a requestBody (and body validation on)."""
    assert param_stage([{"name": "q", "in": "query", "schema": {"type": "string"}}]).needs_request_body is False
    assert body_stage(ORDER_SCHEMA).needs_request_body is True
    assert body_stage(ORDER_SCHEMA, validate_body=False).needs_request_body is False


def test_config_rejects_unknown_settings() -> None:
    """The config model forbids unknown fields, so a typo is a load error."""
    with pytest.raises(ValidationError):
        ValidationConfig.model_validate({"strcit": True})


# -- bodies ----------------------------------------------------------------------------------


def test_valid_json_body_passes_and_records_nothing() -> None:
    """A body matching its schema passes, and leaves no problems in the context."""
    outcome, exchange = send(body_stage(ORDER_SCHEMA), json={"bookId": UUID, "quantity": 2})
    assert outcome is None
    assert "validation" not in exchange.facts


def test_bound_violation_names_field_and_rule_and_is_logged() -> None:
    """quantity 0 gives 400 naming $.quantity and the minimum, with the problem list in the context."""
    outcome, exchange = send(body_stage(ORDER_SCHEMA), json={"bookId": UUID, "quantity": 0})
    assert outcome is not None
    assert (outcome.status, outcome.title, outcome.reason) == (400, "Bad Request", "validation.body")
    assert outcome.detail == "body $.quantity: 0 is less than the minimum of 1"
    assert exchange.facts["validation"] == [
        {"location": "body $.quantity", "rule": "0 is less than the minimum of 1"}]


def test_required_property_missing() -> None:
    """A missing required property is named."""
    assert detail(body_stage(ORDER_SCHEMA), json={"bookId": UUID}) == "body $: 'quantity' is a required property"


def test_several_problems_are_listed_up_to_max_problems() -> None:
    """Every broken rule is listed (up to max_problems in the detail, the rest counted)."""
    stage = body_stage(ORDER_SCHEMA, max_problems=1)
    text = detail(stage, json={"bookId": "nope", "quantity": 11})
    assert text.endswith("(and 1 more)")
    _, exchange = send(stage, json={"bookId": "nope", "quantity": 11})
    assert len(exchange.facts["validation"]) == 2


def test_enum_and_type_errors() -> None:
    """Enums list the allowed values; a wrong JSON type names the expected type."""
    stage = body_stage({"type": "object", "properties": {"s": {"enum": ["a", "b"]}, "n": {"type": "integer"}}})
    assert detail(stage, json={"s": "c"}) == 'body $.s: "c" is not one of ["a", "b"]'
    assert detail(stage, json={"n": "1"}) == "body $.n: \"1\" is not of type 'integer'"


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("uuid", UUID, "3fa85f64-5717-4562-b3fc"),
        ("email", "o'brien+news@example.com", "not-an-email"),
        ("date", "2024-02-29", "2023-02-29"),
        ("date-time", "2024-05-01T12:30:00Z", "2024-05-01 12:30"),
        ("uri", "https://example.com/a?b=c", "no scheme"),
        ("ipv4", "192.0.2.1", "192.0.2.256"),
        ("ipv6", "2001:db8::1", "2001:db8:::1"),
    ],
)
def test_formats_are_validated(fmt: str, good: str, bad: str) -> None:
    """String formats are assertions, not annotations: a malformed value is refused."""
    stage = body_stage({"type": "object", "properties": {"v": {"type": "string", "format": fmt}}})
    assert passes(stage, json={"v": good})
    assert detail(stage, json={"v": bad}).endswith(f'is not a valid "{fmt}"')


def test_int32_and_int64_formats_are_bounds() -> None:
    """int32/int64 reject integers outside their range (JSON Schema itself ignores these formats)."""
    stage = body_stage({"type": "object", "properties": {"a": {"type": "integer", "format": "int32"},
                                                          "b": {"type": "integer", "format": "int64", "minimum": 5}}})
    assert passes(stage, json={"a": 2**31 - 1, "b": 2**63 - 1})
    assert "greater than the maximum of 2147483647" in detail(stage, json={"a": 2**31})
    assert "less than the minimum of 5" in detail(stage, json={"b": 4})
    too_big = b'{"b": 9223372036854775808}'
    assert "greater than the maximum" in detail(stage, body=too_big, content_type="application/json")


def test_additional_properties_false_is_enforced_without_strict() -> None:
    """additionalProperties: false in the schema rejects unknown properties, naming them escaped."""
    stage = body_stage({**ORDER_SCHEMA, "additionalProperties": False})
    text = detail(stage, json={"bookId": UUID, "quantity": 1, "<b>": 1})
    assert text == 'body $: unexpected property "\\u003cb\\u003e" (not declared by the schema)'


def test_strict_mode_rejects_undeclared_properties_at_every_level() -> None:
    """strict treats objects with declared properties as closed, nested ones included; off, they are open."""
    schema = {**ORDER_SCHEMA, "properties": {**ORDER_SCHEMA["properties"],
                                             "address": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    loose = body_stage(schema)
    strict = body_stage(schema, strict=True)
    payload = {"bookId": UUID, "quantity": 1, "address": {"city": "Cork", "zip": "T12"}}
    assert passes(loose, json={**payload, "coupon": "FREE"})
    assert detail(strict, json=payload) == "body $.address: unexpected property \"zip\" (not declared by the schema)"
    assert "unexpected property \"coupon\"" in detail(strict, json={"bookId": UUID, "quantity": 1, "coupon": "x"})


def test_strict_mode_accepts_properties_declared_across_allof_and_refs() -> None:
    """strict closes a composition as a whole: properties from every allOf member ($ref or inline) are declared."""
    components = {"schemas": {"Base": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}}
    schema = {"allOf": [{"$ref": "#/components/schemas/Base"},
                        {"type": "object", "properties": {"n": {"type": "integer"}}}]}
    stage = body_stage(schema, components=components, strict=True)
    assert passes(stage, json={"id": "a", "n": 1})
    assert "unexpected property \"x\"" in detail(stage, json={"id": "a", "n": 1, "x": 0})


def test_strict_mode_keeps_declared_maps_open() -> None:
    """An object declared as a map (additionalProperties: <schema>) still takes any key in strict mode."""
    stage = body_stage({"type": "object", "properties": {"labels": {"type": "object",
                                                                     "additionalProperties": {"type": "string"}}}},
                       strict=True)
    assert passes(stage, json={"labels": {"any": "thing", "else": "x"}})
    assert "is not of type 'string'" in detail(stage, json={"labels": {"n": 1}})


def test_strict_mode_overrides_additional_properties_true() -> None:
    """additionalProperties: true allows extras, but strict rejects what is not declared."""
    schema = {"type": "object", "additionalProperties": True, "properties": {"a": {"type": "string"}}}
    assert passes(body_stage(schema), json={"a": "x", "b": 1})
    assert "unexpected property" in detail(body_stage(schema, strict=True), json={"a": "x", "b": 1})


def test_nested_and_recursive_refs_resolve() -> None:
    """$refs chain through components, and a recursive schema (a tree) compiles and validates."""
    components = {"schemas": {
        "Node": {"type": "object", "properties": {"name": {"$ref": "#/components/schemas/Name"},
                                                  "children": {"type": "array",
                                                               "items": {"$ref": "#/components/schemas/Node"}}}},
        "Name": {"$ref": "#/components/schemas/ShortString"},
        "ShortString": {"type": "string", "maxLength": 3},
    }}
    stage = body_stage({"$ref": "#/components/schemas/Node"}, components=components, strict=True)
    assert passes(stage, json={"name": "a", "children": [{"name": "b", "children": []}]})
    text = detail(stage, json={"name": "a", "children": [{"name": "toolong"}]})
    assert text == 'body $.children[0].name: "toolong" is longer than 3 characters'


def test_read_only_required_property_is_not_required_in_requests() -> None:
    """A required readOnly property (an id the server assigns) may be left out of a request."""
    schema = {"type": "object", "required": ["id", "name"],
              "properties": {"id": {"type": "string", "readOnly": True}, "name": {"type": "string"}}}
    assert passes(body_stage(schema), json={"name": "x"})
    assert "'name' is a required property" in detail(body_stage(schema), json={"id": "x"})


def test_read_only_property_may_not_be_sent() -> None:
    """Mass assignment: a request that sets a readOnly property (inline or behind a $ref)
    is refused with the field named; ``reject_read_only: false`` lets it through."""
    components = {"schemas": {"Role": {"type": "string", "enum": ["user", "admin"], "readOnly": True}}}
    schema = {"type": "object", "properties": {
        "id": {"type": "integer", "readOnly": True}, "role": {"$ref": "#/components/schemas/Role"},
        "name": {"type": "string"}}}
    stage = body_stage(schema, components=components)
    assert passes(stage, json={"name": "x"})
    assert detail(stage, json={"name": "x", "role": "admin"}) == (
        'body $.role: "admin" may not be sent here (a read-only or forbidden property)')
    assert "body $.id: 7 may not be sent here" in detail(stage, json={"id": 7})
    lenient = body_stage(schema, components=components, reject_read_only=False)
    assert passes(lenient, json={"name": "x", "role": "admin", "id": 7})


@pytest.mark.parametrize("body", [
    b'{"role": "user", "role": "admin"}',
    b'{"a": {"b": 1, "b": 2}}',
    b'{"role" : "user", "role" : "admin"}',
    b'{"role": "user", "\\u0072ole": "admin"}',
    b'{"role": "user", "role": "admin", "x": "\\u0022:"}',
    b'[{"ok": 1}, {"role": 1,\n "role": 2}]',
])
def test_duplicate_json_keys_are_refused(body: bytes) -> None:
    """An object that repeats a key is refused (parsers disagree on which value wins),
    whatever the spacing or escaping of the keys."""
    stage = body_stage({})
    outcome, _ = send(stage, body=body, content_type="application/json")
    assert outcome is not None and outcome.status == 400
    assert "repeats the key" in outcome.detail


def test_duplicate_key_check_has_no_false_alarms() -> None:
    """Keys and values that merely look alike pass: '":' inside strings, the same key in
    sibling objects, escaped quotes; and ``reject_duplicate_keys: false`` allows repeats."""
    stage = body_stage({})
    for body in (b'{"a": "x\\":y", "b": {"a": 1}, "c": [{"a": 1}, {"a": 2}]}',
                 b'{"a" : 1, "b" :"\\u0022"}', b'{"k\\"": 1, "k": 2}'):
        assert passes(stage, body=body, content_type="application/json"), body
    assert passes(body_stage({}, reject_duplicate_keys=False), body=b'{"a": 1, "a": 2}',
                  content_type="application/json")


def test_parsed_body_is_kept_for_later_stages() -> None:
    """The JSON value validation parsed is left on the request for detection to reuse."""
    _, exchange = send(body_stage({}), json={"a": [1, None]})
    assert exchange.request.parsed_json == ({"a": [1, None]},)


def test_openapi30_nullable_exclusive_bounds_and_ref_siblings() -> None:
    """3.0 forms are translated: nullable adds null, boolean exclusiveMinimum, $ref siblings ignored."""
    components = {"schemas": {"Small": {"type": "integer", "maximum": 5}}}
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "nullable": True},
        "b": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        "c": {"$ref": "#/components/schemas/Small", "maximum": 1},
        "d": {"type": "string", "enum": ["x"], "nullable": True},
    }}
    stage = body_stage(schema, version="3.0.3", components=components)
    assert passes(stage, json={"a": None, "b": 0.5, "c": 5, "d": None})
    assert detail(stage, json={"b": 0}) == "body $.b: 0 is less than or equal to the minimum of 0"
    assert detail(stage, json={"a": 1}) == "body $.a: 1 is not of type 'null' or 'string'"


def test_openapi30_integer_has_no_fraction_part() -> None:
    """OpenAPI 3.0 uses JSON Schema Wright-00, where ``1.0`` and ``1e3`` are numbers but not
    integers: refused wherever a 3.0 schema says integer (plain, nullable, items, through a
    $ref, a JSON-content query parameter), named and worded; numbers still take them."""
    components = {"schemas": {"Count": {"type": "integer"}}}
    schema = {"type": "object", "properties": {
        "n": {"type": "integer"}, "m": {"type": "integer", "nullable": True},
        "ids": {"type": "array", "items": {"type": "integer"}}, "c": {"$ref": "#/components/schemas/Count"},
        "x": {"type": "number"}}}
    stage = body_stage(schema, version="3.0.3", components=components)
    js = "application/json"
    assert passes(stage, body=b'{"n": 1, "m": null, "ids": [1, 2], "c": 3, "x": 1.0}', content_type=js)
    assert detail(stage, body=b'{"n": 1.0}', content_type=js) == (
        "body $.n: 1.0 is not of type 'integer' (in OpenAPI 3.0 an integer has no fraction or exponent)")
    for bad, where in ((b'{"m": 2.0}', "$.m"), (b'{"ids": [1, 1e3]}', "$.ids[1]"), (b'{"c": -0.0}', "$.c")):
        assert detail(stage, body=bad, content_type=js).startswith(f"body {where}: "), bad
    param = {"name": "f", "in": "query", "content": {"application/json": {"schema": {"type": "integer"}}}}
    assert passes(param_stage([param], version="3.0.3"), query="f=1")
    assert detail(param_stage([param], version="3.0.3"), query="f=1.0").startswith(
        "query parameter 'f': 1.0 is not of type 'integer'")
    scalar = {"name": "n", "in": "query", "schema": {"type": "integer"}}
    assert detail(param_stage([scalar], version="3.0.3"), query="n=1.0") == (
        "query parameter 'n': \"1.0\" is not of type 'integer'")


def test_openapi31_integer_may_have_a_zero_fraction() -> None:
    """In 3.1 (JSON Schema 2020-12) ``1.0`` is an integer; ``1.5`` is not."""
    stage = body_stage({"type": "object", "properties": {"n": {"type": "integer"}}})
    assert passes(stage, body=b'{"n": 1.0}', content_type="application/json")
    assert detail(stage, body=b'{"n": 1.5}', content_type="application/json") == (
        "body $.n: 1.5 is not of type 'integer'")


def test_openapi31_type_arrays_and_ref_siblings() -> None:
    """3.1 schemas are JSON Schema 2020-12: type lists, and $ref siblings that do constrain."""
    components = {"schemas": {"Small": {"type": "integer", "maximum": 5}}}
    schema = {"type": "object", "properties": {"a": {"type": ["string", "null"]},
                                               "c": {"$ref": "#/components/schemas/Small", "minimum": 2}}}
    stage = body_stage(schema, components=components)
    assert passes(stage, json={"a": None, "c": 3})
    assert detail(stage, json={"c": 1}) == "body $.c: 1 is less than the minimum of 2"


def test_malformed_json_is_400_without_quoting_the_body() -> None:
    """A body that is not JSON gives 400 validation.json and the position, not the content."""
    outcome, _ = send(body_stage(ORDER_SCHEMA), body=b'{"quantity": <script>}', content_type="application/json")
    assert outcome is not None
    assert outcome.reason == "validation.json"
    assert outcome.detail.startswith("body: the body is not valid JSON")
    assert "script" not in outcome.detail


@pytest.mark.parametrize("depth", [65, 1000, 5000])
def test_deep_nesting_is_refused_with_a_clear_message(depth: int) -> None:
    """JSON nested deeper than max_json_depth is refused (orjson's own limit is 1024) without crashing."""
    body = b"[" * depth + b"]" * depth
    outcome, _ = send(body_stage({}), body=body, content_type="application/json")
    assert outcome is not None
    assert outcome.reason == "validation.depth"
    assert outcome.detail == "body: the JSON body is nested more than 64 levels deep"


def test_nesting_at_the_limit_passes() -> None:
    """Exactly max_json_depth levels are accepted, and many flat brackets are not mistaken for depth."""
    assert passes(body_stage({}), body=b"[" * 64 + b"]" * 64, content_type="application/json")
    assert passes(body_stage({}), json=[[1]] * 500)


def _nested(levels: int) -> object:
    """A document whose deepest branch has ``levels`` containers, objects and arrays in
    turn, in the middle of siblings (the walk must not only follow first or last children)."""
    inner: object = {} if levels % 2 else []
    for level in range(levels - 1, 0, -1):
        inner = {"before": [1, 2], "deep": inner, "after": "x"} if level % 2 else [[], inner, {"k": 1}]
    return inner


def test_depth_counts_objects_and_arrays_wherever_they_nest() -> None:
    """The depth check walks every branch of objects and arrays: a deepest branch of exactly
    max_json_depth containers (64) between shallow siblings passes, one more is refused."""
    assert passes(body_stage({}), json=_nested(64))
    outcome, _ = send(body_stage({}), json=_nested(65))
    assert outcome is not None
    assert outcome.reason == "validation.depth"


def test_large_body_validates() -> None:
    """A 1 MB JSON body is parsed and validated (the proxy's body cap is what bounds size)."""
    stage = body_stage({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}}}})
    assert passes(stage, json={"items": ["x" * 100] * 10_000})


def test_redos_pattern_runs_in_linear_time() -> None:
    """A catastrophic pattern ^(a+)+$ on 'a'*5000+'!' is refused fast: patterns run on a linear-time engine."""
    stage = body_stage({"type": "object", "properties": {"v": {"type": "string", "pattern": "^(a+)+$"}}})
    started = time.perf_counter()
    text = detail(stage, json={"v": "a" * 5000 + "!"})
    assert time.perf_counter() - started < 0.1
    assert text == 'body $.v: a string of 5001 characters does not match the pattern "^(a+)+$"'


def test_backtracking_pattern_is_a_load_error_unless_allowed() -> None:
    """A lookahead needs a backtracking engine: refused at load, or run with a step bound when allowed."""
    schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": "^(?=.*[0-9]).{8,}$"}}}
    with pytest.raises(PolicyError, match="allow_backtracking_patterns"):
        body_stage(schema)
    stage = body_stage(schema, allow_backtracking_patterns=True)
    assert passes(stage, json={"v": "abcdefg1"})
    assert not passes(stage, json={"v": "abcdefgh"})


def test_external_ref_is_a_load_error() -> None:
    """A $ref to another file cannot be compiled and is reported at load, naming the reference."""
    with pytest.raises(PolicyError, match=r"other\.yaml"):
        body_stage({"$ref": "other.yaml#/Thing"})


def test_long_and_markup_values_are_never_echoed() -> None:
    """Strings over 40 characters are described, not shown; short ones are escaped for any context."""
    stage = body_stage({"type": "object", "properties": {"e": {"type": "string", "format": "email"}}})
    secret = "<script>alert(1)</script>" + "x" * 30
    text = detail(stage, json={"e": secret})
    assert "script" not in text
    assert text == 'body $.e: a string of 55 characters is not a valid "email"'
    short = detail(stage, json={"e": "<img src=x>"})
    assert "<" not in short and "\\u003cimg" in short


def test_odd_property_names_in_paths_are_quoted() -> None:
    """A property name that is not an identifier is JSON-quoted in the location."""
    stage = body_stage({"type": "object", "additionalProperties": {"type": "integer"}})
    assert detail(stage, json={"a b": "x"}) == 'body $["a b"]: "x" is not of type \'integer\''


# -- content types ---------------------------------------------------------------------------


def test_unknown_content_type_is_415_listing_accepted_types() -> None:
    """A media type the operation does not declare gets 415 with the accepted ones."""
    outcome, exchange = send(body_stage(ORDER_SCHEMA), body=b"x=1", content_type="text/plain")
    assert outcome is not None
    assert (outcome.status, outcome.title, outcome.reason) == (415, "Unsupported Media Type", "validation.content_type")
    assert outcome.detail == 'Content-Type "text/plain" is not accepted here; expected one of: application/json'
    assert exchange.facts["validation"]


def test_body_without_content_type_is_415() -> None:
    """A body with no Content-Type cannot be matched to a declared media type."""
    outcome, _ = send(body_stage(ORDER_SCHEMA), body=b"{}")
    assert outcome is not None and outcome.status == 415


def test_content_type_parameters_and_case_are_ignored_for_matching() -> None:
    """'Application/JSON; charset=utf-8' matches application/json."""
    assert passes(body_stage(ORDER_SCHEMA), body=orjson.dumps({"bookId": UUID, "quantity": 1}),
                  content_type="Application/JSON; charset=utf-8")


def test_plus_json_and_wildcard_media_types() -> None:
    """application/merge-patch+json bodies are parsed as JSON; 'application/*' declarations match subtypes."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    stage = body_stage(schema, media="application/merge-patch+json")
    assert passes(stage, json={"a": 1}, content_type="application/merge-patch+json")
    assert not passes(stage, json={"a": "x"}, content_type="application/merge-patch+json")
    doc = document({"requestBody": {"content": {"application/*": {}}}})
    assert passes(build(doc), body=b"\x00\x01", content_type="application/octet-stream")


def test_missing_required_body_is_400_and_optional_body_may_be_absent() -> None:
    """An empty body is refused when requestBody.required, accepted otherwise."""
    outcome, _ = send(body_stage(ORDER_SCHEMA))
    assert outcome is not None
    assert (outcome.status, outcome.reason, outcome.detail) == (400, "validation.body_missing",
                                                                "body: a request body is required")
    assert passes(body_stage(ORDER_SCHEMA, required=False))


def test_form_urlencoded_body_is_coerced_and_validated() -> None:
    """Form fields are converted to the property types (integers, booleans, arrays) before validation."""
    schema = {"type": "object", "required": ["n"], "properties": {
        "n": {"type": "integer", "maximum": 5}, "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}, "name": {"type": "string"}}}
    stage = body_stage(schema, media="application/x-www-form-urlencoded", strict=True)
    form = "application/x-www-form-urlencoded"
    assert passes(stage, body=b"n=3&ok=true&tags=a&tags=b&name=O%27Brien+Jr", content_type=form)
    assert detail(stage, body=b"n=6", content_type=form) == "body $.n: 6 is greater than the maximum of 5"
    assert detail(stage, body=b"n=1&tags=a&tags=b&tags=c", content_type=form).startswith("body $.tags:")
    assert "unexpected property" in detail(stage, body=b"n=1&zzz=1", content_type=form)
    assert detail(stage, body=b"n=%ff", content_type=form) == (
        "body: the form body has percent-escapes that do not decode to valid UTF-8")


def test_form_body_accepts_raw_utf8_and_refuses_invalid_utf8() -> None:
    """A form body with raw UTF-8 (as browsers send it) reads like its percent-encoded
    spelling; invalid UTF-8 is refused, raw or percent-encoded, with a message saying which."""
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3},
                                               "qty": {"type": "integer", "maximum": 5}}}
    stage = body_stage(schema, media="application/x-www-form-urlencoded")
    form = "application/x-www-form-urlencoded"
    raw = "name=Zoë&qty=3".encode()
    assert passes(stage, body=raw, content_type=form)
    assert passes(stage, body=b"name=Zo%C3%AB&qty=3", content_type=form)
    assert detail(stage, body="name=Zoëy".encode(), content_type=form) == (
        "body $.name: \"Zo\\u00eby\" is longer than 3 characters")  # 4 characters, not 5 bytes
    assert detail(stage, body=b"name=Zo\xeb&qty=3", content_type=form) == (
        "body: the form body contains bytes that are not valid UTF-8")
    assert detail(stage, body=b"name=Zo%EB&qty=3", content_type=form) == (
        "body: the form body has percent-escapes that do not decode to valid UTF-8")


def test_repeated_form_field_is_refused_unless_an_array() -> None:
    """A form (or multipart) field given twice is refused naming the field unless its schema
    is an array, whatever ``allow_repeated_params`` says (it is about query parameters)."""
    schema = {"type": "object", "properties": {"qty": {"type": "integer"}, "name": {"type": "string"},
                                               "tags": {"type": "array", "items": {"type": "string"}}}}
    form = "application/x-www-form-urlencoded"
    for config in ({}, {"allow_repeated_params": True}):
        stage = body_stage(schema, media=form, **config)
        assert detail(stage, body=b"qty=1&qty=2", content_type=form) == (
            "body: the field 'qty' is given more than once (only array fields may repeat)")
        assert detail(stage, body=b"name=a&tags=x&name=a", content_type=form) == (
            "body: the field 'name' is given more than once (only array fields may repeat)")
        assert passes(stage, body=b"tags=x&tags=y&qty=1", content_type=form)
    multipart = body_stage(schema, media="multipart/form-data")
    twice = (b'--B\r\nContent-Disposition: form-data; name="qty"\r\n\r\n1\r\n'
             b'--B\r\nContent-Disposition: form-data; name="qty"\r\n\r\n2\r\n--B--\r\n')
    assert detail(multipart, body=twice, content_type="multipart/form-data; boundary=B") == (
        "body: the field 'qty' is given more than once (only array fields may repeat)")


def test_multipart_body_is_parsed_and_validated() -> None:
    """Multipart text parts are converted to property types, JSON parts parsed, files seen as strings."""
    schema = {"type": "object", "required": ["title", "file"], "properties": {
        "title": {"type": "string", "maxLength": 10}, "count": {"type": "integer"},
        "meta": {"type": "object", "properties": {"k": {"type": "string"}}},
        "file": {"type": "string", "format": "binary", "maxLength": 100}}}
    stage = body_stage(schema, media="multipart/form-data")
    ct = "multipart/form-data; boundary=XyZ"

    def multipart(*parts: tuple[str, str, bytes]) -> bytes:
        out = b""
        for head_name, extra, content in parts:
            out += b"--XyZ\r\nContent-Disposition: form-data; name=\"" + head_name.encode() + b"\"" + extra.encode()
            out += b"\r\n\r\n" + content + b"\r\n"
        return out + b"--XyZ--\r\n"

    good = multipart(("title", "", b"Hello"), ("count", "", b"3"),
                     ("meta", "\r\nContent-Type: application/json", b'{"k": "v"}'),
                     ("file", '; filename="a.bin"\r\nContent-Type: application/octet-stream', b"\x00\xff" * 10))
    assert passes(stage, body=good, content_type=ct)
    bad = multipart(("title", "", b"Hello"), ("count", "", b"x"), ("file", '; filename="a"', b"x" * 101))
    _, exchange = send(stage, body=bad, content_type=ct)
    assert [p["location"] for p in exchange.facts["validation"]] == ["body $.count", "body $.file"]
    assert detail(stage, body=b"--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nno end",
                  content_type=ct) == "body: the multipart body is not terminated by its closing boundary"
    assert send(stage, body=good, content_type="multipart/form-data")[0].status == 400  # type: ignore[union-attr]


# -- parameters ------------------------------------------------------------------------------


def test_query_integer_bounds_and_coercion() -> None:
    """Query values are converted to the schema's type before validation; bounds are named."""
    stage = param_stage([{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}}])
    assert passes(stage, query="limit=100")
    assert detail(stage, query="limit=101") == "query parameter 'limit': 101 is greater than the maximum of 100"
    assert detail(stage, query="limit=ten") == "query parameter 'limit': \"ten\" is not of type 'integer'"


def test_required_parameters_missing() -> None:
    """A required query, header or cookie parameter that is absent is named as required."""
    stage = param_stage([{"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                         {"name": "X-Tenant", "in": "header", "required": True, "schema": {"type": "string"}},
                         {"name": "session", "in": "cookie", "required": True, "schema": {"type": "string"}}])
    _, exchange = send(stage)
    assert exchange.facts["validation"] == [
        {"location": "query parameter 'q'", "rule": "is required"},
        {"location": "header 'X-Tenant'", "rule": "is required"},
        {"location": "cookie 'session'", "rule": "is required"},
    ]
    assert passes(stage, query="q=x", headers=[("x-tenant", "a"), ("cookie", "a=1; session=abc")])


def test_query_array_styles() -> None:
    """Arrays in form (exploded or not), spaceDelimited and pipeDelimited styles are read and items converted."""
    items = {"type": "array", "items": {"type": "integer", "maximum": 9}, "maxItems": 3}
    cases = [({"style": "form", "explode": True}, "id=1&id=2&id=3"), ({"style": "form", "explode": False}, "id=1,2,3"),
             ({"style": "spaceDelimited", "explode": False}, "id=1%202%203"),
             ({"style": "pipeDelimited", "explode": False}, "id=1|2|3")]
    for style, good in cases:
        stage = param_stage([{"name": "id", "in": "query", "schema": items, **style}])
        assert passes(stage, query=good), style
        bad = good.replace("3", "10")
        assert detail(stage, query=bad) == "query parameter 'id' $[2]: 10 is greater than the maximum of 9", style


def test_empty_array_parameter_is_one_empty_item() -> None:
    """An empty value (``ids=``, an empty header) is an array of one empty string, as RFC 6570
    and OpenAPI's styles write it (an empty array is not sent at all): with integer items it
    fails naming the parameter; with string items and no minLength it passes as ``[""]``."""
    ints = {"type": "array", "items": {"type": "integer"}}
    for style in ({"style": "form", "explode": False}, {"style": "form", "explode": True},
                  {"style": "pipeDelimited", "explode": False}, {"style": "spaceDelimited", "explode": False}):
        stage = param_stage([{"name": "ids", "in": "query", "schema": ints, **style}])
        assert detail(stage, query="ids=") == "query parameter 'ids' $[0]: \"\" is not of type 'integer'", style
    header = param_stage([{"name": "X-Codes", "in": "header", "schema": ints}])
    assert detail(header, headers=[("x-codes", "")]) == "header 'X-Codes' $[0]: \"\" is not of type 'integer'"
    cookie = param_stage([{"name": "ids", "in": "cookie", "schema": ints}])
    assert detail(cookie, headers=[("cookie", "ids=")]) == "cookie 'ids' $[0]: \"\" is not of type 'integer'"
    strings = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}
    stage = param_stage([{"name": "ids", "in": "query", "schema": strings, "explode": False},
                         {"name": "X-Codes", "in": "header", "schema": strings}])
    _, exchange = send(stage, query="ids=", headers=[("x-codes", "")])
    assert "validation" not in exchange.facts
    short = {"type": "array", "items": {"type": "string", "minLength": 1}}
    assert detail(param_stage([{"name": "ids", "in": "query", "schema": short}]), query="ids=") == (
        "query parameter 'ids' $[0]: \"\" is shorter than 1 character")
    form = body_stage({"type": "object", "properties": {"ids": ints}}, media="application/x-www-form-urlencoded")
    assert detail(form, body=b"ids=", content_type="application/x-www-form-urlencoded") == (
        "body $.ids[0]: \"\" is not of type 'integer'")


def test_query_object_styles() -> None:
    """Objects as deepObject, exploded form (one parameter per property) and non-exploded form."""
    obj = {"type": "object", "properties": {"min": {"type": "integer"}, "max": {"type": "integer", "maximum": 50}}}
    deep = param_stage([{"name": "price", "in": "query", "style": "deepObject", "explode": True, "schema": obj}])
    assert passes(deep, query="price[min]=1&price[max]=50")
    assert detail(deep, query="price[max]=51") == "query parameter 'price' $.max: 51 is greater than the maximum of 50"
    exploded = param_stage([{"name": "price", "in": "query", "schema": obj}])
    assert passes(exploded, query="min=1&max=2")
    assert not passes(exploded, query="max=99")
    flat = param_stage([{"name": "price", "in": "query", "explode": False, "schema": obj}])
    assert passes(flat, query="price=min,1,max,2")
    assert detail(flat, query="price=min,1,max") == (
        "query parameter 'price': an object value must be a list of name,value pairs")


def test_query_parameter_with_json_content() -> None:
    """A parameter declared with content application/json is parsed as JSON, and bad JSON is refused."""
    stage = param_stage([{"name": "filter", "in": "query", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"n": {"type": "integer"}}}}}}])
    assert passes(stage, query='filter={"n":1}')
    assert detail(stage, query="filter={") == "query parameter 'filter': is not valid JSON"
    assert not passes(stage, query='filter={"n":"x"}')


def test_repeated_scalar_parameter_is_refused_unless_allowed() -> None:
    """?id=1&id=2 for a non-array parameter is parameter pollution: refused by default."""
    params = [{"name": "id", "in": "query", "schema": {"type": "integer"}}]
    assert detail(param_stage(params), query="id=1&id=2") == "query parameter 'id': is given more than once"
    assert passes(param_stage(params, allow_repeated_params=True), query="id=1&id=2")


def test_unknown_query_parameters_are_refused_when_configured() -> None:
    """reject_unknown_query_params refuses undeclared names (deepObject and exploded object names are declared)."""
    params = [{"name": "q", "in": "query", "schema": {"type": "string"}},
              {"name": "f", "in": "query", "style": "deepObject", "schema": {"type": "object"}}]
    assert passes(param_stage(params), query="q=a&debug=1")
    stage = param_stage(params, reject_unknown_query_params=True)
    assert passes(stage, query="q=a&f[x]=1")
    outcome, _ = send(stage, query="q=a&debug=1")
    assert outcome is not None
    assert (outcome.reason, outcome.detail) == ("validation.unknown_query",
                                                "query parameter 'debug': is not declared by the operation")


def test_invalid_percent_encoding_in_query() -> None:
    """A query with percent-encoded bytes that are not UTF-8 is refused."""
    stage = param_stage([{"name": "q", "in": "query", "schema": {"type": "string"}}])
    assert detail(stage, query="q=%ff") == "query: the query string is not valid percent-encoded UTF-8"


def test_path_parameter_styles() -> None:
    """Path parameters in simple, label and matrix style, converted to their types."""
    def stage(style: str, explode: bool, schema: dict[str, Any]) -> ValidationStage:
        p = {"name": "id", "in": "path", "required": True, "style": style, "explode": explode, "schema": schema}
        return param_stage([p], path="/things/{id}")

    ints = {"type": "array", "items": {"type": "integer"}}
    assert passes(stage("simple", False, {"type": "integer", "minimum": 1}), path_params={"id": "5"})
    assert detail(stage("simple", False, {"type": "integer", "minimum": 1}),
                  path_params={"id": "0"}) == "path parameter 'id': 0 is less than the minimum of 1"
    assert passes(stage("simple", False, ints), path_params={"id": "1,2"})
    assert passes(stage("label", False, ints), path_params={"id": ".1,2"})
    assert passes(stage("label", True, ints), path_params={"id": ".1.2"})
    assert passes(stage("matrix", False, ints), path_params={"id": ";id=1,2"})
    assert passes(stage("matrix", True, ints), path_params={"id": ";id=1;id=2"})
    assert not passes(stage("matrix", True, ints), path_params={"id": ";id=1;id=x"})
    obj = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert passes(stage("simple", True, obj), path_params={"id": "a=1"})
    assert passes(stage("simple", False, obj), path_params={"id": "a,1"})


def test_matrix_values_are_split_before_they_are_decoded() -> None:
    """Matrix-style values arrive raw from the router: ``;``, ``=`` and ``,`` separate, and
    their escaped forms are data; ``;name`` alone is the empty string (RFC 6570); names
    must be the parameter's, and an exploded object may not give a property twice."""
    def stage(explode: bool, schema: dict[str, Any]) -> ValidationStage:
        p = {"name": "id", "in": "path", "required": True, "style": "matrix", "explode": explode, "schema": schema}
        return param_stage([p], path="/things/{id}")

    strings = {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}
    assert passes(stage(False, strings), path_params={"id": ";id=a%2Cb,c"})  # ["a,b", "c"]
    assert detail(stage(False, strings), path_params={"id": ";id=a,b,c"}) == (
        "path parameter 'id': the array has more than 2 items")
    assert passes(stage(True, strings), path_params={"id": ";id=a%3Bb;id=%C3%BC"})  # ["a;b", "ü"]
    assert detail(stage(True, strings), path_params={"id": ";id=a;id=b;id=c"}).endswith("has more than 2 items")
    assert detail(stage(True, strings), path_params={"id": ";id=a;other=b"}).startswith(
        "path parameter 'id': a matrix-style value must be ';name=' and the value")
    assert detail(stage(False, {"type": "integer"}), path_params={"id": ";id=1;id=2"}).startswith(
        "path parameter 'id': is given more than once")
    assert detail(stage(False, {"type": "string"}), path_params={"id": ";id=%FF"}).startswith(
        "path parameter 'id': is not valid percent-encoded UTF-8")
    assert passes(stage(False, {"type": "string", "maxLength": 0}), path_params={"id": ";id"})
    assert detail(stage(False, {"type": "integer"}), path_params={"id": "5"}).startswith(
        "path parameter 'id': a matrix-style value must start with ';name='")
    obj = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    assert passes(stage(True, obj), path_params={"id": ";a=1;b=x%3Dy"})
    assert detail(stage(True, obj), path_params={"id": ";a=1;a=2"}).startswith(
        "path parameter 'id': gives a property more than once")
    assert passes(stage(False, obj), path_params={"id": ";id=a,1,b,x"})


def test_path_level_and_referenced_parameters() -> None:
    """Parameters declared on the path item and through $ref (nested) apply; the operation's override."""
    components = {"parameters": {"Id": {"$ref": "#/components/parameters/IdInner"},
                                 "IdInner": {"name": "id", "in": "path", "required": True,
                                             "schema": {"$ref": "#/components/schemas/Uuid"}}},
                  "schemas": {"Uuid": {"type": "string", "format": "uuid"}}}
    doc = document({}, path="/things/{id}", method="get", components=components,
                   path_parameters=[{"$ref": "#/components/parameters/Id"}])
    stage = build(doc, "/things/{id}", "get")
    assert passes(stage, path_params={"id": UUID})
    assert detail(stage, path_params={"id": "1"}) == "path parameter 'id': \"1\" is not a valid \"uuid\""


def test_header_and_cookie_parameters() -> None:
    """Header names match case-insensitively; header arrays are comma-separated; cookies are read from Cookie."""
    stage = param_stage([
        {"name": "X-Rate", "in": "header", "schema": {"type": "integer", "maximum": 10}},
        {"name": "X-Ids", "in": "header", "schema": {"type": "array", "items": {"type": "integer"}}},
        {"name": "theme", "in": "cookie", "schema": {"enum": ["dark", "light"]}},
        {"name": "Authorization", "in": "header", "schema": {"type": "integer"}},
    ])
    assert passes(stage, headers=[("x-rate", "3"), ("x-ids", "1, 2"), ("x-ids", "3"), ("cookie", "theme=dark"),
                                  ("authorization", "Bearer x")])
    assert detail(stage, headers=[("x-rate", "11")]) == "header 'X-Rate': 11 is greater than the maximum of 10"
    assert detail(stage, headers=[("cookie", "theme=blue")]) == (
        'cookie \'theme\': "blue" is not one of ["dark", "light"]')


def test_disabled_locations_are_not_checked() -> None:
    """validate_query/headers/cookies/path false skip those parameters."""
    params = [{"name": "n", "in": "query", "schema": {"type": "integer"}},
              {"name": "X-N", "in": "header", "schema": {"type": "integer"}},
              {"name": "c", "in": "cookie", "schema": {"type": "integer"}}]
    stage = param_stage(params, validate_query=False, validate_headers=False, validate_cookies=False)
    assert passes(stage, query="n=x", headers=[("x-n", "x"), ("cookie", "c=x")])


def test_invalid_style_is_a_load_error() -> None:
    """A style that does not exist for the parameter's location is reported at load."""
    with pytest.raises(PolicyError, match="style 'deepObject' is not allowed for header"):
        param_stage([{"name": "X", "in": "header", "style": "deepObject", "schema": {"type": "object"}}])


def test_the_chain_runs_the_compiled_checker_as_the_stage_does() -> None:
    """The chain calls the compiled checker's hook (handed by the stage), and a request gets
    from it what the stage's own hook gives: a 400 with the same detail and logged problems,
    a 415 for a media type the operation does not accept, nothing for a valid body."""
    from bastion.pipeline import Chain
    from bastion.stages.validation.check import Checker
    from bastion.types import Exchange, Request, Response

    stage = body_stage(ORDER_SCHEMA, max_problems=1)
    hook = stage.request_hook()
    assert isinstance(hook.__self__, Checker)  # type: ignore[attr-defined]
    chain = Chain([stage])
    cases: list[tuple[bytes, str, int | None]] = [
        (orjson.dumps({"bookId": "nope", "quantity": 99}), "application/json", 400),
        (b"<order/>", "application/xml", 415),
        (orjson.dumps({"bookId": UUID, "quantity": 2}), "application/json", None),
    ]
    for body, media, status in cases:
        own, own_ex = send(stage, body=body, content_type=media)
        request = Request("POST", "/things", "/things", "", [("content-type", media)])
        request.body = body
        ex = Exchange(request, "req-1")
        answer = chain.request(ex)
        if status is None:
            assert own is None and answer is None
            continue
        assert own is not None and own.status == status
        assert isinstance(answer, Response) and answer.status == status
        assert orjson.loads(answer.body or b"")["detail"] == own.detail
        assert ex.facts["validation"] == own_ex.facts["validation"]
