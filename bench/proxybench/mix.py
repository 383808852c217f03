"""The small JSON API request mix (``bench/run.py --mix``), and the OpenAPI document describing it.

Three requests a shop's mobile app would send, cycled in order by every wrk connection:

- ``GET /api/items?q=blue+shoes&limit=20&sort=-price`` (a search),
- ``GET /api/items/<uuid>`` (one item),
- ``POST /api/orders`` with a ~1 KB JSON order (names with apostrophes and accents, an
  e-mail address with ``+``, a phone number, prose in a comment, a URL with a query),

each with the headers such a client sends (Host, User-Agent, Accept, Accept-Language,
Accept-Encoding, ``Authorization: Bearer <JWT>``, X-Request-Id; Content-Type on the POST).

Like real traffic, the requests are not byte-for-byte repeats: every request ID is new (Bastion
replaces it with its own, as it does for any client that is not a trusted proxy), and so
are the order's comment and gift message (a five-digit sequence number replaces ``SEQNO``,
keeping Content-Length), so detection meets free text it has never seen on every order.

Everything here is data: :func:`lua_script` renders it as the wrk script the load runs
with, :func:`check` sends the same bytes once through a server before it is measured, and
:data:`OPENAPI` is the document the ``bastion-inspect`` scenario routes and validates by.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxybench.procs import LOOPBACK

ITEM_ID = "3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f6a7b8"
#: Replaced by a five-digit sequence number in each request wrk sends (see lua_script).
SEQ_PLACEHOLDER = "SEQNO"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_like() -> str:
    """A token shaped like an HS256 JWT (header.payload.signature); nothing verifies it."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(
        {"sub": "c-20931", "scope": "items:read orders:write", "iat": 1716800000, "exp": 1716803600},
        separators=(",", ":"),
    ).encode())
    signature = _b64url(hashlib.sha256(f"{header}.{payload}".encode()).digest())
    return f"{header}.{payload}.{signature}"


#: Headers of every request of the mix, in the order a client sends them.
CLIENT_HEADERS: tuple[tuple[str, str], ...] = (
    ("Host", "api.example.com"),
    ("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
                   "(KHTML, like Gecko) Mobile/15E148 shop-ios/4.2.1"),
    ("Accept", "application/json"),
    ("Accept-Language", "en-IE,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Authorization", f"Bearer {_jwt_like()}"),
)

