"""A third vulnerable API, shaped like a FastAPI service: none of the conventions the shop and library share.

``create_app(flaws)`` builds it; with no flaws it is the secure twin, on which a scan must report nothing.
What it has whatever the flaws, because real APIs do:

* camelCase JSON (``displayName``, ``userId``) and UUIDs for every ID;
* an OAuth2 password login on ``POST /auth/token`` (``application/x-www-form-urlencoded``) whose JWT comes
  back only as a cookie (``mkt_session``, HttpOnly), never in the body; failures answer 401 with ``detail``;
* resources nested under their owner, ``/users/{userId}/orders/{orderId}``; a create answers ``201`` with an
  empty body and a ``Location`` header; lists are paginated (``page``, ``size``) and wrapped HAL-style,
  ``{"_embedded": {"orders": [...]}, "page": {...}}``;
* validation errors as FastAPI's 422 ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``;
* an enum role column (:data:`ROLES`) and a login lockout after :data:`LOGIN_MAX_FAILURES` failures.

Flaws (:data:`ALL_FLAWS`):

* ``bola``: any user reads any order by its UUID (the ``userId`` in the path is not checked against the owner);
* ``mass_assignment``: ``PATCH /users/me`` stores an undeclared ``role`` (any value of the enum);
* ``user_enumeration``: the 401 says whether the e-mail address has an account;
* ``revealing_headers``: ``Server: uvicorn/0.29.0`` and ``X-Powered-By: FastAPI/0.110.0``;
* ``weak_jwt_secret``: session tokens signed with ``changeme``;
* ``webhook_ssrf``: ``POST /webhooks`` (sellers and admins only) pings whatever ``callbackUrl`` it is given (the
  secure twin accepts only its own hooks host). A scan with customer identities reaches it through the
  role-escalation chain when ``mass_assignment`` lets a customer make itself an admin.

The secure twin is served over TLS with security headers and rate limits, by the vulnapp's ``Guard``.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.tester.vulnapp import tokens
from tests.tester.vulnapp.app import Guard

__all__ = ["ALL_FLAWS", "COOKIE", "ROLES", "SEED_USERS", "SPEC_PATH", "Market", "create_app"]

ALL_FLAWS = frozenset({"bola", "mass_assignment", "user_enumeration", "revealing_headers", "weak_jwt_secret",
                       "webhook_ssrf"})
SPEC_PATH = Path(__file__).resolve().with_name("openapi.yaml")
ROLES = ("customer", "seller", "admin")
#: (e-mail, password, role) of the seeded accounts.
SEED_USERS: tuple[tuple[str, str, str], ...] = (
    ("alice@market.test", "alice-pw-3f81", "customer"),
    ("bob@market.test", "bob-pw-9a27", "customer"),
    ("carol@market.test", "carol-pw-c1d0", "admin"),
)
COOKIE = "mkt_session"
WEAK_SECRET = b"changeme"
LOGIN_MAX_FAILURES = 5
RATE_LIMIT = 50  # requests per identity and path within RATE_WINDOW (the scan's burst is 60)
RATE_WINDOW = 5.0  # long enough that a burst of 60 fills it even on a loaded machine
MAX_PAGE_SIZE = 50
#: The only host the secure twin sends webhooks to (it never resolves: the ping is refused before that).
HOOKS_HOST = "hooks.market.test"


@dataclass
class Account:
    id: str
    email: str
    password: str
    role: str
    display_name: str


@dataclass
class Order:
    id: str
    owner: str  # an account ID
    sku: str
    quantity: int
    note: str


@dataclass
class Market:
    """The app's state; tests read it to prove the scan left the target as it found it."""

    flaws: frozenset[str]
    accounts: dict[str, Account] = field(default_factory=dict)  # by ID
    orders: dict[str, Order] = field(default_factory=dict)
    secret: bytes = b""
    failures: dict[str, int] = field(default_factory=dict)
    hits: dict[str, deque[float]] = field(default_factory=dict)

    def seed(self) -> None:
        for email, password, role in SEED_USERS:
            account = Account(str(uuid.uuid4()), email, password, role, email.split("@")[0].title())
            self.accounts[account.id] = account
            order = Order(str(uuid.uuid4()), account.id, "SEED-1", 1, f"{account.display_name}'s first order")
            self.orders[order.id] = order
        self.secret = WEAK_SECRET if "weak_jwt_secret" in self.flaws else secrets.token_bytes(32)

    def by_email(self, email: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.email == email), None)

    def account_of(self, request: Request) -> Account | None:
        try:
            claims = tokens.verify(request.cookies.get(COOKIE, ""), self.secret)
        except tokens.InvalidToken:
            return None
        return self.accounts.get(str(claims.get("sub")))

    def limited(self, request: Request, account: Account | None) -> bool:
        who = account.id if account else (request.client.host if request.client else "-")
        window = self.hits.setdefault(f"{who}|{request.method} {request.url.path}", deque())
        now = time.monotonic()
        while window and now - window[0] > RATE_WINDOW:
            window.popleft()
        window.append(now)
        return len(window) > RATE_LIMIT


