"""CL.0 request smuggling (issue 12): bodies on requests whose backend never reads them.

A real gateway in front of :class:`BodylessBackend`, a backend that parses heads only and
never reads the body of a GET (and the like): forwarded, such a body would be its next
request. Bastion refuses those bodies before anything is forwarded, and never reuses an
upstream connection whose exchange was ambiguous (an early answer, bytes outside a
response), so no client ever gets an answer to someone else's request.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from bastion.testing import GatewayProcess, RawConnection, RawResponse

from .bodyless import BodylessBackend
from .conftest import gateway_config
from .util import PROBLEM, assert_problem, build, keepalive

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
BODYLESS = ["GET", "HEAD", "OPTIONS", "DELETE", "TRACE"]

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "ops", "version": "1"},
    "security": [],
    "paths": {
        "/api/things": {"post": {
            "operationId": "createThing",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "ok"}},
        }},
        "/api/ping": {"post": {"operationId": "ping", "responses": {"200": {"description": "ok"}}}},
        "/api/items": {"get": {"operationId": "listItems", "responses": {"200": {"description": "ok"}}}},
    },
}


def _config(backend: BodylessBackend) -> dict[str, Any]:
    """``/public`` (every method, bodies by method), ``/upload`` (``request_body: allowed``),
    ``/early``, ``/extra`` and ``/late`` by hand, and the OpenAPI operations of
    :data:`OPENAPI`; no retries, so each request reaches the backend at most once."""
    options = {"retries": 0, "circuit_breaker": {"enabled": False}}
    config = gateway_config(backend.url, upstream_options=options, routes=[
        {"path": "/public", "prefix": True, "public": True, "methods": ALL_METHODS},
        {"path": "/upload", "prefix": True, "public": True, "methods": ALL_METHODS, "request_body": "allowed"},
        {"path": "/early", "prefix": True, "public": True},
        {"path": "/extra", "prefix": True, "public": True},
        {"path": "/late", "prefix": True, "public": True},
    ])
    config["services"].append({
        "name": "ops",
        "upstream": {"targets": [backend.url], **options},
        "openapi": "ops.openapi.yaml",
    })
    return config


def _start(backend: BodylessBackend) -> GatewayProcess:
    return GatewayProcess(_config(backend), workers=1, files={"ops.openapi.yaml": yaml.safe_dump(OPENAPI)})


@pytest.fixture(scope="module")
def backend() -> Iterator[BodylessBackend]:
    """The body-ignoring backend shared by the module's tests that do not count connections."""
    with BodylessBackend() as server:
        yield server


@pytest.fixture(scope="module")
def gw(backend: BodylessBackend) -> Iterator[GatewayProcess]:
    """One worker in front of :func:`backend`."""
    with _start(backend) as gateway:
        yield gateway


@pytest.fixture()
def fresh() -> Iterator[tuple[BodylessBackend, GatewayProcess]]:
    """A backend and a gateway of the test's own: its pool starts empty, connections are
    numbered from 1 by the backend."""
    with BodylessBackend() as server, _start(server) as gateway:
        yield server, gateway


def _smuggle(method: str, token: str, body: bytes | None = None) -> bytes:
    """``method /public/a`` whose body is a whole second request for ``/admin/secret``."""
    inner = body if body is not None else f"GET /admin/secret?{token} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    return build(method, f"/public/a?{token}", body=inner)


def _read(conn: RawConnection, method: str = "GET") -> RawResponse:
    return conn.read_response(method)


def _echo(resp: RawResponse) -> dict[str, Any]:
    """The backend's answer: which head it parsed, on which connection."""
    assert resp.status == 200, (resp.status, resp.body)
    doc = resp.json()
    assert isinstance(doc, dict)
    return doc