#: The order the POST sends (serialized compactly, as JSON.stringify would).
ORDER: dict[str, Any] = {
    "customer": {
        "id": "c-20931",
        "name": "Siobhán O'Brien",
        "email": "siobhan.obrien+orders@example.com",
        "phone": "+353 91 555 0142",
    },
    "shipping_address": {
        "line1": "Apartment 4, O'Connell Court",
        "line2": "12 Harbour Road",
        "city": "Galway",
        "postcode": "H91 X2Y3",
        "country": "IE",
    },
    "items": [
        {"item_id": ITEM_ID, "sku": "SHOE-BLU-42", "quantity": 1, "unit_price": 89.95},
        {"item_id": "9b1c2d3e-4f5a-4b6c-8d7e-0f1a2b3c4d5e", "sku": "SOCK-WOOL-M", "quantity": 3,
         "unit_price": 7.5},
    ],
    "currency": "EUR",
    "coupon": "SPRING-2024",
    "gift": True,
    "gift_message": "Happy birthday, Dónal! Don't wear them all at once. (card SEQNO)",
    "comment": (
        "Please leave the parcel with the neighbours at number 14 if nobody is home, the side "
        "gate is usually open. If the blue ones are out of stock, the navy pair is fine too. "
        "We're away from the 3rd to the 10th of June, so any day before or after works. Thanks! Ref SEQNO"
    ),
    "referrer": "https://blog.example.org/2024/05/summer-running-shoes?utm_source=newsletter&utm_medium=email",
    "client": {"app": "shop-ios", "version": "4.2.1", "locale": "en-IE"},
}
ORDER_BODY = json.dumps(ORDER, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class MixRequest:
    """One request of the mix, exactly as it goes on the wire (Content-Length aside)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    @property
    def label(self) -> str:
        return f"{self.method} {self.target}"


MIX: tuple[MixRequest, ...] = (
    MixRequest("GET", "/api/items?q=blue+shoes&limit=20&sort=-price",
               (*CLIENT_HEADERS, ("X-Request-Id", "7d3b1a2e-5c4f-4a8b-9e1d-2f3a4bSEQNO0"))),
    MixRequest("GET", f"/api/items/{ITEM_ID}",
               (*CLIENT_HEADERS, ("X-Request-Id", "0c9e8d7f-6a5b-4c3d-8e2f-1a0b9cSEQNO1"))),
    MixRequest("POST", "/api/orders",
               (*CLIENT_HEADERS, ("Content-Type", "application/json"),
                ("X-Request-Id", "5e4d3c2b-1a09-4f8e-9d7c-6b5a4fSEQNO2")),
               ORDER_BODY),
)


# -- The OpenAPI document of the three operations (bastion-inspect routes by it) ------------

_UUID = {"type": "string", "format": "uuid"}
_REQUEST_ID = {"name": "X-Request-Id", "in": "header", "required": False, "schema": _UUID}
_OK = {"200": {"description": "The item(s), or the order created.",
               "content": {"application/json": {"schema": {"type": "object"}}}},
       "400": {"description": "The request does not match this document."}}


def _text(max_length: int, min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


_ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["customer", "shipping_address", "items", "currency"],
    "properties": {
        "customer": {
            "type": "object", "additionalProperties": False, "required": ["name", "email"],
            "properties": {
                "id": {"type": "string", "pattern": "^c-[0-9]{1,10}$"},
                "name": _text(100),
                "email": {"type": "string", "format": "email", "maxLength": 254},
                "phone": {"type": "string", "pattern": "^\\+?[0-9 ()-]{6,20}$"},
            },
        },
        "shipping_address": {
            "type": "object", "additionalProperties": False,
            "required": ["line1", "city", "postcode", "country"],
            "properties": {
                "line1": _text(100), "line2": _text(100, 0), "city": _text(60),
                "postcode": _text(12), "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
            },
        },
        "items": {
            "type": "array", "minItems": 1, "maxItems": 50,
            "items": {
                "type": "object", "additionalProperties": False,
                "required": ["item_id", "quantity"],
                "properties": {
                    "item_id": _UUID,
                    "sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,32}$"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                    "unit_price": {"type": "number", "exclusiveMinimum": 0, "maximum": 100000},
                },
            },
        },
        "currency": {"type": "string", "enum": ["EUR", "GBP", "USD"]},
        "coupon": {"type": "string", "pattern": "^[A-Z0-9-]{3,20}$"},
        "gift": {"type": "boolean"},
        "gift_message": _text(200, 0),
        "comment": _text(1000, 0),
        "referrer": {"type": "string", "format": "uri", "maxLength": 2048},
        "client": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "app": _text(40),
                "version": {"type": "string", "pattern": "^[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}$"},
                "locale": {"type": "string", "pattern": "^[a-z]{2}-[A-Z]{2}$"},
            },
        },
    },
}

#: Exactly the mix's three operations, with bounds and formats on every input. The
#: operations are public (``security: []``): the bearer token is forwarded as clients send
#: it, and no authentication stage joins what the ``bastion-inspect`` scenario measures.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Shop API (benchmark mix)", "version": "1.0.0"},
    "servers": [{"url": "https://api.example.com"}],
    "paths": {
        "/api/items": {
            "get": {
                "operationId": "listItems",
                "security": [],
                "parameters": [
                    {"name": "q", "in": "query", "schema": _text(100)},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    {"name": "offset", "in": "query",
                     "schema": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 0}},
                    {"name": "sort", "in": "query",
                     "schema": {"type": "string", "enum": ["price", "-price", "name", "-name"]}},
                    _REQUEST_ID,
                ],
                "responses": _OK,
            },
        },
        "/api/items/{itemId}": {
            "get": {
                "operationId": "getItem",
                "security": [],
                "parameters": [
                    {"name": "itemId", "in": "path", "required": True, "schema": _UUID},
                    _REQUEST_ID,
                ],
                "responses": _OK,
            },
        },
        "/api/orders": {
            "post": {
                "operationId": "createOrder",
                "security": [],
                "parameters": [_REQUEST_ID],
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ORDER_SCHEMA}}},
                "responses": _OK,
            },
        },
    },
}


# -- The wrk script --------------------------------------------------------------------------


def lua_string(value: str | bytes) -> str:
    """A Lua string literal for ``value``'s bytes (UTF-8 for text): printable ASCII as is,
    ``"`` and ``\\`` escaped, every other byte as a ``\\ddd`` decimal escape."""
    data = value.encode() if isinstance(value, str) else value
    out = []
    for byte in data:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_script(requests: Sequence[MixRequest] = MIX) -> str:
    """The wrk script sending ``requests`` in turn (per wrk thread), each formatted once.

    Headers given to wrk with ``-H`` are kept (the mix's own win on a clash), so a
    scenario's ``wrk_headers`` still reach the server.
    """
    entries = []
    for req in requests:
        headers = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in req.headers)
        body = lua_string(req.body) if req.body else "nil"
        entries.append(f"  {{method = {lua_string(req.method)}, path = {lua_string(req.target)},\n"
                       f"   headers = {{{headers}}},\n"
                       f"   body = {body}}},")
    return "\n".join([
        "-- Generated by bench/proxybench/mix.py: the small JSON API request mix, in turn.",
        "local mix = {",
        *entries,
        "}",
        "local requests = {}",
        "local next_index = 0",
        "local sequence = 0",
        "local threads = 0",
        "",
        "function setup(thread)",
        "  thread:set('thread_id', threads)",
        "  threads = threads + 1",
        "end",
        "",
        "function init(args)",
        "  sequence = (thread_id or 0) * 50000  -- thread_id: a global set by setup()",
        "  for i, r in ipairs(mix) do",
        "    local headers = {}",
        "    for k, v in pairs(wrk.headers) do headers[k] = v end",
        "    for k, v in pairs(r.headers) do headers[k] = v end",
        "    requests[i] = wrk.format(r.method, r.path, headers, r.body)",
        "  end",
        "end",
        "",
        "function request()",
        "  next_index = next_index % #requests + 1",
        "  sequence = (sequence + 1) % 100000",
        "  -- Same width as the placeholder: Content-Length stays right.",
        f"  return (requests[next_index]:gsub({lua_string(SEQ_PLACEHOLDER)}, string.format('%05d', sequence)))",
        "end",
        "",
    ])


