"""The response stage's hook on responses built by hand: what of a body is kept, by schema,
``writeOnly`` and ``never_return``; error masking; uniform failures; config errors."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from bastion.errors import PolicyError
from bastion.pipeline.stage import RouteInfo
from bastion.stages.response import ResponseConfig, ResponseFilterStage
from bastion.stages.response.schema import response_schemas
from bastion.types import Block, Decision, Exchange, Request, Response

USER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "password": {"type": "string", "writeOnly": True},
        "address": {"type": "object", "properties": {"city": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "object", "properties": {"label": {"type": "string"}}}},
        "meta": {"type": "object", "additionalProperties": True},
        "scores": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {}}}},
    },
}


def operation(schema: Any, *, status: str = "200", media: str = "application/json") -> dict[str, Any]:
    return {"responses": {status: {"description": "ok", "content": {media: {"schema": schema}}}}}


def build(op: dict[str, Any] | None, doc: dict[str, Any] | None = None, **config: Any) -> ResponseFilterStage:
    route = RouteInfo("r", "svc", "/things", frozenset({"GET"}), True, op, doc)
    return ResponseFilterStage.from_config(ResponseConfig.model_validate(config), route)


def respond(stage: ResponseFilterStage, body: Any, *, status: int = 200, content_type: str = "application/json",
            headers: list[tuple[str, str]] | None = None) -> tuple[object, Exchange]:
    exchange = Exchange(Request("GET", "/things", "/things", "", []), "req-1")
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    exchange.response = Response(status, [("content-type", content_type), *(headers or [])], raw)
    return stage.on_response(exchange), exchange


def sent(exchange: Exchange) -> Any:
    assert exchange.response is not None and exchange.response.body is not None
    return orjson.loads(exchange.response.body)


def test_filter_keeps_exactly_what_the_schema_declares() -> None:
    """Undeclared members are removed at every depth (objects, arrays of objects); a writeOnly
    password goes whatever the mode; ``additionalProperties: true`` keeps a free-form map
    (still without names that never leave); an additionalProperties schema filters each value."""
    stage = build(operation(USER))
    outcome, ex = respond(stage, {
        "id": 1, "name": "ann", "password": "hunter2", "is_admin": True,
        "address": {"city": "Oslo", "internal_zone": "db-3"},
        "tags": [{"label": "a", "owner_id": 9}, {"label": "b"}],
        "meta": {"anything": 1, "secret": "s3"},
        "scores": {"math": {"v": 1, "debug": "x"}},
    })
    assert outcome is None
    assert sent(ex) == {"id": 1, "name": "ann", "address": {"city": "Oslo"}, "tags": [{"label": "a"}, {"label": "b"}],
                        "meta": {"anything": 1}, "scores": {"math": {"v": 1}}}
    facts = ex.facts["response"]
    assert isinstance(facts, dict)
    assert facts["undeclared"] == 4 and facts["hidden"] == 2
    assert sorted(facts["paths"]) == ["/address/internal_zone", "/is_admin", "/scores/math/debug", "/tags/0/owner_id"]
    assert "hunter2" not in str(facts) and "db-3" not in str(facts)
    assert ex.response is not None and ex.response.header("content-length") is None


def test_refs_compositions_and_recursion() -> None:
    """``$ref`` (recursive too), allOf and oneOf: a property any member declares is kept;
    writeOnly reached through a ``$ref`` is removed."""
    doc = {"components": {"schemas": {
        "Node": {"type": "object", "properties": {"name": {}, "children": {"type": "array", "items": {
            "$ref": "#/components/schemas/Node"}}}},
        "Base": {"type": "object", "properties": {"id": {}}},
        "Secret": {"type": "string", "writeOnly": True},
    }}}
    schema = {"allOf": [{"$ref": "#/components/schemas/Base"}, {"properties": {
        "tree": {"$ref": "#/components/schemas/Node"},
        "pin": {"$ref": "#/components/schemas/Secret"},
        "pet": {"oneOf": [{"properties": {"bark": {}}}, {"properties": {"meow": {}}}]}}}]}
    stage = build(operation(schema), doc)
    tree = {"name": "a", "y": 1, "children": [{"name": "b", "children": [{"name": "c", "z": 1}]}]}
    _, ex = respond(stage, {"id": 1, "x": 2, "pin": "1234", "pet": {"bark": 1, "meow": 2, "vet": 3}, "tree": tree})
    assert sent(ex) == {"id": 1, "pet": {"bark": 1, "meow": 2},
                        "tree": {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}}


def test_never_return_names_and_pointers_without_any_schema() -> None:
    """On a route without an OpenAPI operation, default names go at any depth (any case), and a
    pointer with ``*`` removes one path only; a body without those names is sent as it came."""
    stage = build(None, never_return=["password", "Password_Hash", "/data/*/token"])
    _, ex = respond(stage, {"users": [{"PASSWORD": "x", "password_hash": "$2b$..."}],
                            "data": [{"token": "t", "id": 1}], "token": "kept"})
    assert sent(ex) == {"users": [{}], "data": [{"id": 1}], "token": "kept"}
    raw = b'{"id": 1,   "name": "same bytes"}'
    _, ex = respond(stage, raw)
    assert ex.response is not None and ex.response.body is raw and "response" not in ex.facts


def test_block_and_monitor_modes() -> None:
    """``block`` refuses an undeclared property with 502 (reason response.undeclared_property);
    ``monitor`` sends the body unchanged but for writeOnly members, and records a decision."""
    body = {"id": 1, "extra": 2, "password": "p"}
    outcome, _ = respond(build(operation(USER), schema="block"), body)
    assert isinstance(outcome, Block) and outcome.status == 502 and outcome.reason == "response.undeclared_property"
    outcome, ex = respond(build(operation(USER), schema="monitor"), body)
    assert outcome is None and sent(ex) == {"id": 1, "extra": 2}
    assert ex.decisions == [Decision("response", "monitor", "response.undeclared_property")]
    outcome, ex = respond(build(operation(USER), schema="off"), body)
    assert outcome is None and sent(ex) == {"id": 1, "extra": 2}


def test_undeclared_status_policies_and_ranges() -> None:
    """A status outside the declared codes is blocked (502), recorded, or passed; ``4XX`` and
    ``default`` declare whole ranges."""
    op = operation(USER)
    outcome, ex = respond(build(op, undeclared_status="block"), {"id": 1}, status=201)
    assert isinstance(outcome, Block) and outcome.reason == "response.undeclared_status"
    outcome, ex = respond(build(op), {"id": 1}, status=201)
    assert outcome is None and ex.facts["response"] == {"undeclared_status": 201}
    op["responses"]["4XX"] = {"description": "client error"}
    outcome, ex = respond(build(op, undeclared_status="block"), {"error": "x"}, status=404)
    assert outcome is None and sent(ex) == {"error": "x"}


def test_upstream_5xx_masked_with_the_original_only_in_facts() -> None:
    """A 500 with a stack trace becomes problem+json carrying the request ID (status kept,
    Retry-After kept); the record keeps the first bytes of the original, marked truncated."""
    trace = b"Traceback (most recent call last):\n  File app.py line 3\npsycopg2.errors.UndefinedTable" * 20
    outcome, ex = respond(build(None, error_body_kept=64), trace, status=503, content_type="text/plain",
                          headers=[("retry-after", "5"), ("x-debug-token", "abc")])
    assert outcome is None and ex.response is not None
    assert ex.response.status == 503 and ex.response.header("content-type") == "application/problem+json"
    problem = sent(ex)
    assert problem["request_id"] == "req-1" and "Traceback" not in str(problem)
    assert ex.response.header("retry-after") == "5" and ex.response.header("x-debug-token") is None
    assert ex.facts["response"] == {"masked": {"status": 503, "content_type": "text/plain",
                                               "body": trace[:64].decode(), "truncated": True}}
    outcome, ex = respond(build(None, errors="pass"), trace, status=500, content_type="text/plain")
    assert ex.response is not None and ex.response.body == trace


def test_bastions_own_answers_are_left_alone() -> None:
    """A stage's refusal (blocked_by set) is neither masked nor filtered."""
    exchange = Exchange(Request("GET", "/things", "/things", "", []), "req-1")
    exchange.blocked_by = "ratelimit"
    exchange.response = Response(503, [("content-type", "application/json")], b'{"password": "x"}')
    assert build(None).on_response(exchange) is None
    assert exchange.response.body == b'{"password": "x"}'