def _wait(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for ``condition`` (something another process or thread does), up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _assert_refused(resp: RawResponse, method: str) -> str:
    """A 400 problem for a body where none may be; returns the request ID."""
    if method == "HEAD":
        assert resp.status == 400
        assert resp.header("content-type") == PROBLEM
        assert resp.body == b""
        request_id = resp.header("x-request-id")
        assert request_id
        return request_id
    doc = assert_problem(resp, 400, closes=False)
    assert doc["detail"] == f"A {method} request on this route cannot have a body."
    return str(doc["request_id"])


# -- the backend really is a CL.0 target ------------------------------------------------------


def test_backend_serves_the_smuggled_request_when_reached_directly(token: str) -> None:
    """Without Bastion, the attack of the report works on this backend: the body of a GET
    is parsed as a request for ``/admin/secret``, and ``hello`` in a body turns the next
    request into ``helloGET ...``, a 501. (What the other tests prove is therefore Bastion's
    doing, not the backend's.)"""
    with BodylessBackend() as backend:
        host, port = backend.url.removeprefix("http://").split(":")
        with RawConnection(host, int(port)) as conn:
            conn.send(_smuggle("GET", token))
            assert _echo(_read(conn))["line"] == f"GET /public/a?{token} HTTP/1.1"
            assert _echo(_read(conn))["line"] == f"GET /admin/secret?{token} HTTP/1.1"
            conn.send(_smuggle("GET", token, b"hello") + build("GET", f"/public/next?{token}"))
            assert _echo(_read(conn))["line"] == f"GET /public/a?{token} HTTP/1.1"
            assert _read(conn).status == 501


# -- bodies refused where the route takes none --------------------------------------------------


@pytest.mark.parametrize("method", BODYLESS)
def test_smuggled_request_in_body_is_refused_before_the_upstream(
    gw: GatewayProcess, backend: BodylessBackend, token: str, method: str
) -> None:
    """A body on a GET/HEAD/OPTIONS/DELETE/TRACE request to a route that does not opt in is
    refused with 400 problem+json; the backend sees neither that request nor the one hidden
    in its body; the client connection stays usable (its framing never was in doubt), and the
    access log says why."""
    with keepalive(gw) as conn:
        conn.send(_smuggle(method, token))
        request_id = _assert_refused(_read(conn, method), method)
        conn.send(build("GET", f"/public/after?{token}"))
        assert _echo(_read(conn))["line"] == f"GET /public/after?{token} HTTP/1.1"
    assert [s.line for s in backend.seen(token)] == [f"GET /public/after?{token} HTTP/1.1"]
    assert not [s for s in backend.seen() if s.path == "/admin/secret"]
    record = gw.wait_for_access_record(lambda r: r["request_id"] == request_id)
    assert (record["status"], record["blocked_by"], record["reason"]) == (400, "core", "http.body_not_allowed")
    assert record["route"] == "api:/public"


@pytest.mark.parametrize("body", [b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"], ids=["empty", "hello"])
def test_chunked_body_on_a_bodyless_route_is_refused(
    gw: GatewayProcess, backend: BodylessBackend, token: str, body: bytes
) -> None:
    """``Transfer-Encoding: chunked`` on a GET is refused from the head, even when the
    chunked body turns out empty: nothing is forwarded."""
    with keepalive(gw) as conn:
        conn.send(build("GET", f"/public/a?{token}", [("Transfer-Encoding", "chunked")], body))
        _assert_refused(_read(conn), "GET")
    assert backend.seen(token) == []


@pytest.mark.parametrize("method", ALL_METHODS)
def test_content_length_zero_is_forwarded(gw: GatewayProcess, backend: BodylessBackend, token: str,
                                          method: str) -> None:
    """``Content-Length: 0`` is no body: every method passes, and the backend parses
    exactly that one request."""
    with keepalive(gw) as conn:
        conn.send(build(method, f"/public/zero?{token}", [("Content-Length", "0")]))
        resp = _read(conn, method)
        assert resp.status == 200
    assert [s.line for s in backend.seen(token)] == [f"{method} /public/zero?{token} HTTP/1.1"]


@pytest.mark.parametrize("payload", [None, b"hello"], ids=["admin-request", "hello"])
def test_other_clients_get_their_own_answers(gw: GatewayProcess, backend: BodylessBackend, token: str,
                                             payload: bytes | None) -> None:
    """Attackers send smuggling GETs (a hidden ``/admin/secret`` request, or ``hello``, which
    on the reported setup turned the next client's request into ``helloGET ...`` and a 501)
    while other clients, on their own connections, make requests at the same time: every
    one of those gets 200 with the backend's answer to its own request line."""
    errors: list[str] = []

    def victim(n: int) -> None:
        try:
            with keepalive(gw) as conn:
                for i in range(15):
                    line = f"GET /public/victim-{n}-{i}?{token} HTTP/1.1"
                    conn.send(build("GET", f"/public/victim-{n}-{i}?{token}"))
                    resp = _read(conn)
                    if resp.status != 200 or resp.json()["line"] != line:
                        errors.append(f"{line!r} got {resp.status} {resp.body[:200]!r}")
        except Exception as exc:  # reported below, with the others
            errors.append(repr(exc))

    def attacker(n: int) -> None:
        try:
            with keepalive(gw) as conn:
                for method in BODYLESS * 3:
                    conn.send(_smuggle(method, f"{token}-{n}", payload))
                    if _read(conn, method).status != 400:
                        errors.append(f"a smuggling {method} was not refused")
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=victim, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=attacker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    lines = [s.line for s in backend.seen(token)]
    assert len(lines) == 45
    assert all(re.fullmatch(rf"GET /public/victim-\d-\d+\?{token} HTTP/1\.1", line) for line in lines), lines


# -- opting in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", BODYLESS)
def test_route_with_request_body_allowed_forwards_the_body(
    gw: GatewayProcess, backend: BodylessBackend, token: str, method: str
) -> None:
    """On a route with ``request_body: allowed`` (a backend known to read such bodies), a
    body on any method is forwarded with its length and read as a body, not a request."""
    with keepalive(gw) as conn:
        conn.send(build(method, f"/upload/x?{token}", body=b"hello"))
        assert _read(conn, method).status == 200
        conn.send(build("GET", f"/upload/next?{token}"))
        assert _echo(_read(conn))["line"] == f"GET /upload/next?{token} HTTP/1.1"
    seen = backend.seen(token)
    assert [(s.line, s.body) for s in seen] == [
        (f"{method} /upload/x?{token} HTTP/1.1", b"hello"),
        (f"GET /upload/next?{token} HTTP/1.1", b""),
    ]


def test_openapi_operation_with_request_body_accepts_one(gw: GatewayProcess, backend: BodylessBackend,
                                                         token: str) -> None:
    """An OpenAPI operation that declares ``requestBody`` takes a body."""
    with keepalive(gw) as conn:
        conn.send(build("POST", f"/api/things?{token}", [("Content-Type", "application/json")], b'{"a": 1}'))
        assert _echo(_read(conn))["body"] == '{"a": 1}'
    assert [(s.line, s.body) for s in backend.seen(token)] == [(f"POST /api/things?{token} HTTP/1.1", b'{"a": 1}')]


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/ping"), ("GET", "/api/items")])
def test_openapi_operation_without_request_body_refuses_one(
    gw: GatewayProcess, backend: BodylessBackend, token: str, method: str, path: str
) -> None:
    """An OpenAPI operation that declares no ``requestBody`` refuses a body, even on POST,
    and nothing reaches the backend; without a body (or with ``Content-Length: 0``) it is
    served."""
    with keepalive(gw) as conn:
        conn.send(build(method, f"{path}?{token}", [("Content-Type", "application/json")], b"{}"))
        _assert_refused(_read(conn), method)
        assert backend.seen(token) == []
        conn.send(build(method, f"{path}?{token}-empty", [("Content-Length", "0")]))
        assert _echo(_read(conn))["line"] == f"{method} {path}?{token}-empty HTTP/1.1"


def test_refusals_are_counted(fresh: tuple[BodylessBackend, GatewayProcess], token: str) -> None:
    """Each refused body is counted in ``bastion_blocked_total`` with its reason, like the
    other refusals of the core."""
    _, gateway = fresh
    with keepalive(gateway) as conn:
        for method in ("GET", "DELETE"):
            conn.send(_smuggle(method, token))
            _assert_refused(_read(conn, method), method)
    series = 'bastion_blocked_total{action="block",reason="http.body_not_allowed",stage="core"} 2.0'
    _wait(lambda: series in str(gateway.admin("GET", "/metrics")[1]), "the refusals in the metrics")


# -- upstream connections whose exchange was ambiguous are not reused ----------------------------


def _conn_of(backend: BodylessBackend, line: str) -> int:
    matches = [s.conn for s in backend.seen() if s.line == line]
    assert len(matches) == 1, (line, backend.seen())
    return matches[0]


def test_sequential_requests_reuse_one_connection(fresh: tuple[BodylessBackend, GatewayProcess],
                                                  token: str) -> None:
    """The control for the tests below: ordinary exchanges (a POST with a body the backend
    reads included) go over one pooled upstream connection."""
    backend, gateway = fresh
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/public/1?{token}"))
        assert _echo(_read(conn))["conn"] == 1
        conn.send(build("POST", f"/public/2?{token}", body=b"hello"))
        assert _echo(_read(conn))["conn"] == 1
        conn.send(build("GET", f"/public/3?{token}"))
        assert _echo(_read(conn))["conn"] == 1
    assert backend.connection_count == 1


def test_upstream_answering_before_the_body_is_sent_is_not_reused(
    fresh: tuple[BodylessBackend, GatewayProcess], token: str
) -> None:
    """A POST route (bodies allowed) to a backend that answers ``/early`` without reading
    the body: the answer arrives while Bastion is still streaming the body, which the backend
    will read as a request. The client gets its answer; the next request goes over a new
    upstream connection and gets its own answer (reusing the first one would have sent it
    behind the leftover body: ``helloworldGET ...``, a 501)."""
    backend, gateway = fresh
    with keepalive(gateway) as conn:
        conn.send(build("POST", f"/early/x?{token}", [("Content-Length", "10")]) + b"hello")
        _wait(lambda: backend.seen(token) != [] and backend.answered(backend.seen(token)[0].conn),
              "the backend's early answer")
        # The answer is in the gateway's socket before the rest of the body is sent.
        conn.send(b"world")
        early = _echo(_read(conn))
        assert early["line"] == f"POST /early/x?{token} HTTP/1.1"
        conn.send(build("GET", f"/public/next?{token}"))
        nxt = _echo(_read(conn))
    assert nxt["line"] == f"GET /public/next?{token} HTTP/1.1"
    assert nxt["conn"] != early["conn"]
    assert backend.connection_count == 2
    _wait(lambda: backend.closed_by_peer(early["conn"]), "the gateway closing the first connection")


def test_extra_bytes_after_a_response_close_the_connection(
    fresh: tuple[BodylessBackend, GatewayProcess], token: str
) -> None:
    """A backend that writes a second response behind the first (``/extra``): the client
    gets the first, the connection is closed, and the next request, from another client,
    gets its own answer over a new connection, never the stray ``evil!``."""
    backend, gateway = fresh
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/extra/x?{token}"))
        first = _echo(_read(conn))
        assert first["line"] == f"GET /extra/x?{token} HTTP/1.1"
    with keepalive(gateway) as other:
        other.send(build("GET", f"/public/next?{token}"))
        resp = _read(other)
        assert resp.body != b"evil!"
        nxt = _echo(resp)
    assert nxt["line"] == f"GET /public/next?{token} HTTP/1.1"
    assert (first["conn"], nxt["conn"]) == (1, 2)
    _wait(lambda: backend.closed_by_peer(1), "the gateway closing the first connection")


def test_bytes_on_an_idle_connection_close_it(fresh: tuple[BodylessBackend, GatewayProcess], token: str) -> None:
    """A backend that writes a response on a connection that is idle in the pool
    (``/late``, after its answer was delivered): the gateway closes that connection, and
    the next request gets its own answer over a new one."""
    backend, gateway = fresh
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/late/x?{token}"))
        assert _echo(_read(conn))["conn"] == 1
        backend.release_stray()
        _wait(lambda: backend.closed_by_peer(1), "the gateway closing the idle connection")
        conn.send(build("GET", f"/public/next?{token}"))
        nxt = _echo(_read(conn))
    assert (nxt["line"], nxt["conn"]) == (f"GET /public/next?{token} HTTP/1.1", 2)


def test_head_response_with_a_body_is_not_reused(fresh: tuple[BodylessBackend, GatewayProcess],
                                                 token: str) -> None:
    """A HEAD answered with a body (the backend sends one anyway, here the stray response of
    ``/extra``): the client gets the head only; the bytes after it close the connection and
    the next request gets its own answer over a new one."""
    _, gateway = fresh
    with keepalive(gateway) as conn:
        conn.send(build("HEAD", f"/extra/x?{token}"))
        head = _read(conn, "HEAD")
        assert (head.status, head.body) == (200, b"")
        conn.send(build("GET", f"/public/next?{token}"))
        nxt = _echo(_read(conn))
    assert (nxt["line"], nxt["conn"]) == (f"GET /public/next?{token} HTTP/1.1", 2)
