"""Validation through a real gateway: ``bastion serve`` on loopback, in front of the scripted
upstream, with one OpenAPI 3.1 and one OpenAPI 3.0 document.

Each test sends raw requests and checks both sides: what the client gets, and (with a unique
token in the target) whether the request reached the upstream, and in what form.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from bastion.testing import GatewayProcess
from tests.proxy.scripted import ScriptedUpstream
from tests.proxy.util import assert_problem, one

OK = {"200": {"description": "ok"}}


def _form(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _json(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


#: The 3.1 document (JSON Schema 2020-12).
API31: dict[str, Any] = {
    "openapi": "3.1.0", "info": {"title": "v31", "version": "1"}, "security": [],
    "paths": {
        "/v31/orders": {"post": {"operationId": "order31", "responses": OK,
                                 "requestBody": _json({"qty": {"type": "integer"}})}},
        "/v31/form": {"post": {"operationId": "form", "responses": OK, "requestBody": _form({
            "name": {"type": "string", "maxLength": 10}, "qty": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}})}},
        "/v31/items/{color}": {"get": {"operationId": "byColor", "responses": OK, "parameters": [
            {"name": "color", "in": "path", "required": True, "style": "matrix", "schema": {
                "type": "array", "items": {"type": "string", "enum": ["blue", "green", "a;b"]}}}]}},
        "/v31/tags/{color}": {"get": {"operationId": "byTags", "responses": OK, "parameters": [
            {"name": "color", "in": "path", "required": True, "style": "matrix", "explode": True,
             "schema": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}]}},
        "/v31/things/{id}/details": {"get": {"operationId": "details", "responses": OK, "parameters": [
            {"name": "id", "in": "path", "required": True, "style": "matrix", "schema": {"type": "integer"}}]}},
        "/v31/plain/{id}": {"get": {"operationId": "plain", "responses": OK, "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]}},
        "/v31/search": {"get": {"operationId": "search", "responses": OK, "parameters": [
            {"name": "ids", "in": "query", "explode": False,
             "schema": {"type": "array", "items": {"type": "integer"}}},
            {"name": "names", "in": "query", "explode": False,
             "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
            {"name": "X-Codes", "in": "header", "schema": {"type": "array", "items": {"type": "integer"}}},
        ]}},
    },
}

#: The 3.0 document (JSON Schema Wright-00, translated).
API30: dict[str, Any] = {
    "openapi": "3.0.3", "info": {"title": "v30", "version": "1"}, "security": [],
    "paths": {
        "/v30/orders": {"post": {"operationId": "order30", "responses": OK,
                                 "requestBody": _json({"qty": {"type": "integer"}, "price": {"type": "number"}})}},
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    """The scripted upstream (it echoes what it received)."""
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    """One gateway: service ``v31`` from the 3.1 document (and a hand-declared ``GET /admin``),
    ``v30`` from the 3.0 one."""
    config = {
        "listen": {"host": "127.0.0.1"},
        "access_log": {"path": "access.log"},
        "services": [
            {"name": "v31", "upstream": upstream.url, "openapi": "v31.yaml",
             "routes": [{"path": "/admin", "methods": ["GET"], "public": True}]},
            {"name": "v30", "upstream": upstream.url, "openapi": "v30.yaml"},
        ],
    }
    files = {"v31.yaml": yaml.safe_dump(API31), "v30.yaml": yaml.safe_dump(API30)}
    with GatewayProcess(config, files=files) as gw:
        yield gw


@pytest.fixture
def token() -> str:
    """A string unique to the test, to find its requests in the upstream's record."""
    return "t" + uuid.uuid4().hex[:16]


JSON = [("Content-Type", "application/json")]
FORM = [("Content-Type", "application/x-www-form-urlencoded")]


def test_openapi30_integer_with_a_fraction_is_refused(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                                      token: str) -> None:
    """Through the gateway, a 3.0 document's integer refuses ``1.0`` (400 naming the field,
    nothing forwarded) and takes ``1``; a 3.0 number takes ``1.0``; a 3.1 integer takes ``1.0``."""
    resp = one(gateway, "POST", f"/v30/orders?{token}a", JSON, b'{"qty": 1.0}')
    doc = assert_problem(resp, 400)
    assert doc["detail"] == (
        "body $.qty: 1.0 is not of type 'integer' (in OpenAPI 3.0 an integer has no fraction or exponent)")
    assert not upstream.saw(f"{token}a")
    assert one(gateway, "POST", f"/v30/orders?{token}b", JSON, b'{"qty": 1, "price": 1.0}').status == 200
    assert one(gateway, "POST", f"/v31/orders?{token}c", JSON, b'{"qty": 1.0}').status == 200
    assert upstream.saw(f"{token}b") and upstream.saw(f"{token}c")


def test_empty_array_parameter_is_one_empty_item(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                                  token: str) -> None:
    """``ids=`` and an empty ``X-Codes:`` header are arrays of one empty string: with integer
    items, 400 naming the parameter and nothing forwarded; with string items (and minItems 1)
    ``names=`` is ``[""]`` and is forwarded."""
    doc = assert_problem(one(gateway, "GET", f"/v31/search?ids=&{token}a"), 400)
    assert doc["detail"] == "query parameter 'ids' $[0]: \"\" is not of type 'integer'"
    doc = assert_problem(one(gateway, "GET", f"/v31/search?{token}b", [("X-Codes", "")]), 400)
    assert doc["detail"] == "header 'X-Codes' $[0]: \"\" is not of type 'integer'"
    assert not upstream.saw(f"{token}a") and not upstream.saw(f"{token}b")
    resp = one(gateway, "GET", f"/v31/search?names=&ids=1,2&{token}c", [("X-Codes", "3")])
    assert resp.status == 200, resp.body
    assert resp.json()["target"] == f"/v31/search?names=&ids=1,2&{token}c"


