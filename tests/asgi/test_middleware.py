"""The embedded mode's request and response handling, through a real uvicorn on a free port:
what the application is given, what reaches the client, and what never reaches either."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections import UserDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from bastion.asgi import BastionMiddleware, load_embedded, metrics_app, protect
from bastion.asgi.types import Message, Receive, Scope, Send
from bastion.store import keys, open_store
from tests.asgi.served import Served

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "embedded tests", "version": "1"},
    "security": [],
    "paths": {
        "/items": {
            "post": {
                "operationId": "createItem",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string", "maxLength": 20}},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {"201": {"description": "created"}},
            }
        },
        "/items/{id}": {
            "get": {
                "operationId": "getItem",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "x-bastion-response": {},
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
                                }
                            }
                        },
                    }
                },
            }
        },
        "/cards": {
            "get": {
                "operationId": "getCards",
                "x-bastion-redact": {"types": ["card"], "action": "mask"},
                "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
    },
}

CONFIG: dict[str, Any] = {
    "services": [
        {
            "name": "items",
            "openapi": "openapi.yaml",
            "routes": [
                {
                    "path": "/echo",
                    "prefix": True,
                    "public": True,
                    "methods": ["GET", "POST"],
                    "request_body": "allowed",
                    "max_body_bytes": 1000,
                },
                {
                    "path": "/big",
                    "public": True,
                    "methods": ["GET"],
                    "max_response_body_bytes": 1024,
                    "policies": {"response": {}},
                },
            ],
        }
    ],
    "access_log": {"enabled": False},
}

#: What the application was asked, newest last (each test reads its own requests).
SEEN: list[dict[str, Any]] = []


async def echo(request: Request) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
    SEEN.append(
        {
            "path": request.scope["path"],
            "raw_path": request.scope["raw_path"].decode(),
            "headers": dict(request.headers),
            "body": len(body),
        }
    )
    return JSONResponse({"ok": True})


async def create_item(request: Request) -> Response:
    SEEN.append({"created": await request.json()})
    return JSONResponse({"got": await request.json()}, status_code=201)


async def pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        await asyncio.sleep(0)


async def get_item(request: Request) -> Response:
    parts = [b'{"id": 1, "name": "a", ', b'"secret": "s3cr3t"}']
    return StreamingResponse(pieces(parts), media_type="application/json")


async def cards(request: Request) -> Response:
    # The card number is split across two of the application's messages.
    return StreamingResponse(pieces([b"card 4111 1111 ", b"1111 1111 on file"]), media_type="text/plain")


async def big(request: Request) -> Response:
    return StreamingResponse(pieces([b"x" * 1000] * 5), media_type="application/json")


APP = Starlette(
    routes=[
        Route("/echo/{rest:path}", echo, methods=["GET", "POST"]),
        Route("/items", create_item, methods=["POST"]),
        Route("/items/{id}", get_item),
        Route("/cards", cards),
        Route("/big", big),
    ]
)


def write_config(folder: Path, config: dict[str, Any] | None = None) -> Path:
    (folder / "openapi.yaml").write_text(yaml.safe_dump(OPENAPI))
    path = folder / "bastion.yaml"
    path.write_text(yaml.safe_dump(config if config is not None else CONFIG))
    return path


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("embedded")
    with Served(protect(APP, config=write_config(folder))) as base:
        yield base


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["request_id"] == resp.headers["x-request-id"]
    return body


def test_application_gets_the_request_bastion_routed(url: str) -> None:
    """The application is given the normalised path Bastion routed on (not the client's
    ``//`` and ``.``), the request ID the client gets back, and no X-Forwarded-For from a
    client that is not a trusted proxy (as the gateway's upstream would)."""
    resp = httpx.get(url + "/echo//a/./b", headers={"X-Forwarded-For": "6.6.6.6"})
    assert resp.status_code == 200
    seen = SEEN[-1]
    assert seen["path"] == "/echo/a/b" and seen["raw_path"] == "/echo/a/b"
    assert seen["headers"]["x-request-id"] == resp.headers["x-request-id"]
    assert "x-forwarded-for" not in seen["headers"]


def test_json_body_is_validated_then_given_whole(url: str) -> None:
    """A body validation needs is read whole, checked, then given to the application as it
    came; one that breaks the schema is 400 and the application never sees it."""
    resp = httpx.post(url + "/items", json={"name": "ok"})
    assert resp.status_code == 201 and resp.json() == {"got": {"name": "ok"}}
    before = len(SEEN)
    body = problem(httpx.post(url + "/items", json={"name": "x" * 30}), 400)
    assert "name" in body["detail"]
    assert len(SEEN) == before


def test_json_limits_are_checked_on_the_bytes(tmp_path: Path) -> None:
    """A JSON body deeper than the route's ``max_json_depth`` is 413 before validation builds it."""
    config = json.loads(json.dumps(CONFIG))
    config["listen"] = {"limits": {"max_json_depth": 3}}
    with Served(protect(APP, config=write_config(tmp_path, config))) as base:
        problem(httpx.post(base + "/items", content=b'{"name": [[[["deep"]]]]}',
                           headers={"content-type": "application/json"}), 413)


def test_body_over_the_route_limit(url: str) -> None:
    """A body over the route's ``max_body_bytes`` is 413: from Content-Length before the
    application runs, and, streamed without a length, once the application has read past
    the limit (it is told the client left; the client gets the refusal)."""
    before = len(SEEN)
    problem(httpx.post(url + "/echo/x", content=b"a" * 2000), 413)
    assert len(SEEN) == before

    def stream() -> Iterator[bytes]:
        for _ in range(4):
            yield b"a" * 500

    problem(httpx.post(url + "/echo/x", content=stream()), 413)
    resp = httpx.post(url + "/echo/x", content=b"a" * 900)
    assert resp.status_code == 200 and SEEN[-1]["body"] == 900


def test_body_where_the_route_takes_none(url: str) -> None:
    """A GET with a body on an operation that declares no requestBody is 400 (CL.0), as at the gateway."""
    body = problem(httpx.request("GET", url + "/items/1", content=b"smuggled"), 400)
    assert "cannot have a body" in body["detail"]


def test_response_filtered_on_its_whole_body(url: str) -> None:
    """The response stage sees the application's streamed JSON whole (it needs it) and removes
    the property the operation's schema does not declare; the length is the new body's."""
    resp = httpx.get(url + "/items/1")
    assert resp.status_code == 200
    assert resp.json() == {"id": 1, "name": "a"}
    assert int(resp.headers["content-length"]) == len(resp.content)


def test_redaction_streams_across_messages(url: str) -> None:
    """The redact stage's body hook sees the body as the application sends it and masks a
    card number split across two messages (last four kept)."""
    resp = httpx.get(url + "/cards")
    assert resp.status_code == 200
    assert resp.content == b"card **** **** **** 1111 on file"


def test_response_over_the_inspection_limit_is_refused(url: str) -> None:
    """A response larger than the route's ``max_response_body_bytes``, on a route whose stage
    needs it whole, is 502 problem+json (``response_body_over_limit: block``), not sent uninspected."""
    problem(httpx.get(url + "/big"), 502)


def test_deny_by_default(url: str) -> None:
    """Undeclared paths and methods never reach the application: 404, and 405 with Allow."""
    before = len(SEEN)
    problem(httpx.get(url + "/admin"), 404)
    resp = httpx.delete(url + "/items/1")
    problem(resp, 405)
    assert resp.headers["allow"] == "GET, HEAD"
    assert len(SEEN) == before


async def failing(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan here")
    raise RuntimeError("internal detail: db password is hunter2")


def test_application_failure_is_a_problem_without_internals(tmp_path: Path) -> None:
    """An application that raises before it answers gives the client 500 problem+json, with
    nothing of the exception in it."""
    with Served(protect(failing, config=write_config(tmp_path))) as base:
        resp = httpx.get(base + "/echo/x")
    body = problem(resp, 500)
    assert "hunter2" not in resp.text and "RuntimeError" not in resp.text
    assert body["detail"] == "The application failed to answer."


async def plain(scope: Scope, receive: Receive, send: Send) -> None:
    """An application without lifespan support (it raises on that scope)."""
    if scope["type"] != "http":
        raise RuntimeError("unsupported")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_lifespan_of_an_application_without_one(tmp_path: Path) -> None:
    """Bastion answers the lifespan itself when the application does not: the stages start
    with the server (before any request) and close when it stops."""
    middleware = BastionMiddleware(plain, config=write_config(tmp_path))
    with Served(middleware) as base:
        assert middleware._serving is not None  # started on lifespan.startup
        assert httpx.get(base + "/echo/x").text == "hello"
    assert middleware._serving is None  # closed after lifespan.shutdown


def test_lazy_start_without_lifespan(tmp_path: Path) -> None:
    """With the server's lifespan off, the stages start on the first request, which is served."""
    middleware = BastionMiddleware(plain, config=write_config(tmp_path))
    with Served(middleware, lifespan="off") as base:
        assert middleware._serving is None
        assert httpx.get(base + "/echo/x").text == "hello"
        problem(httpx.get(base + "/nowhere"), 404)
        assert middleware._serving is not None


def test_startup_failure_stops_the_server(tmp_path: Path) -> None:
    """A record sink that cannot start (the audit log's folder is a file) fails the lifespan
    startup: the server refuses to serve rather than serve without it."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    config = json.loads(json.dumps(CONFIG))
    config["audit"] = {"enabled": True, "store": False, "output": "blocked/audit.log"}
    with pytest.raises(RuntimeError, match=r"stopped before it served \(exit code 3\)"), \
            Served(protect(plain, config=write_config(tmp_path, config))):
        pass


def test_websocket_is_refused(tmp_path: Path) -> None:
    """A WebSocket connection is closed before it is accepted (the server answers 403), as the
    gateway refuses upgrades. (Driven with ASGI messages: no WebSocket library is installed
    for uvicorn here.)"""
    middleware = BastionMiddleware(plain, config=write_config(tmp_path))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware({"type": "websocket", "path": "/echo/x", "headers": []}, receive, send))
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == 1008


def test_metrics_app_counts_the_requests(tmp_path: Path) -> None:
    """``metrics_app()`` mounted beside the protected application (outside Bastion's routes)
    shows the requests the stages answered and refused, by route and status."""
    outer = Starlette(
        routes=[Mount("/metrics", app=metrics_app()), Mount("/", app=protect(APP, config=write_config(tmp_path)))]
    )
    with Served(outer) as base:
        assert httpx.get(base + "/items/1").status_code == 200
        assert httpx.get(base + "/items/abc").status_code == 400
        text = httpx.get(base + "/metrics/").text
    assert 'bastion_requests_total{code="200",route="getItem",service="items"}' in text
    assert 'bastion_blocked_total{action="block",reason="validation.path",stage="validation"}' in text


def test_api_key_is_verified_and_not_passed_on(tmp_path: Path) -> None:
    """On a route that requires authentication, a request without a key is 401 and never
    reaches the application; with a valid Bastion key it does, without the key (Bastion's
    credential stays Bastion's, as at the gateway)."""
    config = json.loads(json.dumps(CONFIG))
    config["consumers"] = [{"name": "alice"}]
    config["services"][0]["routes"].append(
        {"path": "/private", "prefix": True, "methods": ["GET"], "public": False}
    )
    # A hand-written route reads Bastion keys as bearer tokens.
    path = write_config(tmp_path, config)
    loaded = load_embedded(path)
    store = open_store(loaded.config.store, loaded.config.consumers)
    try:
        with store.write() as session:
            secret = keys.create(session, store.pepper, "alice", []).secret
    finally:
        store.close()
    app = Starlette(routes=[Route("/private/{rest:path}", echo)])
    with Served(protect(app, config=path)) as base:
        before = len(SEEN)
        problem(httpx.get(base + "/private/x"), 401)
        assert len(SEEN) == before
        resp = httpx.get(base + "/private/x", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status_code == 200, resp.text
    assert "authorization" not in SEEN[-1]["headers"]


def test_a_consumers_place_in_flight_is_released_after_each_request(tmp_path: Path) -> None:
    """With a concurrency stage (one request in flight per consumer), a consumer's requests
    one after another are all answered: the record sink that releases each place is there
    (it is left out only where no route counts requests in flight)."""
    config = json.loads(json.dumps(CONFIG))
    config["consumers"] = [{"name": "carol"}]
    config["services"][0]["routes"].append(
        {
            "path": "/private",
            "prefix": True,
            "methods": ["GET"],
            "public": False,
            "policies": {"concurrency": {"max_in_flight": 1}},
        }
    )
    path = write_config(tmp_path, config)
    loaded = load_embedded(path)
    store = open_store(loaded.config.store, loaded.config.consumers)
    try:
        with store.write() as session:
            secret = keys.create(session, store.pepper, "carol", []).secret
    finally:
        store.close()
    app = Starlette(routes=[Route("/private/{rest:path}", echo)])
    with Served(protect(app, config=path)) as base, httpx.Client(base_url=base) as client:
        statuses = [
            client.get("/private/x", headers={"Authorization": f"Bearer {secret}"}).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 200]


async def gzipped_item(request: Request) -> Response:
    body = gzip.compress(b'{"id": 1, "name": "a", "secret": "s3cr3t"}')
    return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})


def test_gzip_response_is_decoded_for_the_stages(tmp_path: Path) -> None:
    """A gzip response the response stage must read whole is decoded for it, filtered, and
    sent plain (without Content-Encoding), since the stage changed it."""
    app = Starlette(routes=[Route("/items/{id}", gzipped_item)])
    with Served(protect(app, config=write_config(tmp_path))) as base:
        resp = httpx.get(base + "/items/1", headers={"accept-encoding": "identity"})
    assert resp.status_code == 200
    assert "content-encoding" not in resp.headers
    assert resp.json() == {"id": 1, "name": "a"}


def test_over_limit_passes_uninspected_when_the_route_says_so(tmp_path: Path) -> None:
    """With ``response_body_over_limit: pass`` a body over the inspection limit goes out whole,
    uninspected, and the access record says so (``http.response_body`` ``uninspected``)."""
    config = json.loads(json.dumps(CONFIG))
    config["services"][0]["routes"][1]["response_body_over_limit"] = "pass"
    config["access_log"] = {"path": "access.log"}
    with Served(protect(APP, config=write_config(tmp_path, config))) as base:
        resp = httpx.get(base + "/big")
    assert resp.status_code == 200 and resp.content == b"x" * 5000
    [record] = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert record["decisions"] == [
        {"stage": "http.response_body", "action": "uninspected", "reason": "response body over max_response_body_bytes"}
    ]
    assert record["bytes_out"] == 5000


def test_body_extensions_are_not_offered(tmp_path: Path) -> None:
    """The application is not offered ASGI extensions that send a body outside
    ``http.response.body`` (a file path, a descriptor), which the body hooks would never
    see; other extensions are left as the server gave them."""
    offered: list[set[str]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        offered.append(set(scope.get("extensions", {})))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"card 4111 1111 1111 1111"})

    middleware = BastionMiddleware(app, config=write_config(tmp_path))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": "/cards", "raw_path": b"/cards", "query_string": b"",
        "headers": [(b"host", b"example")], "client": ("127.0.0.1", 1), "scheme": "http",
        "extensions": {"http.response.pathsend": {}, "http.response.zerocopy": {}, "http.response.trailers": {}},
    }

    async def run() -> None:
        await middleware.startup()
        try:
            await middleware(scope, receive, send)
        finally:
            await middleware.shutdown()

    asyncio.run(run())
    assert offered == [{"http.response.trailers"}]
    assert sent[-1]["body"] == b"card **** **** **** 1111"


def test_starlette_middleware_entry(tmp_path: Path) -> None:
    """``Middleware(BastionMiddleware, config=...)`` in a FastAPI application: the stages run
    (deny-by-default refuses FastAPI's own /docs, validation refuses a bad id) and start with
    the application's lifespan, beside its own startup code."""
    from fastapi import FastAPI
    from starlette.middleware import Middleware

    started: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append("app")
        yield

    api = FastAPI(lifespan=lifespan, middleware=[Middleware(BastionMiddleware, config=write_config(tmp_path))])

    @api.get("/items/{id}")
    async def item(id: int) -> dict[str, Any]:
        return {"id": id, "name": "a", "secret": "s3cr3t"}

    with Served(api) as base:
        assert started == ["app"]
        layer: Any = api.middleware_stack  # built by Starlette on the lifespan's start
        while not isinstance(layer, BastionMiddleware):
            layer = layer.app
        assert layer._serving is not None  # started on lifespan.startup, before any request
        assert httpx.get(base + "/items/1").json() == {"id": 1, "name": "a"}  # filtered
        problem(httpx.get(base + "/items/abc"), 400)
        problem(httpx.get(base + "/docs"), 404)


def test_an_encoded_path_and_the_headers_reach_the_application_as_sent(url: str) -> None:
    """A path Bastion did not change reaches the application as the server decoded it (its
    ``raw_path`` as sent), and the client's own header fields with it, beside the request
    ID; a forwarding header from an untrusted client does not."""
    resp = httpx.get(url + "/echo/a%20b", headers=[("X-Custom", "v1"), ("X-Forwarded-Proto", "https")])
    assert resp.status_code == 200
    seen = SEEN[-1]
    assert seen["path"] == "/echo/a b" and seen["raw_path"] == "/echo/a%20b"
    assert seen["headers"]["x-custom"] == "v1"
    assert seen["headers"]["x-request-id"] == resp.headers["x-request-id"]
    assert "x-forwarded-proto" not in seen["headers"]


async def headed(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with header fields in mixed case, one the headers stage removes among them."""
    headers = [(b"X-First", b"1"), (b"Server", b"app/1.0"), (b"Content-Type", b"text/plain"), (b"x-last", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hi"})


def test_response_headers_the_stages_keep_go_out_once_with_their_additions(tmp_path: Path) -> None:
    """The application's header fields that the headers stage keeps go to the client once
    each, with their values, beside what the stage adds (``X-Content-Type-Options``) and the
    request ID; the ``Server`` field it removes does not."""
    with Served(protect(headed, config=write_config(tmp_path)), server_header=False) as base:
        resp = httpx.get(base + "/echo/x")
    assert resp.status_code == 200 and resp.text == "hi"
    names = [name for name, _ in resp.headers.multi_items()]
    assert "server" not in names
    for name, value in (("x-first", "1"), ("content-type", "text/plain"), ("x-last", "2")):
        assert names.count(name) == 1 and resp.headers[name] == value
    assert names.count("x-request-id") == 1 and resp.headers["x-content-type-options"] == "nosniff"


def raw_config(folder: Path) -> Path:
    """One public GET route whose stages read the request body (detection looks into it)."""
    path = folder / "bastion.yaml"
    route = {"path": "/raw", "public": True, "methods": ["GET"], "policies": {"detection": {"paranoia": 1}}}
    config = {"services": [{"name": "raw", "routes": [route]}], "access_log": {"enabled": False}}
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_request_without_a_body_gives_the_application_one_empty_message(tmp_path: Path) -> None:
    """A GET without Content-Length or Transfer-Encoding, on a route whose stages read the
    body: Bastion does not wait for the server's empty body message, and the application
    still sees what uvicorn alone would give it: one empty ``http.request``, then (asked
    again while it answers) ``http.disconnect`` once the response is out, never a second
    body message."""
    got: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        got.append(await receive())
        later = asyncio.ensure_future(receive())
        await asyncio.sleep(0)  # it asks before the response starts
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        got.append(await asyncio.wait_for(later, 10))

    with Served(protect(app, config=raw_config(tmp_path))) as base:
        resp = httpx.get(base + "/raw", params={"q": "dune"})
    assert resp.status_code == 200 and resp.text == "ok"
    assert got[0] == {"type": "http.request", "body": b"", "more_body": False}
    assert [message["type"] for message in got] == ["http.request", "http.disconnect"]


#: The application's response header fields, kept to compare with what reaches the server.
FIELDS = [(b"X-First", b"1"), (b"Server", b"app/1.0"), (b"Content-Type", b"text/plain"), (b"x-last", b"2")]


async def fielded(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with :data:`FIELDS`, the very pair objects (one the headers stage removes)."""
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    await send({"type": "http.response.start", "status": 200, "headers": list(FIELDS)})
    await send({"type": "http.response.body", "body": b"hi"})


def recorded(app: Any, heads: list[Message]) -> Any:
    """``app`` as uvicorn serves it, with each response head it hands the server kept in ``heads``."""

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                heads.append(message)
            await send(message)

        await app(scope, receive, record)

    return recorder


def test_kept_response_fields_reach_the_server_as_the_application_sent_them(tmp_path: Path) -> None:
    """The header fields the headers stage keeps go to the server as the pairs the
    application sent (the same objects, in its order, its case kept: not decoded and
    encoded again); what follows them is the stage's additions, encoded, then the request ID.
    (A compiled build once matched kept fields by the identity of pairs it had boxed anew,
    found none, and encoded every field again.)"""
    heads: list[Message] = []
    with Served(recorded(protect(fielded, config=write_config(tmp_path)), heads), server_header=False) as base:
        resp = httpx.get(base + "/echo/x")
    assert resp.status_code == 200 and resp.text == "hi"
    assert len(heads) == 1
    out = heads[0]["headers"]
    assert [id(field) for field in out[:3]] == [id(FIELDS[0]), id(FIELDS[2]), id(FIELDS[3])]
    assert (b"x-content-type-options", b"nosniff") in out[3:-1]
    assert out[-1] == (b"x-request-id", resp.headers["x-request-id"].encode())
    assert not any(name.lower() == b"server" for name, _ in out)


async def mapping_sender(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends its messages as mappings that are not dicts, and a field's value as a bytearray."""
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    fields = [(b"content-type", bytearray(b"text/plain")), (b"x-app", b"1")]
    start: Message = UserDict({"type": "http.response.start", "status": 200, "headers": fields})
    body: Message = UserDict({"type": "http.response.body", "body": b"mapped"})
    await send(start)
    await send(body)


def test_messages_that_are_other_mappings_are_read_as_dicts(tmp_path: Path) -> None:
    """An application whose messages are mappings other than ``dict`` (and a header value a
    ``bytearray``) is answered as one that sends dicts: the status, its fields beside the
    stage's, the body."""
    with Served(protect(mapping_sender, config=write_config(tmp_path))) as base:
        resp = httpx.get(base + "/echo/x")
    assert resp.status_code == 200 and resp.text == "mapped"
    assert resp.headers["content-type"] == "text/plain" and resp.headers["x-app"] == "1"
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_request_field_names_are_read_lower_case_whatever_the_server_sends() -> None:
    """The head the stages see has every field name in lower case and every value as sent
    (latin-1), for the names Bastion knows in advance (``content-type``) and any other, and for
    a name a server sends in capitals: the same fields, in order, and the framing read from them."""
    from bastion.asgi.exchange import incoming_of

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/echo/x",
        "raw_path": b"/echo/x",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"Content-Length", b"2"),
            (b"X-Custom-\xe9", bytearray(b"caf\xe9")),
            (b"host", b"example.test"),
        ],
    }
    req = incoming_of(scope)
    assert req.headers == [
        ("content-type", "application/json"),
        ("content-length", "2"),
        ("x-custom-\xe9", "caf\xe9"),
        ("host", "example.test"),
    ]
    assert req.content_length == 2 and req.host == "example.test"
