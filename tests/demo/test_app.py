"""The demo bookstore API, served by a real uvicorn on a loopback port, against its OpenAPI."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bastion.demo import DemoServer, openapi_path
from bastion.demo.app import Store, demo_id

SPEC: dict[str, Any] = yaml.safe_load(openapi_path().read_text(encoding="utf-8"))
SPEC_URI = "urn:bastion:demo-openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    # jsonschema only checks date-time with an optional extra installed; RFC 3339 by hand.
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@FORMATS.checks("email")
def _is_email(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", value) is not None


ALICE = demo_id("user", "alice")
BOB = demo_id("user", "bob")
ADMIN = demo_id("user", "admin")
MEDITATIONS = demo_id("book", "9780140449334")
ALICE_PENDING = demo_id("order", "alice-2")  # seeded as pending
ALICE_SHIPPED = demo_id("order", "alice-1")  # seeded as shipped
BOB_PENDING = demo_id("order", "bob-4")
MISSING = "00000000-0000-4000-8000-000000000000"

ADDRESS = {
    "name": "Alice Liddell",
    "line1": "1 Rabbit Hole",
    "city": "Oxford",
    "postalCode": "OX1 1AA",
    "country": "GB",
}
NEW_ORDER = {"bookId": MEDITATIONS, "quantity": 2, "shippingAddress": ADDRESS}
NEW_BOOK = {
    "title": "The Republic",
    "author": "Plato",
    "isbn": "9780140455113",
    "genre": "philosophy",
    "priceCents": 1199,
    "stock": 3,
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    port: int

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        raw: bytes | None = None,
    ) -> Reply:
        send = dict(headers or {})
        payload = raw
        if body is not None:
            payload = json.dumps(body).encode()
            send.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=payload, headers=send)
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()


@pytest.fixture
def api() -> Iterator[Client]:
    """A fresh demo API (fresh data) on a free loopback port for each test."""
    with DemoServer("127.0.0.1", 0) as server:
        yield Client(server.port)


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _validator(pointer: str) -> Draft202012Validator:
    # Referencing the schema inside the whole document lets its "#/components/..." refs resolve.
    schema = {"$ref": f"{SPEC_URI}#/{pointer}"}
    return Draft202012Validator(schema, registry=REGISTRY, format_checker=FORMATS)


def _operation(operation_id: str) -> tuple[str, str, dict[str, Any]]:
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is not None and op["operationId"] == operation_id:
                return path, method, op
    raise AssertionError(f"no operation {operation_id}")


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def check_reply(operation_id: str, reply: Reply) -> None:
    """Assert ``reply`` is one the spec declares for the operation, with a valid body."""
    path, method, op = _operation(operation_id)
    code = str(reply.status)
    assert code in op["responses"], f"{operation_id} answered undeclared {code}: {reply.body!r}"
    content = _resolve(op["responses"][code]).get("content")
    if content is None:
        assert reply.body == b""
        return
    assert reply.headers["content-type"].startswith("application/json")
    pointer = _pointer("paths", path, method, "responses", code)
    if "$ref" in op["responses"][code]:
        pointer = op["responses"][code]["$ref"].removeprefix("#/")
    validator = _validator(pointer + "/content/application~1json/schema")
    errors = [e.message for e in validator.iter_errors(reply.json())]
    assert not errors, f"{operation_id} {code}: {errors}"


def check_request_body(operation_id: str, body: Any) -> None:
    """Assert a body the tests send is valid per the spec (so tests don't drift from it)."""
    path, method, _ = _operation(operation_id)
    pointer = _pointer("paths", path, method, "requestBody", "content", "application/json")
    errors = [e.message for e in _validator(pointer + "/schema").iter_errors(body)]
    assert not errors, errors


# A request that exercises each operation's success path: (method, path, body, headers, status).
EXAMPLES: dict[str, tuple[str, str, Any, dict[str, str], int]] = {
    "getHealth": ("GET", "/health", None, {}, 200),
    "listBooks": ("GET", "/books?q=the&limit=5&offset=0", None, {}, 200),
    "getBook": ("GET", f"/books/{MEDITATIONS}", None, {}, 200),
    "createBook": ("POST", "/books", NEW_BOOK, {"X-User-Id": "admin"}, 201),
    "listOrders": ("GET", "/orders?status=pending", None, {}, 200),
    "createOrder": ("POST", "/orders", NEW_ORDER, {}, 201),
    "getOrder": ("GET", f"/orders/{ALICE_SHIPPED}", None, {}, 200),
    "cancelOrder": ("DELETE", f"/orders/{ALICE_PENDING}", None, {}, 204),
    "getCurrentUser": ("GET", "/users/me", None, {"X-User-Id": BOB}, 200),
    "getUser": ("GET", f"/users/{ADMIN}", None, {}, 200),
}


def test_spec_is_precise() -> None:
    """The document is OpenAPI 3.1 with an operationId on every operation, closed object
    schemas, valid JSON Schemas, the two security schemes required globally, and only the
    health and book-reading operations public."""
    assert SPEC["openapi"].startswith("3.1")
    assert SPEC["servers"] == [{"url": "/"}]
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header",
                                 "name": "X-API-Key"}
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["bearerAuth"]["bearerFormat"] == "JWT"
    assert SPEC["security"] == [{"apiKey": []}, {"bearerAuth": []}]

    public = set()
    ids = []
    for item in SPEC["paths"].values():
        for method in METHODS:
            if method in item:
                ids.append(item[method]["operationId"])
                if item[method].get("security") == []:
                    public.add(item[method]["operationId"])
    assert len(ids) == len(set(ids)) == 10
    assert public == {"getHealth", "listBooks", "getBook"}

    for name, schema in SPEC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        if schema.get("type") == "object":
            assert schema.get("additionalProperties") is False, name