def test_uniform_failures_replace_every_failure_alike() -> None:
    """A 404 "no such user", a 401 "wrong password" and a 200 carrying an error text all become
    the same configured answer, byte for byte; a real success passes (filtered as usual)."""
    uniform = {"status": 401, "body": {"error": "invalid credentials"}, "headers": {"www-authenticate": "Form"},
               "match_body": ["\"error\""]}
    stage = build(None, uniform_failures=uniform)
    answers = []
    for status, body in ((404, {"error": "Username does not exist"}), (401, {"error": "Password is not correct"}),
                         (200, {"error": "locked", "user": "ann"})):
        _, ex = respond(stage, body, status=status)
        assert ex.response is not None
        answers.append((ex.response.status, ex.response.headers, ex.response.body))
        assert ex.facts["response"] == {"uniform": status}
    assert answers[0] == answers[1] == answers[2]
    assert answers[0] == (401, [("content-type", "application/json"), ("www-authenticate", "Form"),
                                ("cache-control", "no-store")], b'{"error":"invalid credentials"}')
    _, ex = respond(stage, {"token": "t", "password": "p"})
    assert ex.response is not None and ex.response.status == 200 and sent(ex) == {"token": "t"}


def test_min_latency_pads_every_answer_of_the_operation() -> None:
    """With ``min_latency``, an answer that came fast waits (the hook gives an awaitable that
    then decides as decided, a block included); one that came late enough does not wait."""
    stage = build(operation(USER), uniform_failures={"min_latency": 0.05}, schema="block")
    outcome, _ = respond(stage, {"id": 1, "x": 1})
    assert inspect.isawaitable(outcome)
    decided = asyncio.run(_settle(outcome))
    assert isinstance(decided, Block) and decided.reason == "response.undeclared_property"
    exchange = Exchange(Request("GET", "/things", "/things", "", []), "req-2", started=0.0)  # long ago
    exchange.response = Response(404, [], b"")
    assert stage.on_response(exchange) is None


