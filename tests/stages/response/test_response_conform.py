"""The response stage's proof that a body loses nothing (:mod:`bastion.stages.response.conform`):
which trees get one, what it accepts and refuses, and that the stage decides exactly as the
walk alone does on thousands of mutated bodies."""

from __future__ import annotations

import random
from typing import Any

import orjson

from bastion.pipeline.stage import RouteInfo
from bastion.stages.response import ResponseConfig, ResponseFilterStage
from bastion.stages.response.conform import proof_for
from bastion.stages.response.schema import response_schemas
from bastion.stages.validation.body import duplicate_key
from bastion.types import Exchange, Request, Response

ORDER = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "total": {"type": "number"},
    "password": {"type": "string", "writeOnly": True},
    "customer": {"type": "object", "properties": {"id": {"type": "integer"}, "e-mail": {"type": "string"}}},
    "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
    "tags": {"type": "array", "items": {"type": "string"}},
    "note": {},
}}
ORDERS = {"type": "object", "properties": {"count": {"type": "integer"}, "orders": {"type": "array", "items": ORDER}}}

CONFORMING = (b'{"count": 2, "orders": [{"id": 1, "name": "caf\xc3\xa9 \\"1\\"", "total": 9.5, '
              b'"customer": {"id": 7, "e-mail": "a@example.com"}, "items": [{"sku": "x-1"}, {"sku": null}], '
              b'"tags": ["a", "b"], "note": [1, "two", false]}, {"id": 2, "items": [], "note": "n\\u0061me"}]}')


def operation(schema: Any) -> dict[str, Any]:
    return {"responses": {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}}


def build(response_schema: Any, **config: Any) -> ResponseFilterStage:
    route = RouteInfo("r", "svc", "/orders", frozenset({"GET"}), True, operation(response_schema), {})
    return ResponseFilterStage.from_config(ResponseConfig.model_validate(config), route)


def proof(schema: Any, never_return: frozenset[str] = frozenset({"password", "secret"})) -> Any:
    schemas = response_schemas(operation(schema), {}, never_return)
    assert schemas is not None
    keep = schemas.keep_for(200)
    assert keep is not None
    return proof_for(keep)


def outcome(stage: ResponseFilterStage, body: bytes) -> tuple[object, bytes | None, list[tuple[str, str]], object]:
    """Everything the stage decides about one response: its outcome, what is sent, the facts."""
    exchange = Exchange(Request("GET", "/orders", "/orders", "", []), "req-1")
    exchange.response = Response(200, [("content-type", "application/json"),
                                       ("content-length", str(len(body)))], body)
    try:
        result: object = stage.on_response(exchange)
    except ValueError as exc:  # the walk refuses documents nested too deep: so must the proof's stage
        result = ("failed", str(exc))
    return result, exchange.response.body, list(exchange.response.headers), exchange.facts.get("response")


def test_a_conforming_body_is_proved_and_sent_as_it_came() -> None:
    """The usual case takes the proof: a body of declared members (escapes, UTF-8, nulls,
    scalars and lists of scalars where the schema constrains nothing) is accepted, and the
    stage sends the upstream's very bytes and records nothing."""
    assert proof(ORDERS).conforms(CONFORMING)
    result, body, headers, facts = outcome(build(ORDERS), CONFORMING)
    assert result is None and body == CONFORMING and facts is None
    assert ("content-length", str(len(CONFORMING))) in headers


def test_what_the_walk_would_remove_is_refused() -> None:
    """Every body the walk changes is refused by the proof: an undeclared member at any depth,
    a writeOnly member, a ``never_return`` name in any case or behind ``\\u`` escapes, an
    object where the schema constrains nothing (it may hold a name that never leaves), a
    duplicate member whose first copy holds an undeclared one."""
    check = proof(ORDERS)
    refused = [
        b'{"count": 1, "internal": 1}',
        b'{"orders": [{"id": 1, "customer": {"id": 2, "tier": "gold"}}]}',
        b'{"orders": [{"items": [{"sku": "a", "cost": 1}]}]}',
        b'{"orders": [{"password": "hunter2"}]}',
        b'{"orders": [{"\\u0070assword": "hunter2"}]}',
        b'{"orders": [{"PassWord": "hunter2"}]}',
        b'{"orders": [{"note": {"secret": 1}}]}',
        b'{"orders": [{"note": [{"secret": 1}]}]}',
        b'{"orders": [{"customer": {"id": 1, "x": 2}, "customer": {"id": 1}}]}',
        b'{"count": 1, "m0": 1}',  # the structs' own attribute names are no member names
    ]
    for body in refused:
        assert not check.conforms(body), body
    assert check.conforms(b'{"orders": [{"customer": {"id": 1}, "customer": {"id": 2}}]}')


def test_bodies_orjson_refuses_are_refused_too() -> None:
    """Invalid UTF-8, lone surrogates, NaN, trailing commas, control characters in strings,
    a byte-order mark, trailing bytes and text that is not JSON: the proof accepts none of
    them, so the walk's parse decides (``not_json``) as before."""
    check = proof(ORDERS)
    for body in [b'{"count": "\xff"}', b'{"count": "\\ud800"}', b'{"count": NaN}', b'{"count": 1,}',
                 b'{"orders": [1,]}', b'{"count": "a\nb"}', b'\xef\xbb\xbf{"count": 1}', b'{"count": 1} x',
                 b"<html>oops</html>", b"", b'{"count": 01}']:
        assert not check.conforms(body), body
    result, _, _, facts = outcome(build(ORDERS, schema="block"), b'{"count": "\xff"}')
    assert getattr(result, "status", None) == 502 and facts == {"not_json": True}