def test_every_operation_is_served_as_specified(api: Client) -> None:
    """Each operationId in the document has a handler that answers its example request with
    the expected status, and the response validates against the operation's declared schema
    (formats uuid, email and date-time included)."""
    spec_ids = {
        item[m]["operationId"] for item in SPEC["paths"].values() for m in METHODS if m in item
    }
    assert set(EXAMPLES) == spec_ids
    for operation_id, (method, path, body, headers, status) in EXAMPLES.items():
        if body is not None:
            check_request_body(operation_id, body)
        reply = api.call(method, path, body, headers)
        assert reply.status == status, (operation_id, reply.body)
        check_reply(operation_id, reply)


def test_sensitive_fields_leak_from_get_user(api: Client) -> None:
    """GET /users/{userId} returns another user's email, password hash, API token and card
    number to any caller: the leak the gateway is meant to redact."""
    reply = api.call("GET", f"/users/{BOB}", headers={"X-User-Id": "alice"})
    assert reply.status == 200
    user = reply.json()
    assert user["id"] == BOB
    assert user["email"] == "bob@example.com"
    assert user["passwordHash"].startswith("$argon2id$")
    assert user["apiToken"].startswith("bk_live_")
    assert user["cardNumber"] == "5555555555554444"
    assert user["role"] == "user"
    check_reply("getUser", reply)

    me = api.call("GET", "/users/me").json()
    assert me["username"] == "alice"
    assert me["cardNumber"] == "4111111111111111"
    assert api.call("GET", f"/users/{ADMIN}").json()["role"] == "admin"


def test_seed_data_is_deterministic() -> None:
    """Two independently seeded stores hold identical users, books and orders with the same
    ids, so docs and tests can name them; every user has orders."""
    first, second = Store.seeded(), Store.seeded()
    for kind in ("users", "books", "orders"):
        assert [o.to_json() for o in getattr(first, kind).values()] == [
            o.to_json() for o in getattr(second, kind).values()
        ]
    assert {u.username for u in first.users.values()} == {"alice", "bob", "admin"}
    assert len(first.books) == 8
    assert {o.user_id for o in first.orders.values()} == {ALICE, BOB, ADMIN}
    assert first.user_by_name("alice").id == ALICE