def write_lua(folder: Path) -> Path:
    """Write :func:`lua_script` into the run folder; returns its path (for ``wrk -s``)."""
    path = folder / "mix.lua"
    path.write_text(lua_script())
    return path


# -- Sending the mix once ----------------------------------------------------------------------


def send(port: int, req: MixRequest, timeout: float = 10.0, extra: Sequence[str] = ()) -> tuple[int, bytes]:
    """Send one request of the mix to 127.0.0.1:port on a fresh connection, with ``extra``
    headers (``"Name: value"``); (status, body)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        # http.client adds no Host or Accept-Encoding of its own when the request has them.
        seq = "00000"
        headers: Mapping[str, str] = {
            **{k: v.replace(SEQ_PLACEHOLDER, seq) for k, v in req.headers},
            **dict(h.split(": ", 1) for h in extra),
        }
        body = req.body.replace(SEQ_PLACEHOLDER.encode(), seq.encode()) or None
        conn.request(req.method, req.target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def describe() -> list[str]:
    """Markdown lines describing the mix, for the report."""
    header_names = ", ".join(k for k, _ in CLIENT_HEADERS)
    return [
        "Every wrk connection sends, in turn (`-s mix.lua`, generated by `bench/proxybench/mix.py`):",
        "",
        *(f"- `{req.label}`" + (f" with a {len(req.body):,}-byte JSON order "
                                 "(`Content-Type: application/json`)" if req.body else "")
          for req in MIX),
        "",
        f"each with the headers a mobile app sends ({header_names}, X-Request-Id); the "
        "Authorization header carries a JWT-shaped bearer token. The order has names with an "
        "apostrophe and an accent, an e-mail address with `+`, a phone number, a prose comment and "
        "a URL with a query string. Requests are not byte-for-byte repeats: every request ID is new "
        "(Bastion replaces a client's X-Request-Id with its own unless the client is a trusted "
        "proxy, so its stages never see it), and so are the order's comment and gift message (a "
        "sequence number in each), so detection meets free text it has not seen before on every "
        "order, as with real traffic. "
        "The upstream answers each with the same 109-byte JSON. "
        "`bastion-inspect` routes by an OpenAPI 3.1 document of exactly these three operations "
        "(bounds, enums, patterns and formats on every parameter and body field, no additional "
        "properties).",
    ]


# -- Requests an inspecting scenario must refuse (proof that its inspection is on) -----------

#: The search with a SQL injection in ``q``: detection (and the CRS) answer 403.
ATTACK = MixRequest("GET", "/api/items?q=1%27%20UNION%20SELECT%20password%20FROM%20users--&limit=20",
                    MIX[0].headers)
#: The search with ``limit`` above the document's maximum: validation answers 400.
INVALID = MixRequest("GET", "/api/items?q=blue+shoes&limit=1000&sort=-price", MIX[0].headers)