def test_trees_no_type_describes_exactly_have_no_proof() -> None:
    """No proof where the walk must inspect what the schema does not list (an object with
    declared members that allows others), for recursive schemas, or where ``never_return``
    holds JSON pointers (only the parsed document can follow them); bodies there are walked."""
    assert proof({"type": "object", "properties": {"a": {}}, "additionalProperties": True}) is None
    assert proof({"type": "object", "properties": {"m": {"type": "object", "properties": {"a": {}},
                                                         "additionalProperties": {"type": "string"}}}}) is None
    doc = {"components": {"schemas": {"Node": {"type": "object", "properties": {
        "kids": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}}}}
    route = RouteInfo("r", "svc", "/t", frozenset({"GET"}), True, operation({"$ref": "#/components/schemas/Node"}), doc)
    recursive = ResponseFilterStage.from_config(ResponseConfig(), route)
    assert recursive._proofs == {}
    assert build(ORDERS, never_return=["/orders/*/name"])._proofs == {}
    assert len(build(ORDERS)._proofs) == 1


_INSERTS = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b" ", b"\\u0070", b"\xff", b"\xc3", b"0", b"-", b"e",
            b'"password"', b'"PASSWORD"', b'"x": 1, ', b'"id": 3, ', b'{"secret": 1}', b"null", b"1e999", b"[[[[",
            b'"\\ud800"', b"\n", b'"sku": "q", ']


_VALUES: list[Any] = [None, True, 0, -1.5, 1e300, 2**63 - 1, "", "s\u00e9", [], ["a", 1], {}, {"sku": "k"},
                      {"secret": 1}, [{}]]
_NAMES = ["id", "name", "note", "sku", "tags", "customer", "x", "password", "Secret", "e-mail", "\u0000"]


def _objects(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value, *(o for v in value.values() for o in _objects(v))]
    if isinstance(value, list):
        return [o for v in value for o in _objects(v)]
    return []


def _reshape(rng: random.Random, body: bytes) -> bytes:
    """A change to the document's structure: a member added, dropped or given another value."""
    doc = orjson.loads(body)
    target = rng.choice(_objects(doc))
    if target and rng.random() < 0.4:
        del target[rng.choice(list(target))]
    else:
        target[rng.choice(_NAMES)] = rng.choice(_VALUES)
    return orjson.dumps(doc)


def _mutate(rng: random.Random, body: bytes) -> bytes:
    if rng.random() < 0.5:
        return _reshape(rng, body)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(body) + 1)
        kind = rng.random()
        if kind < 0.5:
            body = body[:at] + rng.choice(_INSERTS) + body[at:]
        elif kind < 0.8:
            body = body[:at] + body[at + rng.randint(1, 4):]
        else:
            body = body[:at] + bytes([rng.randrange(256)]) + body[at + 1:]
    return body


def _repeats_a_member(body: bytes) -> bool:
    try:
        return duplicate_key(body, orjson.loads(body)) is not None
    except orjson.JSONDecodeError:
        return False


def test_the_stage_decides_as_the_walk_alone_on_mutated_bodies() -> None:
    """Differential check, 2,100 mutated bodies (members added, dropped or given other values
    and types; inserted JSON tokens, hidden and undeclared names, escapes, invalid UTF-8,
    deleted and flipped bytes), in filter, monitor and block
    modes: the stage with its proof decides, sends and records exactly what the same stage
    decides with the walk alone. Both branches are taken many times (the check is not
    vacuous)."""
    rng = random.Random(16)
    seeds = [CONFORMING, orjson.dumps({"count": 1, "orders": [{"id": 1, "tags": ["a"], "note": None}]})]
    proved = walked = 0
    for mode in ("filter", "monitor", "block"):
        fast = build(ORDERS, schema=mode)
        slow = build(ORDERS, schema=mode)
        slow._proofs = {}  # the same stage deciding by the walk alone (the class is interpreted)
        check = next(iter(fast._proofs.values()))
        for _ in range(700):
            body = _mutate(rng, rng.choice(seeds))
            if check.conforms(body):
                proved += 1
                orjson.loads(body)  # whatever the proof accepts, orjson parses
            else:
                walked += 1
            by_proof, by_walk = outcome(fast, body), outcome(slow, body)
            if by_proof != by_walk and _repeats_a_member(body):
                # A repeated member: the proof checked every copy and sends the bytes, the
                # walk checked the last copies and sends those. Same decision, same value.
                assert by_proof[0] is None and by_walk[0] is None, body
                assert by_proof[1] is not None and by_walk[1] is not None, body
                assert orjson.loads(by_proof[1]) == orjson.loads(by_walk[1]), body
                assert isinstance(by_walk[3], dict) and "duplicate_key" in by_walk[3], body
                continue
            assert by_proof == by_walk, body
    assert proved > 300 and walked > 300, (proved, walked)