def test_list_books_pages_and_searches(api: Client) -> None:
    """GET /books returns all eight books by default, pages with limit/offset and searches
    title and author case-insensitively."""
    everything = api.call("GET", "/books").json()
    assert everything["total"] == 8 and len(everything["items"]) == 8
    assert (everything["limit"], everything["offset"]) == (20, 0)
    page = api.call("GET", "/books?limit=3&offset=6").json()
    assert [b["id"] for b in page["items"]] == [b["id"] for b in everything["items"][6:]]
    found = api.call("GET", "/books?q=MELVILLE").json()
    assert [b["title"] for b in found["items"]] == ["Moby-Dick"]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=abc", "limit=1_0", "offset=-1", "limit=1&limit=2", "q="],
)
def test_list_books_rejects_bad_parameters(api: Client, query: str) -> None:
    """Out-of-range, non-numeric, repeated or empty query parameters get a 400 JSON error."""
    reply = api.call("GET", f"/books?{query}")
    assert reply.status == 400
    check_reply("listBooks", reply)


def test_get_book_errors(api: Client) -> None:
    """An unknown book id is a 404 and a malformed one a 400, both as {"error": ...}."""
    missing = api.call("GET", f"/books/{MISSING}")
    assert missing.status == 404 and missing.json() == {"error": "book not found"}
    check_reply("getBook", missing)
    malformed = api.call("GET", "/books/not-a-uuid")
    assert malformed.status == 400
    check_reply("getBook", malformed)


def test_create_order_then_read_it_back(api: Client) -> None:
    """A created order is pending, priced from the book, takes copies out of stock, and
    appears first in the caller's list and at its own URL."""
    before = api.call("GET", f"/books/{MEDITATIONS}").json()["stock"]
    created = api.call("POST", "/orders", NEW_ORDER)
    assert created.status == 201
    order = created.json()
    assert order["status"] == "pending" and order["userId"] == ALICE
    assert order["totalCents"] == 2 * 1050
    assert api.call("GET", f"/books/{MEDITATIONS}").json()["stock"] == before - 2
    assert api.call("GET", "/orders").json()["items"][0]["id"] == order["id"]
    fetched = api.call("GET", f"/orders/{order['id']}")
    assert fetched.json() == order
    check_reply("getOrder", fetched)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"quantity": 11}, 422),
        ({"quantity": 0}, 422),
        ({"quantity": True}, 422),
        ({"quantity": 2.5}, 422),
        ({"bookId": "nope"}, 422),
        ({"bookId": MISSING}, 404),
        ({"extra": 1}, 422),
        ({"shippingAddress": {**ADDRESS, "country": "gb"}}, 422),
        ({"shippingAddress": {**ADDRESS, "admin": True}}, 422),
    ],
)
def test_create_order_rejects_bad_input(api: Client, change: dict[str, Any], status: int) -> None:
    """Orders that break the schema (bounds, types, unknown fields, formats) get a 422, and
    an order for an unknown book a 404; nothing is created."""
    reply = api.call("POST", "/orders", {**NEW_ORDER, **change})
    assert reply.status == status, reply.body
    check_reply("createOrder", reply)
    assert len(api.call("GET", "/orders").json()["items"]) == 3


def test_create_order_rejects_unparsable_bodies(api: Client) -> None:
    """A body that is not JSON, not declared as JSON, not an object or over 64 KiB is
    refused with a JSON error."""
    cases = [
        (b"{not json", "application/json", 400),
        (b"NaN", "application/json", 400),
        (json.dumps(NEW_ORDER).encode(), "text/plain", 400),
        (b"[1, 2]", "application/json", 422),
        (b"[" + b" " * 70_000 + b"]", "application/json", 413),
    ]
    for raw, content_type, status in cases:
        reply = api.call("POST", "/orders", raw=raw, headers={"Content-Type": content_type})
        assert reply.status == status, (raw, reply.body)
        check_reply("createOrder", reply)


def test_order_stock_conflict(api: Client) -> None:
    """Ordering more copies than are in stock is a 409."""
    for _ in range(2):
        assert api.call("POST", "/orders", {**NEW_ORDER, "quantity": 10}).status == 201
    reply = api.call("POST", "/orders", {**NEW_ORDER, "quantity": 10})
    assert reply.status == 409
    check_reply("createOrder", reply)


