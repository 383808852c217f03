"""Authorization through the real proxy: raw requests on sockets, a real upstream, the
access log. Each refusal is a 403 (or 401) problem document the upstream never sees, with
the ``access.<rule>`` reason in the record."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.testing import RawConnection, RawResponse, parse_responses, raw_request
from tests.proxy.util import assert_problem, build

from .gateway import AccessGateway, Shop

ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
USERNAME = {"name": "username", "in": "path", "required": True, "schema": {"type": "string"}}
JSON_BODY = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "id": {"type": "string", "readOnly": True}},
            }
        }
    }
}
OK = {"200": {"description": "ok"}}

DOC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "shop", "version": "1"},
    "components": {"securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
    "security": [{"key": []}],
    "paths": {
        "/users/{username}": {
            "parameters": [USERNAME],
            "get": {"operationId": "getUser", "responses": OK,
                    "x-bastion-access": {"owner": {"param": "username"}}},
            "delete": {"operationId": "deleteUser", "tags": ["Admin"], "responses": OK},
        },
        "/admin/users": {"get": {"operationId": "listAllUsers", "tags": ["admin"], "responses": OK},
                         "post": {"operationId": "importUsers", "tags": ["admin"], "responses": OK,
                                  "requestBody": {"content": {"application/octet-stream": {}}}}},
        "/register": {"post": {"operationId": "register", "security": [], "requestBody": JSON_BODY,
                               "responses": OK, "x-bastion-access": {"property_check": True}}},
        "/books": {"post": {"operationId": "createBook", "requestBody": JSON_BODY, "responses": OK,
                            "x-bastion-access": {"learn_ownership": {"kind": "books", "id_from": "body:$.id"}}}},
        "/books/{id}": {
            "parameters": [ID],
            "get": {"operationId": "getBook", "responses": OK,
                    "x-bastion-access": {"learned_owner": {"kind": "books", "param": "id"}}},
        },
        "/stats": {"get": {"operationId": "stats", "responses": OK,
                           "x-bastion-access": {"ip_deny": ["127.0.0.0/8", "::1/128"]}}},
    },
}


def config(shop: Shop, folder: Path) -> dict[str, Any]:
    (folder / "shop.json").write_text(json.dumps(DOC))
    return {"listen": {"host": "127.0.0.1"},
            "services": [{"name": "shop", "upstream": shop.url, "openapi": str(folder / "shop.json")}]}


@pytest.fixture
def shop() -> Iterator[Shop]:
    """The upstream."""
    with Shop() as server:
        yield server


@pytest.fixture
def gw(shop: Shop, tmp_path: Path) -> Iterator[AccessGateway]:
    """The gateway in front of it, on 127.0.0.1."""
    with AccessGateway(config(shop, tmp_path), tmp_path) as gateway:
        yield gateway


def call(gw: AccessGateway, method: str, target: str, user: str | None = None, roles: str = "user",
         headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> RawResponse:
    """One request (``Connection: close``) as ``user`` with ``roles``; its response."""
    gw.last_mark = uuid.uuid4().hex
    extra = [("X-Test-Mark", gw.last_mark)]
    if user is not None:
        extra += [("X-Test-User", user), ("X-Test-Roles", roles)]
    if body:
        extra.append(("Content-Type", "application/json"))
    data = build(method, target, [*extra, *(headers or []), ("Connection", "close")], body)
    responses = parse_responses(raw_request(gw.host, gw.port, data), [method])
    assert len(responses) == 1
    return responses[0]


def refused(gw: AccessGateway, shop: Shop, resp: RawResponse, status: int, reason: str) -> None:
    """``resp`` is a problem document of ``status``; the record says the access stage refused
    it for ``reason``; the upstream saw nothing of it."""
    doc = assert_problem(resp, status)
    record = next(r for r in gw.access_records() if r["request_id"] == doc["request_id"])
    assert record["blocked_by"] == "access", record
    assert record["decisions"] == [{"stage": "access", "action": "block", "reason": reason}], record
    assert record["access"]["rule"], record  # the stage's fact: which rule refused
    assert gw.last_mark not in shop.marks


def test_another_users_declared_object(gw: AccessGateway, shop: Shop) -> None:
    """The owner named in the path must be the caller: alice reads /users/alice; alice
    reading /users/bob is 403 ``access.owner``; an admin reads anyone's."""
    assert call(gw, "GET", "/users/alice", "alice").status == 200
    refused(gw, shop, call(gw, "GET", "/users/bob", "alice"), 403, "access.owner")
    assert call(gw, "GET", "/users/bob", "root", roles="admin").status == 200
    assert shop.seen == [("GET", "/users/alice"), ("GET", "/users/bob")]


