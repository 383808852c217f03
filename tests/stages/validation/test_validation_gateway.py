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
    """One gateway: service ``v31`` from the 3.1 document, ``v30`` from the 3.0 one."""
    config = {
        "listen": {"host": "127.0.0.1"},
        "access_log": {"path": "access.log"},
        "services": [
            {"name": "v31", "upstream": upstream.url, "openapi": "v31.yaml"},
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