def test_orders_are_private_to_their_owner(api: Client) -> None:
    """Callers list only their own orders, another user's order is a 404 (not 403), and an
    admin may read any order."""
    bob_orders = api.call("GET", "/orders", headers={"X-User-Id": "bob"}).json()["items"]
    assert {o["userId"] for o in bob_orders} == {BOB} and len(bob_orders) == 2
    hidden = api.call("GET", f"/orders/{BOB_PENDING}")
    assert hidden.status == 404
    check_reply("getOrder", hidden)
    assert api.call("DELETE", f"/orders/{BOB_PENDING}").status == 404
    seen = api.call("GET", f"/orders/{BOB_PENDING}", headers={"X-User-Id": ADMIN})
    assert seen.status == 200 and seen.json()["userId"] == BOB


def test_cancel_order(api: Client) -> None:
    """Cancelling a pending order answers 204 and marks it cancelled; cancelling it again,
    or cancelling a shipped order, is a 409."""
    assert api.call("DELETE", f"/orders/{ALICE_PENDING}").status == 204
    assert api.call("GET", f"/orders/{ALICE_PENDING}").json()["status"] == "cancelled"
    for order_id in (ALICE_PENDING, ALICE_SHIPPED):
        reply = api.call("DELETE", f"/orders/{order_id}")
        assert reply.status == 409
        check_reply("cancelOrder", reply)


def test_create_book_needs_admin(api: Client) -> None:
    """Only an admin may add a book; a duplicate ISBN is a 409 and a bad genre a 422."""
    denied = api.call("POST", "/books", NEW_BOOK)
    assert denied.status == 403
    check_reply("createBook", denied)
    admin = {"X-User-Id": "admin"}
    created = api.call("POST", "/books", NEW_BOOK, admin)
    assert created.status == 201
    assert api.call("GET", f"/books/{created.json()['id']}").json() == created.json()
    assert api.call("POST", "/books", NEW_BOOK, admin).status == 409
    bad = api.call("POST", "/books", {**NEW_BOOK, "isbn": "9780000000002", "genre": "x"}, admin)
    assert bad.status == 422
    check_reply("createBook", bad)


def test_caller_identity(api: Client) -> None:
    """X-User-Id accepts a username or a user id; an unknown or repeated one is a 401."""
    assert api.call("GET", "/users/me", headers={"X-User-Id": "bob"}).json()["id"] == BOB
    assert api.call("GET", "/users/me", headers={"X-User-Id": BOB.upper()}).json()["id"] == BOB
    unknown = api.call("GET", "/users/me", headers={"X-User-Id": "mallory"})
    assert unknown.status == 401 and unknown.json() == {"error": "unknown user"}
    check_reply("getCurrentUser", unknown)
    missing = api.call("GET", f"/users/{MISSING}")
    assert missing.status == 404
    check_reply("getUser", missing)


def test_routing_errors_are_json(api: Client) -> None:
    """Unknown paths are a JSON 404 and unsupported methods a JSON 405 whose Allow header
    lists every method of the path."""
    missing = api.call("GET", "/admin")
    assert missing.status == 404 and missing.json() == {"error": "not found"}
    wrong = api.call("PUT", "/books")
    assert wrong.status == 405 and wrong.json() == {"error": "method not allowed"}
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}


def test_server_stops_and_frees_its_port() -> None:
    """DemoServer picks a free port, serves on it, and no longer accepts connections once
    stopped."""
    server = DemoServer("127.0.0.1", 0)
    server.start()
    try:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert Client(server.port).call("GET", "/health").status == 200
    finally:
        server.stop()
    with pytest.raises(OSError):
        Client(server.port).call("GET", "/health")


def test_server_reports_a_taken_port() -> None:
    """Starting on a port that is already in use raises RuntimeError instead of hanging."""
    with DemoServer("127.0.0.1", 0) as first:
        second = DemoServer("127.0.0.1", first.port)
        with pytest.raises(RuntimeError, match="could not listen"):
            second.start()
