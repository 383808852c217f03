"""Deny by default for authentication: a route that requires it, and that nothing here can
verify, answers 401 from its request head and is never forwarded; delegated and public
routes are forwarded. A real gateway in front of the scripted upstream."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from bastion.testing import GatewayProcess

from .conftest import SHARED_UPSTREAM
from .scripted import ScriptedUpstream
from .util import assert_problem, build, keepalive, one

OPENAPI = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
security:
  - apiKey: []
  - bearerAuth: []
paths:
  /orders:
    get:
      operationId: listOrders
      responses: {"200": {description: ok}}
    post:
      operationId: createOrder
      responses: {"201": {description: created}}
  /catalog:
    get:
      operationId: catalog
      security: []
      responses: {"200": {description: ok}}
  /partner:
    get:
      operationId: partner
      x-bastion-auth: {delegate: upstream}
      responses: {"200": {description: ok}}
components:
  securitySchemes:
    apiKey: {type: apiKey, in: header, name: X-API-Key}
    bearerAuth: {type: http, scheme: bearer}
"""

CHALLENGES = ['ApiKey realm="shop", in="header", name="X-API-Key"', 'Bearer realm="shop"']


@pytest.fixture(scope="module")
def gw(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    """The shop behind a gateway: private OpenAPI operations, a public one, one delegated in
    the document, and two hand-written routes (private, and delegated in bastion.yaml)."""
    config = {
        "access_log": {"path": "access.log"},
        # Nothing here verifies a credential: Bastion's API keys (on by default) are off.
        "policies": {"auth": {"api_keys": {"enabled": False}}},
        "services": [{
            "name": "shop",
            "upstream": {"targets": [upstream.url], **SHARED_UPSTREAM},
            "openapi": "shop.yaml",
            "routes": [
                {"path": "/internal", "operation_id": "internal"},
                # The webhook backend checks its senders' signatures itself.
                {"path": "/hooks", "operation_id": "hooks", "policies": {"auth": {"delegate": "upstream"}}},
            ],
        }],
    }
    with GatewayProcess(config, files={"shop.yaml": OPENAPI}) as process:
        yield process


def test_private_route_answers_401_and_the_upstream_sees_nothing(
    gw: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """GET on an operation that requires apiKey or bearerAuth is a 401 problem+json with one
    challenge per declared scheme; the request never reaches the upstream."""
    resp = one(gw, "GET", f"/orders?{token}")
    doc = assert_problem(resp, 401)
    assert doc["title"] == "Unauthorized"
    assert "requires authentication" in str(doc["detail"])
    assert resp.header_all("www-authenticate") == CHALLENGES
    assert resp.header("cache-control") == "no-store"
    assert not upstream.saw(token)


def test_credentials_change_nothing_while_nothing_verifies_them(
    gw: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """An API key or a bearer token is not a way in: nothing can verify it, so the request is
    refused all the same and never forwarded (the credentials never leave the gateway)."""
    for header in (("X-API-Key", f"key-{token}"), ("Authorization", f"Bearer {token}")):
        assert_problem(one(gw, "GET", f"/orders?{token}", [header]), 401)
    assert not upstream.saw(token)


def test_refusal_is_logged_and_counted(gw: GatewayProcess, token: str) -> None:
    """The access log record says the route, `blocked_by: auth` and the reason; the refusal is
    counted in bastion_blocked_total{stage="auth"}."""
    doc = assert_problem(one(gw, "GET", f"/orders?{token}"), 401)
    record = gw.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["status"], record["route"], record["service"]) == (401, "listOrders", "shop")
    assert (record["blocked_by"], record["reason"]) == ("auth", "auth.unconfigured")
    assert record["decisions"] == [{"stage": "auth", "action": "block", "reason": "auth.unconfigured"}]
    assert "upstream" not in record and "auth" not in record
    wanted = 'bastion_blocked_total{action="block",reason="auth.unconfigured",stage="auth"}'
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline and wanted not in text:
        status, text = gw.admin("GET", "/metrics")
        assert status == 200
        time.sleep(0.2)
    assert re.search(re.escape(wanted) + r" [1-9]", text), text


def test_refused_before_the_body_is_read(gw: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """A head announcing a 10 MB body, with none of it sent, gets the 401 at once (the gateway
    waits for no body), then the connection is closed rather than the body read."""
    with keepalive(gw) as conn:
        conn.send(build("POST", f"/orders?{token}", [("Content-Length", "10000000")]))
        resp = conn.read_response("POST")
        assert_problem(resp, 401, closes=True)
        assert conn.is_closed_by_peer(wait=5)
    assert not upstream.saw(token)


def test_expect_continue_is_refused_without_asking_for_the_body(
    gw: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """With `Expect: 100-continue` the client is told 401, never `100 Continue`: it uploads nothing."""
    with keepalive(gw) as conn:
        conn.send(build("POST", f"/orders?{token}", [("Content-Length", "5000000"), ("Expect", "100-continue")]))
        resp = conn.read_response("POST", skip_informational=False)
        assert_problem(resp, 401)
    assert not upstream.saw(token)


def test_small_body_is_dropped_and_the_connection_stays_usable(
    gw: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A refused request's small body is read and dropped: the next request on the same
    connection is framed correctly and served (here by the public route)."""
    with keepalive(gw) as conn:
        conn.send(build("POST", f"/orders?{token}", [("Content-Type", "application/json")], b'{"item": 1}'))
        assert_problem(conn.read_response("POST"), 401, closes=False)
        conn.send(build("GET", f"/catalog?{token}"))
        assert conn.read_response().status == 200
    assert [r.path for r in upstream.records(token)] == ["/catalog"]


def test_hand_written_private_route_is_refused_with_a_bearer_challenge(
    gw: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A hand-written route that is not `public: true` requires authentication too; with no
    scheme declared, the 401 still carries a challenge."""
    resp = one(gw, "GET", f"/internal?{token}")
    assert_problem(resp, 401)
    assert resp.header_all("www-authenticate") == ['Bearer realm="shop"']
    assert not upstream.saw(token)


@pytest.mark.parametrize("path", ["/partner", "/hooks"])
def test_delegated_route_is_forwarded_and_logged_as_delegated(
    gw: GatewayProcess, upstream: ScriptedUpstream, token: str, path: str
) -> None:
    """`delegate: upstream` (in the OpenAPI document or bastion.yaml) forwards the request with
    its credentials for the backend to check, and the access log says it was delegated."""
    resp = one(gw, "GET", f"{path}?{token}", [("Authorization", f"Bearer {token}")])
    assert resp.status == 200
    (seen,) = upstream.records(token)
    assert seen.header("authorization") == f"Bearer {token}"
    record = gw.wait_for_access_record(lambda r: r["request_id"] == resp.header("x-request-id"))
    assert (record["status"], record["auth"]) == (200, "delegated")
    assert "blocked_by" not in record


def test_public_route_is_forwarded(gw: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """`security: []` makes an operation public: forwarded, with no auth field in the log."""
    resp = one(gw, "GET", f"/catalog?{token}")
    assert resp.status == 200
    assert len(upstream.records(token)) == 1
    record = gw.wait_for_access_record(lambda r: r["request_id"] == resp.header("x-request-id"))
    assert record["status"] == 200 and "auth" not in record and "blocked_by" not in record
