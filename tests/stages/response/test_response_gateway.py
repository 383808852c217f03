"""The response stage through a real gateway (``bastion serve`` on loopback) in front of an
upstream that leaks: undeclared and nested fields, writeOnly passwords, password hashes,
stack traces behind ``Server: Apache/2.4.1``, and account-enumerating login answers.

Each test asserts exactly what the client receives, and (for masked errors) that the
original went to the access record only.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from bastion.testing import GatewayProcess

TRACE = (
    "Traceback (most recent call last):\n  File \"/srv/app/views.py\", line 42, in get_user\n"
    "sqlalchemy.exc.ProgrammingError: (psycopg2.errors.UndefinedTable) relation \"users\" does not exist\n"
)

#: What the upstream answers, by path: status, headers, body.
ANSWERS: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {
    "/users/1": (200, [("content-type", "application/json")], json.dumps({
        "id": 1, "name": "ann", "password": "hunter2", "password_hash": "$2b$12$abcdefghijklmnopqrstuv",
        "is_admin": False, "address": {"city": "Oslo", "db_shard": "pg-eu-3"},
        "orders": [{"ref": "A1", "internal_cost": 3.2}, {"ref": "A2"}],
    }).encode()),
    # Declared members only, laid out loosely: nothing to remove, so the same bytes go out.
    "/users/4": (200, [("content-type", "application/json")],
                 b'{ "id" : 4,\n  "name": "caf\xc3\xa9 \\"4\\"",\n  "address": {"city": "Oslo"},'
                 b' "orders": [ {"ref": "A1"} , {"ref": "A2"} ] }\n'),
    # The same names written with escapes: the walk decodes them (and removes what it must).
    "/users/5": (200, [("content-type", "application/json")],
                 b'{"id": 5, "\\u0070assword": "hunter2", "n\\u0061me": "eve", "\\u0069s_admin": true}'),
    "/users/2": (500, [("content-type", "text/html"), ("server", "Apache/2.4.1"), ("x-powered-by", "PHP/5.6"),
                       ("x-runtime", "0.0123"), ("x-debug-token", "a1b2")], TRACE.encode()),
    "/users/3": (201, [("content-type", "application/json")], b'{"id": 3}'),
    "/gz/1": (200, [("content-type", "application/json"), ("content-encoding", "gzip")],
              gzip.compress(json.dumps({"id": 1, "name": "ann", "secret": "s", "leak": 1}).encode())),
    "/plain": (200, [("content-type", "application/json")], b'{"password": "p", "ok": true}'),
    "/login/ghost": (404, [("content-type", "application/json")], b'{"error": "Username does not exist"}'),
    "/login/ann": (401, [("content-type", "application/json"), ("x-attempts-left", "2")],
                   b'{"error": "Password is not correct"}'),
    "/login/bob": (200, [("content-type", "application/json")], b'{"error": "Account locked"}'),
    "/login/eve": (200, [("content-type", "application/json")], b'{"token": "t0k", "password": "p"}'),
}

#: Answers sent chunked, in these pieces: split inside an escape, a member name and a UTF-8
#: character (the stage judges the whole body, never a piece).
CHUNKED: dict[str, list[bytes]] = {
    "/users/6": [b'{"id": 6, "na', b'me": "caf\xc3', b'\xa9", "\\u00', b'70assword": "hunter2", "addr',
                 b'ess": {"city": "Oslo", "db_', b'shard": "pg-1"}}'],
    "/users/7": [b'{"id": 7, "name": "caf\xc3', b'\xa9", "addr', b'ess": {"city": "Oslo"}}'],
}


class LeakyApi(BaseHTTPRequestHandler):
    """Answers every method from :data:`ANSWERS` (the login is a POST)."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        path = urlsplit(self.path).path
        if path in CHUNKED:
            self._chunked(CHUNKED[path])
            return
        status, headers, body = ANSWERS[path]
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunked(self, pieces: list[bytes]) -> None:
        self.send_response_only(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    do_GET = _answer
    do_POST = _answer


def _json_response(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "ok", "content": {"application/json": {"schema": schema}}}


USER = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "password": {"type": "string", "writeOnly": True},
    "address": {"type": "object", "properties": {"city": {"type": "string"}}},
    "orders": {"type": "array", "items": {"type": "object", "properties": {"ref": {"type": "string"}}}},
}}