async def _settle(awaitable: Any) -> object:
    return await awaitable


def test_config_errors_name_the_field() -> None:
    """min_latency at or above the stage's timeout, empty match texts, header injection, an
    unknown mode and an unresolvable ``$ref`` are load errors."""
    with pytest.raises(ValidationError, match=r"min_latency .* must be below the stage's timeout"):
        ResponseConfig.model_validate({"uniform_failures": {"min_latency": 2}})
    with pytest.raises(ValidationError, match="empty text"):
        ResponseConfig.model_validate({"uniform_failures": {"match_body": [""]}})
    with pytest.raises(ValidationError, match="CR, LF or NUL"):
        ResponseConfig.model_validate({"uniform_failures": {"headers": {"x-a": "1\r\nset-cookie: a"}}})
    with pytest.raises(ValidationError, match="schema"):
        ResponseConfig.model_validate({"schema": "strip"})
    with pytest.raises(PolicyError, match="does not resolve"):
        build(operation({"$ref": "#/components/schemas/Missing"}), {})


def test_shadow_mode_records_everything_and_changes_nothing() -> None:
    """``enforce: false``: a 500 is recorded as masked but sent as it came; a failure of a
    uniform operation is recorded but not replaced; undeclared and never_return members are
    counted but stay; nothing waits."""
    shadow = build(operation(USER), enforce=False, uniform_failures={"min_latency": 0.5})
    outcome, ex = respond(shadow, b"Traceback", status=500, content_type="text/plain")
    assert outcome is None and ex.response is not None and ex.response.body == b"Traceback"
    assert ex.facts["response"] == {"masked": {"status": 500, "content_type": "text/plain", "body": "Traceback",
                                               "truncated": False}}
    outcome, ex = respond(shadow, {"error": "no such user"}, status=404)
    assert outcome is None and ex.response is not None and ex.response.status == 404
    assert ex.facts["response"] == {"uniform": 404, "undeclared_status": 404}
    body = {"id": 1, "extra": 2, "password": "p"}
    outcome, ex = respond(shadow, body)
    assert outcome is None and sent(ex) == body
    assert ex.facts["response"] == {"undeclared": 1, "paths": ["/extra"], "hidden": 1}


def test_a_pointer_ending_in_a_wildcard_is_always_applied() -> None:
    """``/data/*`` empties ``data`` whatever its members are called (no byte search can rule
    it out beforehand)."""
    _, ex = respond(build(None, never_return=["/data/*"]), {"data": {"a": 1, "b": 2}, "ok": True})
    assert sent(ex) == {"data": {}, "ok": True}


