"""The JSON documents the upstream serves besides ``GET /``, and the OpenAPI document that
declares them (what ``bastion-protect`` filters responses against).

Each document is a list of orders (ids, a customer with a name and an e-mail, line items,
amounts, timestamps, nested objects), built deterministically to about its target size and
written into the run's folder at start. Nothing in them is sensitive (no card number, SSN
or secret, no 13-19 digit run), so response protection scans every byte and masks nothing:
the figures are the cost of the scan, not of the masking. ``/leak`` is the one answer that
does leak, checked through ``bastion-protect`` before it is measured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Served paths and the size each document is built to (a little over, never under).
SIZES: Mapping[str, int] = {"/orders-1k": 1024, "/orders-100k": 100 * 1024}
#: An answer with an undeclared property and a card number in a declared one.
LEAK_PATH = "/leak"
LEAK_CARD = "4111 1111 1111 1111"
LEAK_UNDECLARED = "internal_margin"
LEAK_BODY = json.dumps({
    "count": 1,
    "orders": [{"id": 1, "status": "paid", "note": f"paid with {LEAK_CARD}",
                LEAK_UNDECLARED: 0.42}],
}, separators=(",", ":"))

_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov",
          "Donald Knuth", "Frances Allen", "Ken Thompson", "Margaret Hamilton", "John Backus")
_PRODUCTS = ("notebook", "pencil", "desk-lamp", "backpack", "mug", "headphones", "stapler")
_STATUSES = ("pending", "paid", "shipped", "delivered", "refunded")


def order(n: int) -> dict[str, Any]:
    """Order ``n``: the same data for the same ``n``, every run."""
    name = _NAMES[n % len(_NAMES)]
    items = [
        {"sku": f"{_PRODUCTS[(n + i) % len(_PRODUCTS)]}-{(n * 7 + i) % 100:02d}",
         "quantity": 1 + (n + i) % 4, "unit_price": round(2.5 + ((n * 13 + i * 5) % 400) / 4, 2)}
        for i in range(1 + n % 3)
    ]
    return {
        "id": 1000 + n,
        "status": _STATUSES[n % len(_STATUSES)],
        "customer": {"id": 500 + n % 97, "name": name,
                     "email": f"{name.split()[0].lower()}.{n % 97}@example.com"},
        "items": items,
        "total": round(sum(i["quantity"] * i["unit_price"] for i in items), 2),
        "currency": ("EUR", "USD", "GBP")[n % 3],
        "created_at": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
        "shipping": {"city": ("Lyon", "Leeds", "Austin", "Porto")[n % 4], "express": n % 5 == 0},
    }


def document(size: int) -> bytes:
    """Orders appended until the compact JSON reaches ``size`` bytes."""
    orders: list[dict[str, Any]] = []
    body = b""
    while len(body) < size:
        orders.append(order(len(orders)))
        body = json.dumps({"count": len(orders), "orders": orders},
                          separators=(",", ":")).encode()
    return body


def write_documents(folder: Path) -> dict[str, Path]:
    """Write every document into ``folder/documents``; returns the file of each path."""
    out = folder / "documents"
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for path, size in SIZES.items():
        files[path] = out / f"{path.lstrip('/')}.json"
        files[path].write_bytes(document(size))
    return files


def _object(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties)}


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_NUMBER = {"type": "number"}
#: What an order is, as far as the API is concerned: every field the documents carry, and
#: ``note`` (which only /leak sends).
ORDER_SCHEMA = _object({
    "id": _INTEGER, "status": _STRING, "note": _STRING, "total": _NUMBER, "currency": _STRING,
    "created_at": _STRING,
    "customer": _object({"id": _INTEGER, "name": _STRING, "email": _STRING}),
    "items": {"type": "array", "items": _object({"sku": _STRING, "quantity": _INTEGER,
                                                 "unit_price": _NUMBER})},
    "shipping": _object({"city": _STRING, "express": {"type": "boolean"}}),
})
ORDERS_SCHEMA = _object({"count": _INTEGER, "orders": {"type": "array", "items": ORDER_SCHEMA}})
#: The 109-byte answer of ``GET /`` (servers.UPSTREAM_BODY).
BOOK_SCHEMA = _object({"id": _INTEGER, "title": _STRING, "author": _STRING, "year": _INTEGER,
                       "price": _NUMBER, "in_stock": {"type": "boolean"}})


def _get(operation_id: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"get": {"operationId": operation_id, "security": [], "responses": {"200": {
        "description": "OK", "content": {"application/json": {"schema": dict(schema)}}}}}}


#: Every path the upstream serves, each with its response schema; public operations.
OPENAPI: Mapping[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "bench orders", "version": "1"},
    "paths": {
        "/": _get("getBook", BOOK_SCHEMA),
        **{path: _get(f"get{path.strip('/').title().replace('-', '')}", ORDERS_SCHEMA)
           for path in SIZES},
        LEAK_PATH: _get("getLeak", ORDERS_SCHEMA),
    },
}
