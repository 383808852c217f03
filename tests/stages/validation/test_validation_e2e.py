"""The validation stage in the real gateway, in front of the real demo API.

The gateway runs as ``bastion serve`` (``GatewayProcess``) with the demo's OpenAPI file;
the demo API runs on loopback and is also asked directly, to prove what reached it.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import yaml

from bastion.demo.app import openapi_path
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data) if data else None
    finally:
        conn.close()


def strict_openapi() -> str:
    """The demo document with ``x-bastion-validation: {strict: true}`` on POST /orders.

    OrderCreate's own ``additionalProperties: false`` is removed, so it is strict mode, not
    the schema, that refuses the unknown field.
    """
    doc = yaml.safe_load(Path(openapi_path()).read_text())
    doc["paths"]["/orders"]["post"]["x-bastion-validation"] = {"strict": True}
    del doc["components"]["schemas"]["OrderCreate"]["additionalProperties"]
    return yaml.safe_dump(doc, sort_keys=False)


def test_demo_orders_valid_passes_invalid_never_reaches_the_api(demo_api: DemoServer) -> None:
    """A valid POST /orders is created by the API; quantity 0 or an unknown field (strict) gets 400
    problem+json from the gateway, and the API's order list shows they never arrived."""
    # POST /orders requires authentication, which would be answered 401 before validation;
    # this test is about validation, so it is delegated (the demo API checks nothing itself).
    delegated = {"auth": {"delegate": "upstream"}}
    config = {
        "access_log": {"path": "access.log"},
        "services": [
            {"name": "books", "upstream": demo_api.url, "openapi": "books.openapi.yaml", "policies": delegated}
        ],
    }
    _, _, books = call(demo_api.port, "GET", "/books?limit=100")
    book = next(b for b in books["items"] if b["stock"] >= 5)
    order = {"bookId": book["id"], "quantity": 1, "shippingAddress": {
        "name": "Aoife O'Brien", "line1": "1 Main St", "city": "Cork", "postalCode": "T12 X1", "country": "IE"}}
    with GatewayProcess(config, files={"books.openapi.yaml": strict_openapi()}) as gw:
        before = len(call(demo_api.port, "GET", "/orders")[2]["items"])

        status, _, created = call(gw.port, "POST", "/orders", order)
        assert status == 201
        assert created["quantity"] == 1

        status, headers, problem = call(gw.port, "POST", "/orders", {**order, "quantity": 0})
        assert status == 400
        assert headers["content-type"] == "application/problem+json"
        assert problem["detail"] == "body $.quantity: 0 is less than the minimum of 1"

        status, headers, problem = call(gw.port, "POST", "/orders", {**order, "coupon": "FREE"})
        assert status == 400
        assert headers["content-type"] == "application/problem+json"
        assert problem["detail"] == 'body $: unexpected property "coupon" (not declared by the schema)'

        status, _, problem = call(gw.port, "GET", "/books?limit=500")
        assert (status, problem["detail"]) == (400, "query parameter 'limit': 500 is greater than the maximum of 100")

        after = len(call(demo_api.port, "GET", "/orders")[2]["items"])
        assert after == before + 1  # only the valid order reached the API

        record = gw.wait_for_access_record(lambda r: r.get("blocked_by") == "validation" and r.get("status") == 400)
        assert record["decisions"][0]["reason"] == "validation.body"