API = {
    "openapi": "3.1.0", "info": {"title": "leaky", "version": "1"}, "security": [],
    "paths": {
        "/users/{id}": {"get": {"operationId": "getUser", "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": _json_response(USER), "404": {"description": "none"}}}},
        "/gz/{id}": {"get": {"operationId": "getGz", "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": _json_response(USER)}}},
        "/login/{user}": {"post": {
            "operationId": "login", "parameters": [
                {"name": "user", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json_response({"type": "object", "properties": {"token": {"type": "string"}}}),
                          "4XX": {"description": "failed"}},
            "x-bastion-response": {"uniform_failures": {
                "status": 401, "body": {"error": "invalid_credentials"}, "match_body": ['"error"'],
                "min_latency": 0.05}}}},
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LeakyApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def gateway(upstream: str) -> Iterator[GatewayProcess]:
    """Service ``leaky`` from the OpenAPI document, the response stage on for all of it, with
    ``undeclared_status: block``; and a hand-declared ``/plain`` with the defaults."""
    config = {
        "access_log": {"path": "access.log"},
        "services": [{
            "name": "leaky", "upstream": upstream, "openapi": "api.yaml",
            "policies": {"response": {"undeclared_status": "block"}},
            "routes": [{"path": "/plain", "methods": ["GET"], "public": True, "policies": {"response": {}}}],
        }],
    }
    with GatewayProcess(config, files={"api.yaml": yaml.safe_dump(API)}) as gw:
        yield gw


def get(gw: GatewayProcess, path: str, method: str = "GET") -> httpx.Response:
    return httpx.request(method, gw.url + path, timeout=10)


def test_undeclared_and_hidden_fields_never_reach_the_client(gateway: GatewayProcess) -> None:
    """Exactly the declared fields arrive: no password (writeOnly), no password hash
    (never_return), no is_admin, no nested db_shard, no internal_cost in array items; the
    record counts what went, by path, without a value."""
    resp = get(gateway, "/users/1")
    assert resp.status_code == 200
    assert resp.json() == {"id": 1, "name": "ann", "address": {"city": "Oslo"},
                           "orders": [{"ref": "A1"}, {"ref": "A2"}]}
    assert resp.headers["content-length"] == str(len(resp.content))
    record = gateway.wait_for_access_record(lambda r: r.get("path") == "/users/1")
    assert record["response"] == {
        "undeclared": 3, "paths": ["/is_admin", "/address/db_shard", "/orders/0/internal_cost"], "hidden": 2}
    assert "hunter2" not in json.dumps(record) and "pg-eu-3" not in json.dumps(record)


def test_a_gzipped_response_is_filtered_too(gateway: GatewayProcess) -> None:
    """The gateway decodes a gzip body for the stage: its extras are removed all the same, and
    it goes out plain."""
    resp = get(gateway, "/gz/1")
    assert resp.status_code == 200 and "content-encoding" not in resp.headers
    assert json.loads(resp.content) == {"id": 1, "name": "ann"}


def test_a_stack_trace_is_masked_and_kept_for_the_record_only(gateway: GatewayProcess) -> None:
    """An upstream 500 with a stack trace and leaking headers reaches the client as
    problem+json with the request ID and none of the trace, Server, X-Powered-By, X-Runtime or
    X-Debug-*; the access record keeps the trace's first bytes."""
    resp = get(gateway, "/users/2")
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["request_id"] == resp.headers["x-request-id"]
    assert "Traceback" not in resp.text and "psycopg2" not in resp.text
    for leaking in ("server", "x-powered-by", "x-runtime", "x-debug-token"):
        assert leaking not in resp.headers
    record = gateway.wait_for_access_record(lambda r: r.get("request_id") == problem["request_id"])
    masked = record["response"]["masked"]
    assert masked["status"] == 500 and masked["content_type"] == "text/html"
    assert masked["body"] == TRACE and masked["truncated"] is False


def test_an_undeclared_status_is_refused(gateway: GatewayProcess) -> None:
    """``undeclared_status: block``: a 201 the operation never declares is a 502 problem."""
    resp = get(gateway, "/users/3")
    assert resp.status_code == 502 and resp.headers["content-type"] == "application/problem+json"
    assert "id" not in resp.json()
    record = gateway.wait_for_access_record(lambda r: r.get("path") == "/users/3")
    assert record["blocked_by"] == "response" and record["response"] == {"undeclared_status": 201}
    assert {"stage": "response", "action": "block", "reason": "response.undeclared_status"} in record["decisions"]


def test_login_failures_are_indistinguishable(gateway: GatewayProcess) -> None:
    """Unknown user (404), wrong password (401 with a telling header) and a 200 carrying an
    error are the same answer for the client: status, body and headers but the request ID; a
    success passes, without the password the upstream echoed. (Every answer is padded, so the
    awaiting path of the hook runs in the real proxy.)"""
    answers = []
    for user in ("ghost", "ann", "bob"):
        resp = get(gateway, f"/login/{user}", "POST")
        headers = {k: v for k, v in resp.headers.items() if k not in ("x-request-id", "date")}
        answers.append((resp.status_code, headers, resp.content))
    assert answers[0] == answers[1] == answers[2]
    status, headers, body = answers[0]
    assert status == 401 and json.loads(body) == {"error": "invalid_credentials"}
    assert "x-attempts-left" not in headers and headers["cache-control"] == "no-store"
    # The headers stage ran after the response stage (its answer has the security headers).
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    resp = get(gateway, "/login/eve", "POST")
    assert resp.status_code == 200 and resp.json() == {"token": "t0k"}


def test_a_route_without_a_schema_still_loses_never_return_names(gateway: GatewayProcess) -> None:
    """A hand-declared route (no OpenAPI operation) with the stage's defaults: the password
    goes, everything else stays."""
    resp = get(gateway, "/plain")
    assert resp.status_code == 200 and resp.json() == {"ok": True}


def test_a_declared_body_arrives_byte_for_byte(gateway: GatewayProcess) -> None:
    """A body holding only declared members reaches the client exactly as the upstream wrote
    it (spacing, escapes, UTF-8: not re-serialised), with its own length, and nothing is
    recorded as removed."""
    resp = get(gateway, "/users/4")
    assert resp.status_code == 200
    assert resp.content == ANSWERS["/users/4"][2]
    assert resp.headers["content-length"] == str(len(ANSWERS["/users/4"][2]))
    record = gateway.wait_for_access_record(lambda r: r.get("path") == "/users/4")
    assert not record.get("response")


def test_escaped_member_names_are_decoded_and_filtered(gateway: GatewayProcess) -> None:
    """Member names written with ``\\u`` escapes are what they decode to: a writeOnly
    ``password`` and an undeclared ``is_admin`` go, a declared ``name`` stays."""
    resp = get(gateway, "/users/5")
    assert resp.status_code == 200 and resp.json() == {"id": 5, "name": "eve"}
    assert b"hunter2" not in resp.content
    record = gateway.wait_for_access_record(lambda r: r.get("path") == "/users/5")
    assert record["response"] == {"undeclared": 1, "paths": ["/is_admin"], "hidden": 1}


def test_a_chunked_body_is_judged_whole(gateway: GatewayProcess) -> None:
    """An upstream's chunked body, split inside a ``\\u`` escape, a member name and a UTF-8
    character, is judged as one document: the escaped writeOnly ``password`` and the nested
    undeclared ``db_shard`` go; a body of declared members split the same way arrives as the
    upstream wrote it, nothing recorded."""
    resp = get(gateway, "/users/6")
    assert resp.status_code == 200 and resp.json() == {"id": 6, "name": "caf\u00e9", "address": {"city": "Oslo"}}
    record = gateway.wait_for_access_record(lambda r: r.get("path") == "/users/6")
    assert record["response"] == {"undeclared": 1, "paths": ["/address/db_shard"], "hidden": 1}
    clean = get(gateway, "/users/7")
    assert clean.status_code == 200 and clean.content == b"".join(CHUNKED["/users/7"])
    record = gateway.wait_for_access_record(lambda r: r.get("path") == "/users/7")
    assert not record.get("response")