def test_another_users_learned_object(gw: AccessGateway, shop: Shop) -> None:
    """alice creates a book (its id learned from the upstream's response body); she reads it,
    bob is refused 403 ``access.owner``, an unknown book is refused, the record of the create
    names what was learned, and the store got the record."""
    created = call(gw, "POST", "/books", "alice", body=b'{"name": "Dune"}')
    assert created.status == 201
    book = created.json()["id"]
    assert call(gw, "GET", f"/books/{book}", "alice").status == 200
    refused(gw, shop, call(gw, "GET", f"/books/{book}", "bob"), 403, "access.owner")
    refused(gw, shop, call(gw, "GET", "/books/never-made", "alice"), 403, "access.owner")
    gw.flush_ownership()
    assert gw.ownership.rows == {("shop/books", book): "id-alice"}
    learned = [r for r in gw.access_records() if r["path"] == "/books"]
    assert learned[0]["access"] == {"learned": "shop/books", "object": book}


def test_learned_ownership_survives_the_worker_cache(shop: Shop, tmp_path: Path) -> None:
    """A second gateway (another worker: an empty cache) sharing the store decides the same."""
    with AccessGateway(config(shop, tmp_path), tmp_path) as first:
        book = call(first, "POST", "/books", "alice", body=b'{"name": "Dune"}').json()["id"]
        first.flush_ownership()
        rows = dict(first.ownership.rows)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    with AccessGateway(config(shop, second_dir), second_dir) as second:
        second.ownership.rows.update(rows)
        assert call(second, "GET", f"/books/{book}", "alice").status == 200
        refused(second, shop, call(second, "GET", f"/books/{book}", "bob"), 403, "access.owner")


def test_a_store_that_is_down_answers_503(gw: AccessGateway, shop: Shop) -> None:
    """An ownership the worker does not know, with the store down: 503, never forwarded."""
    gw.ownership.down = True
    resp = call(gw, "GET", "/books/b-1", "alice")
    doc = assert_problem(resp, 503)
    record = next(r for r in gw.access_records() if r["request_id"] == doc["request_id"])
    assert record["decisions"] == [{"stage": "access", "action": "error", "reason": "DependencyUnavailable"}]
    assert shop.seen == []


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("DELETE", "/users/alice", []),
        ("DELETE", "//users/alice", []),
        ("DELETE", "/users//alice", []),
        ("DELETE", "/users/./alice", []),
        ("DELETE", "/x/../users/alice", []),
        ("DELETE", "/%75sers/%61lice", []),
        ("DELETE", "/users/alice", [("X-HTTP-Method-Override", "delete")]),  # its own method
        ("GET", "/admin/users", []),
        ("GET", "/admin/./users", []),
        ("GET", "/%61dmin/users", []),
    ],
)
def test_admin_operation_as_user(gw: AccessGateway, shop: Shop, method: str, target: str,
                                 headers: list[tuple[str, str]]) -> None:
    """An operation tagged admin (``Admin`` or ``admin``) is refused to a plain user, however
    the path is spelt: the router matched the normalised path, so the decision is the same."""
    refused(gw, shop, call(gw, method, target, "alice", headers=headers), 403, "access.admin")
    assert call(gw, method, target, "root", roles="admin").status == 200