def test_a_body_that_should_be_json_and_is_not() -> None:
    """Where the status declares a JSON schema, an HTML page or broken JSON cannot be filtered:
    ``block`` refuses it (response.not_json), ``filter`` lets it through and records it; on a
    route without a schema, broken JSON naming a hidden property passes as it came."""
    for content_type, raw in (("text/html", b"<pre>debug</pre>"), ("application/json", b'{"id": 1,')):
        outcome, ex = respond(build(operation(USER), schema="block"), raw, content_type=content_type)
        assert isinstance(outcome, Block) and outcome.reason == "response.not_json"
        outcome, ex = respond(build(operation(USER)), raw, content_type=content_type)
        assert outcome is None and ex.response is not None and ex.response.body == raw
        assert ex.facts["response"] == {"not_json": True}
    outcome, ex = respond(build(None), b'{"password": ', content_type="application/json")
    assert outcome is None and "response" not in ex.facts


def test_never_return_names_match_any_case_in_every_response() -> None:
    """A ``never_return`` name is removed whatever the case of the member (``PassWord``), a
    non-ASCII member whose lower-case form is longer than itself (``İD``, lower-cased to three
    characters) still matches its name, and a member of another name and the same length
    stays; the stage remembers the answer per member name, and the second response with the
    same names is filtered the same way."""
    stage = build(None, never_return=["password", "i\u0307d"])
    for _ in range(2):
        outcome, ex = respond(stage, {"PassWord": "p", "\u0130D": "x", "passport": "kept", "nested": [{"PASSWORD": 1}]})
        assert outcome is None
        assert sent(ex) == {"passport": "kept", "nested": [{}]}
        assert ex.facts["response"] == {"hidden": 3}


def test_a_declared_property_named_in_never_return_still_never_leaves() -> None:
    """A property the schema declares (not ``writeOnly``) whose name, in any case, is a
    ``never_return`` name is removed at every depth and counted as hidden, not undeclared;
    its declared neighbours stay. (The schema trees leave such names out of their members,
    so the walk finds them as it finds any other name that never leaves.)"""
    schema = {"type": "object", "properties": {
        "id": {"type": "integer"}, "Secret": {"type": "string"},
        "child": {"type": "object", "properties": {"api_token": {"type": "string"}, "ok": {}}},
    }}
    stage = build(operation(schema), never_return=["secret", "API_TOKEN"])
    outcome, ex = respond(stage, {"id": 1, "Secret": "s", "child": {"api_token": "t", "ok": True}})
    assert outcome is None
    assert sent(ex) == {"id": 1, "child": {"ok": True}}
    assert ex.facts["response"] == {"hidden": 2}


def test_schemas_built_for_other_never_return_names_are_refused() -> None:
    """The stage refuses schema trees built for other ``never_return`` names: their members
    could still declare a name that must never leave."""
    schemas = response_schemas(operation(USER), {}, frozenset({"other"}))
    with pytest.raises(ValueError, match="never_return"):
        ResponseFilterStage(ResponseConfig(), schemas)


def test_a_repeated_member_sends_the_copy_that_was_checked() -> None:
    """orjson keeps a repeated member's last copy, so the walk never sees the first: when a
    first copy holds an undeclared member (``db_shard``) and the last is clean, the client
    gets the checked tree (the last copy only), not the upstream's bytes with both. A body
    that repeats nothing and loses nothing is still sent as it came."""
    stage = build(operation(USER))
    repeated = b'{"id": 1, "address": {"city": "Oslo", "db_shard": "pg-1"}, "address": {"city": "Oslo"}}'
    outcome, ex = respond(stage, repeated, headers=[("content-length", str(len(repeated)))])
    assert outcome is None and ex.response is not None and ex.response.body is not None
    assert b"db_shard" not in ex.response.body and b"pg-1" not in ex.response.body
    assert sent(ex) == {"id": 1, "address": {"city": "Oslo"}}
    assert ex.response.header("content-length") is None
    assert ex.facts["response"] == {"duplicate_key": "address"}
    clean = b'{"id": 1,  "address": {"city": "Oslo"}, "tags": [{"label": "a"}]}'
    outcome, ex = respond(build(operation({**USER, "additionalProperties": True})), clean)
    assert outcome is None and ex.response is not None and ex.response.body == clean
