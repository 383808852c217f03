"""API discovery over the audit table (SQLite and a real PostgreSQL): paths reduced to
templates, undeclared endpoints aggregated with their counts, clients and time span, the
declared routes nobody called, and a draft OpenAPI document Bastion itself can load."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.audit.discovery import DeclaredRoute, openapi_fragment, template, undeclared, unused
from bastion.audit.storage import insert_rows
from bastion.config import load_config
from bastion.config.model import StoreSettings
from bastion.store import Store, open_store
from tests.audit.test_storage import _row

UUID = "3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b"


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[Store]:
    store = open_store(store_settings)
    try:
        yield store
    finally:
        store.close()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/orders/1234", ("/v1/orders/{id}", ("integer",))),
        (f"/users/{UUID}/keys/5f1d3c9e0a7b2d4c6e8f1a3b", ("/users/{id}/keys/{id2}", ("uuid", "hex"))),
        ("/files/deadbeef42", ("/files/{id}", ("hex",))),
        ("/accessed/v2/books/", ("/accessed/v2/books/", ())),  # hex letters only, "v2" short: words
        ("/a1b2c3", ("/a1b2c3", ())),  # six hex digits: too short to be an id
        ("/", ("/", ())),
    ],
)
def test_template_replaces_id_segments_only(path: str, expected: tuple[str, tuple[str, ...]]) -> None:
    """Numeric, UUID and long hexadecimal segments become ``{id}``, ``{id2}``...; words (even
    all-hex ones such as "accessed"), version segments and short tokens stay as they are."""
    assert template(path) == expected


def _refused(i: int, ts: float, method: str, path: str, client: str, status: int = 404) -> dict[str, Any]:
    reason = "route.not_found" if status == 404 else "route.method_not_allowed"
    return _row(i, ts, method=method, path=path, client=client, status=status, route=None, service=None,
                decision="blocked", stage="core", reason=reason)


def test_undeclared_endpoints_are_grouped_by_template(store: Store) -> None:
    """Five refused calls of ``/v1/orders/<n>`` from two clients are one endpoint with 5
    requests, 2 clients, status 404 and its first and last time; a 405 is another endpoint;
    an old refusal (before ``since``), a routed 404 and a refusal for another reason are not
    undeclared endpoints."""
    now = time.time()
    rows = [_refused(i, now - 50 + i, "GET", f"/v1/orders/{1000 + i}", f"10.0.0.{i % 2}") for i in range(5)]
    rows += [
        _refused(10, now - 5, "DELETE", "/books", "10.0.0.7", status=405),
        _refused(11, now - 7200, "GET", "/v0/legacy", "10.0.0.8"),
        _row(12, now - 5, path="/books/999", status=404),  # routed: the upstream's 404
        _row(13, now - 5, path="/huge", route=None, status=414, decision="blocked", stage="core",
             reason="http.target"),
    ]
    insert_rows(store.engine, rows)
    found = undeclared(store.engine, datetime.now(UTC) - timedelta(hours=1))
    assert [e.document() | {"first_seen": "-", "last_seen": "-"} for e in found] == [
        {"method": "GET", "path": "/v1/orders/{id}", "requests": 5, "clients": 2, "statuses": [404],
         "first_seen": "-", "last_seen": "-"},
        {"method": "DELETE", "path": "/books", "requests": 1, "clients": 1, "statuses": [405],
         "first_seen": "-", "last_seen": "-"},
    ]
    orders = found[0]
    assert orders.last_seen - orders.first_seen == timedelta(seconds=4)


def test_declared_routes_never_called_are_listed(store: Store) -> None:
    """A route called within the range is not listed; one called only before it, and one
    never called, are, with their methods (HEAD left out beside GET)."""
    now = time.time()
    insert_rows(store.engine, [_row(1, now - 10, route="listBooks"), _row(2, now - 7200, route="getBook")])
    routes = [
        DeclaredRoute("listBooks", "books", frozenset({"GET", "HEAD"}), "/books"),
        DeclaredRoute("getBook", "books", frozenset({"GET", "HEAD"}), "/books/{id}"),
        DeclaredRoute("deleteBook", "books", frozenset({"DELETE"}), "/books/{id}"),
    ]
    never = unused(store.engine, datetime.now(UTC) - timedelta(hours=1), routes)
    assert [u.document() for u in never] == [
        {"route": "getBook", "service": "books", "methods": ["GET"], "path": "/books/{id}"},
        {"route": "deleteBook", "service": "books", "methods": ["DELETE"], "path": "/books/{id}"},
    ]


def test_the_openapi_fragment_loads_as_a_service_document(store: Store, tmp_path: Path) -> None:
    """The draft document declares each undeclared endpoint with typed path parameters
    (integer ids, UUIDs) and loads as a service's ``openapi:`` in Bastion's own configuration,
    giving a route per endpoint; a method OpenAPI cannot declare is left out and reported."""
    now = time.time()
    insert_rows(store.engine, [
        _refused(1, now - 3, "GET", "/v1/orders/17", "10.0.0.1"),
        _refused(2, now - 2, "PUT", f"/v1/users/{UUID}/orders/18", "10.0.0.1"),
        _refused(3, now - 1, "PROPFIND", "/dav", "10.0.0.1"),
    ])
    document, skipped = openapi_fragment(undeclared(store.engine, datetime.now(UTC) - timedelta(hours=1)))
    assert [(e.method, e.path) for e in skipped] == [("PROPFIND", "/dav")]
    put = document["paths"]["/v1/users/{id}/orders/{id2}"]["put"]
    assert put["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}},
        {"name": "id2", "in": "path", "required": True, "schema": {"type": "integer"}},
    ]
    assert put["x-discovered"]["requests"] == 1
    (tmp_path / "draft.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    (tmp_path / "bastion.yaml").write_text(
        "services: [{name: draft, upstream: 'http://127.0.0.1:9', openapi: draft.yaml}]\n"
    )
    loaded = load_config(tmp_path / "bastion.yaml")
    assert sorted((r.path, sorted(r.methods - {"HEAD"})) for r in loaded.routes) == [
        ("/v1/orders/{id}", ["GET"]),
        ("/v1/users/{id}/orders/{id2}", ["PUT"]),
    ]