@pytest.mark.parametrize(
    ("method", "target", "headers", "status"),
    [
        ("GET", "/users/alice", [("X-HTTP-Method-Override", "DELETE")], 403),
        ("GET", "/users/alice", [("X-HTTP-Method", "delete")], 403),
        ("GET", "/users/alice", [("X-Method-Override", "DELETE")], 403),
        ("GET", "/users/alice?_method=DELETE", [], 403),
        ("GET", "/users/alice", [("X-Original-URL", "/admin/users")], 403),
        ("GET", "/users/alice", [("X-Rewrite-URL", "/admin/users")], 403),
        ("GET", "/ADMIN/users", [], 404),  # paths are case-sensitive: no route, nothing forwarded
        ("GET", "/Admin/Users", [], 404),
        ("GET", "/x/%2e%2e/admin/users", [], 400),  # an escaped dot segment is refused outright
        ("GET", "/admin%2fusers", [], 400),
    ],
)
def test_tricks_do_not_reach_the_admin_operation(gw: AccessGateway, shop: Shop, method: str, target: str,
                                                 headers: list[tuple[str, str]], status: int) -> None:
    """Method override headers, URL rewrite headers, case and encoding tricks: none of them
    reaches an admin operation for a plain user; the upstream never sees the request."""
    resp = call(gw, method, target, "alice", headers=headers)
    if status == 403:
        refused(gw, shop, resp, 403, "access.override")
    else:
        assert_problem(resp, status)
        assert shop.seen == []


def test_privileged_property_on_registration(gw: AccessGateway, shop: Shop) -> None:
    """The public registration refuses a privileged property (``isAdmin``) and one its schema
    marks readOnly (``id``) with 403 ``access.property`` for an anonymous caller, before
    validation (which would answer 400); an ordinary registration passes."""
    refused(gw, shop, call(gw, "POST", "/register", body=b'{"name": "eve", "isAdmin": true}'), 403,
            "access.property")
    refused(gw, shop, call(gw, "POST", "/register", body=b'{"name": "eve", "profile": {"role": "admin"}}'), 403,
            "access.property")
    refused(gw, shop, call(gw, "POST", "/register", body=b'{"name": "eve", "id": "u-1"}'), 403, "access.property")
    ok = call(gw, "POST", "/register", body=b'{"name": "eve"}')
    assert ok.status == 200 and ok.json()["path"] == "/register"


@pytest.mark.parametrize(("host", "allow"), [("127.0.0.1", "10.0.0.0/8"), ("::1", "2001:db8::/32")])
def test_ip_denied(shop: Shop, tmp_path: Path, host: str, allow: str) -> None:
    """On IPv4 and IPv6 alike: a route's deny list refuses the client's network (403
    ``access.ip``), and so does a consumer's own allow list that leaves it out; a consumer
    whose list includes it passes."""
    with AccessGateway(config(shop, tmp_path), tmp_path, host=host) as gw:
        refused(gw, shop, call(gw, "GET", "/stats", "alice"), 403, "access.ip")
        refused(gw, shop, call(gw, "GET", "/users/alice", "alice", headers=[("X-Test-Ip-Allow", allow)]), 403,
                "access.ip")
        own = "127.0.0.0/8" if host == "127.0.0.1" else "::1/128"
        assert call(gw, "GET", "/users/alice", "alice", headers=[("X-Test-Ip-Allow", own)]).status == 200
        assert call(gw, "GET", "/users/alice", "alice").status == 200


def test_anonymous_request_to_an_owned_object_is_401(gw: AccessGateway, shop: Shop) -> None:
    """Where a rule needs a consumer and none signed in (auth would normally have refused
    first), the answer is 401 with a challenge, not 403."""
    resp = call(gw, "GET", "/users/alice")
    refused(gw, shop, resp, 401, "access.unauthenticated")
    assert resp.header("www-authenticate") == 'Bearer realm="shop"'


def test_an_admin_refusal_comes_before_the_body(gw: AccessGateway, shop: Shop) -> None:
    """The admin check is a head hook: a user announcing a 512 KiB upload to an admin operation
    is refused as soon as the head is read, without sending a byte of the body."""
    head = build("POST", "/admin/users", [("X-Test-User", "alice"), ("X-Test-Roles", "user"),
                                          ("X-Test-Mark", "upload"), ("Content-Type", "application/octet-stream"),
                                          ("Content-Length", str(512 * 1024))])
    with RawConnection(gw.host, gw.port) as conn:
        conn.send(head)
        resp = conn.read_response("POST")
    gw.last_mark = "upload"
    refused(gw, shop, resp, 403, "access.admin")
    assert resp.header("connection") == "close"  # the unread body cannot be skipped