def test_form_body_in_raw_utf8_is_accepted(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                           token: str) -> None:
    """``name=Zoë&qty=3`` sent as raw UTF-8 bytes passes and reaches the upstream unchanged;
    invalid UTF-8, raw or percent-encoded, is 400 with a message saying which, never forwarded."""
    body = "name=Zoë&qty=3".encode()
    resp = one(gateway, "POST", f"/v31/form?{token}a", FORM, body)
    assert resp.status == 200, resp.body
    (record,) = upstream.records(f"{token}a")
    assert record.body == body
    doc = assert_problem(one(gateway, "POST", f"/v31/form?{token}b", FORM, b"name=Zo\xeb&qty=3"), 400)
    assert doc["detail"] == "body: the form body contains bytes that are not valid UTF-8"
    doc = assert_problem(one(gateway, "POST", f"/v31/form?{token}c", FORM, b"name=Zo%EB&qty=3"), 400)
    assert doc["detail"] == "body: the form body has percent-escapes that do not decode to valid UTF-8"
    assert not upstream.saw(f"{token}b") and not upstream.saw(f"{token}c")


def test_repeated_form_field_is_refused(gateway: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """``qty=1&qty=2`` in a form body is 400 naming the field (backends disagree on which value
    wins) and never forwarded; an array field may repeat."""
    doc = assert_problem(one(gateway, "POST", f"/v31/form?{token}a", FORM, b"qty=1&qty=2"), 400)
    assert doc["detail"] == "body: the field 'qty' is given more than once (only array fields may repeat)"
    assert not upstream.saw(f"{token}a")
    assert one(gateway, "POST", f"/v31/form?{token}b", FORM, b"tags=a&qty=1&tags=b").status == 200
    assert upstream.saw(f"{token}b")


def _forwarded(gateway: GatewayProcess, upstream: ScriptedUpstream, target: str, token: str) -> str:
    """Send ``GET target?token``; it must pass: the path the upstream received, which the
    access log must show too."""
    resp = one(gateway, "GET", f"{target}?{token}")
    assert resp.status == 200, (target, resp.body)
    (record,) = upstream.records(token)
    log = gateway.wait_for_access_record(lambda r: r["request_id"] == resp.header("x-request-id"))
    assert log["path"] == record.path
    return record.path


@pytest.mark.parametrize(("target", "forwarded"), [
    ("/v31/items/;color=blue,green", "/v31/items/;color=blue,green"),
    ("/v31/items/;color=a%3Bb,blue", "/v31/items/;color=a%3Bb,blue"),  # an escaped ';' is data
    ("/v31/tags/;color=blue;color=green", "/v31/tags/;color=blue;color=green"),
    ("/v31/things/;id=5/details", "/v31/things/;id=5/details"),
    # ;params of the other segments are dropped, as on any route.
    ("/v31;v=2//things;x=1/;id=5/details;y", "/v31/things/;id=5/details"),
])
def test_matrix_path_parameters_are_routed_and_forwarded(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                                          token: str, target: str, forwarded: str) -> None:
    """Matrix-style path parameters (array, exploded array, primitive) route to their
    operation, pass validation, and reach the upstream with the matrix segment as sent."""
    assert _forwarded(gateway, upstream, target, token) == forwarded


@pytest.mark.parametrize(("target", "detail"), [
    ("/v31/things/;id=x/details", "path parameter 'id': \"x\" is not of type 'integer'"),
    ("/v31/items/;color=blue,red", "path parameter 'color' $[1]: \"red\" is not one of [\"blue\", \"green\", \"a;b\"]"),
    ("/v31/tags/;color=a;color=b;color=c", "path parameter 'color': the array has more than 2 items"),
])
def test_invalid_matrix_values_are_refused(gateway: GatewayProcess, upstream: ScriptedUpstream, token: str,
                                           target: str, detail: str) -> None:
    """A matrix value its schema refuses is 400 naming the parameter, and is not forwarded."""
    doc = assert_problem(one(gateway, "GET", f"{target}?{token}"), 400)
    assert doc["detail"] == detail
    assert not upstream.saw(token)


@pytest.mark.parametrize(("target", "forwarded"), [
    # A '..' after a matrix segment climbs over it and the segment before: /admin is routed
    # (GET, hand-declared) and forwarded, never the matrix route.
    ("/v31/items/;color=blue/../../admin", "/admin"),
    ("/admin;color=blue", "/admin"),
    ("/v31/plain/5;x=1", "/v31/plain/5"),
    ("/v31/search;ids=1", "/v31/search"),
])
def test_params_are_still_dropped_where_no_matrix_parameter_is_declared(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str, target: str, forwarded: str
) -> None:
    """Outside matrix segments, ;params are dropped and the upstream gets the normalised path
    that was routed."""
    assert _forwarded(gateway, upstream, target, token) == forwarded


@pytest.mark.parametrize("target", [
    "/v31/items/%3Bcolor=blue",  # an encoded ';' is no matrix parameter: no route
    "/v31/items/;color=a%2Fb",  # an encoded slash in a matrix value
    "/v31/items/;color=%00",
    "/v31/items/;color=blue/;x=1",  # a ;params-only segment no parameter takes
    "/v31/things/5/details",  # a matrix parameter without ';'
])
def test_matrix_routes_do_not_match_what_they_cannot_forward_faithfully(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str, target: str
) -> None:
    """Spellings a backend could read differently never reach a matrix route: 404, and
    nothing reaches the upstream."""
    assert_problem(one(gateway, "GET", f"{target}?{token}"), 404)
    assert not upstream.saw(token)