class Invalid(Exception):
    """A request that does not validate: answered 422 the way FastAPI does."""

    def __init__(self, location: str, name: str, message: str, kind: str) -> None:
        super().__init__(message)
        self.detail = [{"loc": [location, name], "msg": message, "type": kind}]


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _string(body: dict[str, Any], name: str, *, min_length: int = 1, max_length: int = 64) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise Invalid("body", name, "field required" if value is None else "str type expected",
                      "value_error.missing" if value is None else "type_error.str")
    if not min_length <= len(value) <= max_length:
        raise Invalid("body", name, f"ensure this value has {min_length} to {max_length} characters",
                      "value_error.any_str.length")
    return value


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise Invalid("body", extra[0], "extra fields not permitted", "value_error.extra")


def _account_json(account: Account) -> dict[str, Any]:
    return {"id": account.id, "email": account.email, "displayName": account.display_name, "role": account.role}


def _order_json(order: Order) -> dict[str, Any]:
    return {"orderId": order.id, "userId": order.owner, "sku": order.sku, "quantity": order.quantity,
            "note": order.note}


def create_app(flaws: Iterable[str] = ()) -> Starlette:
    """The market API with ``flaws`` (none: the secure twin); ``app.state.market`` is its :class:`Market`."""
    chosen = frozenset(flaws)
    if chosen - ALL_FLAWS:
        raise ValueError(f"unknown market flaw(s): {', '.join(sorted(chosen - ALL_FLAWS))}")
    market = Market(chosen)
    market.seed()

    def route(handler: Any, *, public: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            account = None if public else market.account_of(request)
            if market.limited(request, account):
                return _detail(429, "Too many requests", {"Retry-After": str(int(RATE_WINDOW))})
            if not public and account is None:
                return _detail(401, "Not authenticated", {"WWW-Authenticate": "Cookie"})
            try:
                response: Response = await handler(request, account)
            except Invalid as exc:
                response = JSONResponse({"detail": exc.detail}, status_code=422)
            if "revealing_headers" in chosen:
                response.headers["Server"] = "uvicorn/0.29.0"
                response.headers["X-Powered-By"] = "FastAPI/0.110.0"
            return response

        return endpoint

    async def token(request: Request, _: Account | None) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise Invalid("body", "username", "field required", "value_error.missing")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        email, password = _string(form, "username", max_length=128), _string(form, "password", max_length=128)
        if market.failures.get(email, 0) >= LOGIN_MAX_FAILURES:
            return _detail(429, "Too many failed logins", {"Retry-After": "60"})
        account = market.by_email(email)
        if account is None or not secrets.compare_digest(account.password, password):
            market.failures[email] = market.failures.get(email, 0) + 1
            detail = "Incorrect username or password"
            if "user_enumeration" in chosen:
                detail = "No account with this e-mail address" if account is None else "Incorrect password"
            return _detail(401, detail, {"WWW-Authenticate": "Cookie"})
        market.failures.pop(email, None)
        jwt = tokens.sign({"sub": account.id, "role": account.role, "exp": int(time.time()) + 900}, market.secret)
        response = JSONResponse({"token_type": "cookie", "expires_in": 900})
        response.set_cookie(COOKIE, jwt, max_age=900, httponly=True, secure=True, samesite="strict")
        return response

    async def register(request: Request, _: Account | None) -> Response:
        body = await _json(request)
        _only(body, {"email", "password", "displayName"})
        email = _string(body, "email", min_length=6, max_length=128)
        password = _string(body, "password", min_length=10, max_length=128)
        name = _string(body, "displayName") if "displayName" in body else email.split("@")[0]
        if "@" not in email or market.by_email(email) is not None:
            raise Invalid("body", "email", "this e-mail address cannot be used", "value_error.email")
        account = Account(str(uuid.uuid4()), email, password, "customer", name)
        market.accounts[account.id] = account
        return JSONResponse(_account_json(account), status_code=201, headers={"Location": f"/users/{account.id}"})

    async def get_me(request: Request, account: Account | None) -> Response:
        assert account is not None
        return JSONResponse(_account_json(account))

    async def patch_me(request: Request, account: Account | None) -> Response:
        assert account is not None
        body = await _json(request)
        _only(body, {"displayName", "role"} if "mass_assignment" in chosen else {"displayName"})
        name = _string(body, "displayName") if "displayName" in body else account.display_name
        role = body.get("role", account.role)
        if role not in ROLES:
            raise Invalid("body", "role", f"value is not a valid enumeration member; permitted: {ROLES}",
                          "type_error.enum")
        account.display_name, account.role = name, role
        return JSONResponse(_account_json(account))

    def owner_in_path(request: Request, account: Account) -> bool:
        return str(request.path_params["userId"]) == account.id

    async def list_orders(request: Request, account: Account | None) -> Response:
        assert account is not None
        if not owner_in_path(request, account):
            return _detail(404, "Not found")
        page, size = _int_query(request, "page", 1, 1, 10_000), _int_query(request, "size", 10, 1, MAX_PAGE_SIZE)
        mine = [o for o in market.orders.values() if o.owner == account.id]
        shown = mine[(page - 1) * size: page * size]
        return JSONResponse({"_embedded": {"orders": [_order_json(o) for o in shown]},
                             "page": {"number": page, "size": size, "totalElements": len(mine)}})

    async def create_order(request: Request, account: Account | None) -> Response:
        assert account is not None
        if not owner_in_path(request, account):
            return _detail(404, "Not found")
        body = await _json(request)
        _only(body, {"sku", "quantity", "note"})
        sku, note = _string(body, "sku", max_length=32), _string(body, "note", min_length=0, max_length=256)
        quantity = body.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 99:
            raise Invalid("body", "quantity", "ensure this value is between 1 and 99", "value_error.number")
        order = Order(str(uuid.uuid4()), account.id, sku, quantity, note)
        market.orders[order.id] = order
        return Response(status_code=201, headers={"Location": f"/users/{account.id}/orders/{order.id}"})

    async def get_order(request: Request, account: Account | None) -> Response:
        assert account is not None
        order = market.orders.get(request.path_params["orderId"])
        if order is None or ("bola" not in chosen and (order.owner != account.id or not owner_in_path(request,
                                                                                                       account))):
            return _detail(404, "Not found")
        return JSONResponse(_order_json(order))

    async def add_webhook(request: Request, account: Account | None) -> Response:
        assert account is not None
        if account.role not in ("seller", "admin"):
            return _detail(403, "Sellers only")
        body = await _json(request)
        _only(body, {"callbackUrl"})
        url = _string(body, "callbackUrl", max_length=2048)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or \
                ("webhook_ssrf" not in chosen and parts.hostname != HOOKS_HOST):
            raise Invalid("body", "callbackUrl", f"must be an https URL on {HOOKS_HOST}", "value_error.url")
        try:
            async with httpx.AsyncClient(timeout=5.0, follow_redirects=False, trust_env=False) as client:
                ping = await client.post(url, json={"event": "ping"})
            status: int | None = ping.status_code
        except httpx.HTTPError:
            status = None
        return JSONResponse({"webhookId": str(uuid.uuid4()), "pingStatus": status}, status_code=201)

    app = Starlette(
        routes=[
            Route("/auth/token", route(token, public=True), methods=["POST"]),
            Route("/auth/register", route(register, public=True), methods=["POST"]),
            Route("/users/me", route(get_me), methods=["GET"]),
            Route("/users/me", route(patch_me), methods=["PATCH"]),
            Route("/users/{userId}/orders", route(list_orders), methods=["GET"]),
            Route("/users/{userId}/orders", route(create_order), methods=["POST"]),
            Route("/users/{userId}/orders/{orderId}", route(get_order), methods=["GET"]),
            Route("/webhooks", route(add_webhook), methods=["POST"]),
        ],
        middleware=[Middleware(Guard, flaws=frozenset())],
    )
    app.state.market = market
    return app


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Invalid("query", name, f"ensure this value is between {low} and {high}", "value_error.number")
    return int(raw)


async def _json(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Invalid("body", "__root__", "a JSON object is required", "type_error.dict")
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise Invalid("body", "__root__", "invalid JSON", "value_error.jsondecode") from None
    if not isinstance(body, dict):
        raise Invalid("body", "__root__", "a JSON object is required", "type_error.dict")
    return body
