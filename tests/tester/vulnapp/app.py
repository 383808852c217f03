"""A deliberately vulnerable shop API, one switch per seeded flaw, for testing ``bastion scan``.

``create_app(flaws)`` returns a Starlette app implementing ``openapi.yaml``. With no flaws it
is a correct, secure API: owner and role checks, strict input validation, HS256 JWTs with
expiry, login lockout, per-identity rate limits, an SSRF guard, parameterised SQL, generic
problem+json errors and security headers on every response. Each name in :data:`ALL_FLAWS`
switches one of those defences off (or adds one undocumented endpoint); FLAWS.md documents
each flaw, how to trigger it and what the secure behaviour is.

All state lives in memory and is seeded the same way every time, so a fresh app has fresh
rate-limit counters and the same IDs: users alice=1, bob=2, root=3 (and admin=4 with
``default_credentials``); orders 1-3 belong to alice, 4-6 to bob, 7 to root.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import math
import posixpath
import re
import secrets
import socket
import sqlite3
import threading
import time
import traceback
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.tester.vulnapp import tokens

__all__ = ["ALL_FLAWS", "DOCS_DIR", "SEED_USERS", "SPEC_PATH", "create_app"]

ALL_FLAWS: frozenset[str] = frozenset(
    {
        # API1
        "bola",
        # API2
        "missing_auth",
        "jwt_alg_none",
        "jwt_signature_ignored",
        "jwt_expiry_ignored",
        "jwt_weak_secret",
        "token_in_url",
        "user_enumeration",
        "login_no_rate_limit",
        "password_change_no_old",
        "password_change_other_user",
        "default_credentials",
        # API3
        "excessive_data",
        "mass_assignment",
        # API4
        "no_rate_limit",
        "unbounded_page_size",
        "large_payload",
        "unbounded_arrays",
        # API5
        "bfla",
        # API7
        "ssrf",
        # API8
        "missing_security_headers",
        "cors_reflect",
        "verbose_errors",
        "debug_endpoint",
        "trace_enabled",
        "sqli",
        "nosqli",
        "cmdi",
        "path_traversal",
        # API9
        "old_version",
        "shadow_endpoint",
    }
)

SPEC_PATH = Path(__file__).resolve().with_name("openapi.yaml")
#: The documents ``GET /v2/files`` serves.
DOCS_DIR = Path(__file__).resolve().with_name("docs")
#: (username, password, role) of the seeded users, in ID order.
SEED_USERS: tuple[tuple[str, str, str], ...] = (
    ("alice", "alice-pass-8f3k", "user"),
    ("bob", "bob-pass-2m9q", "user"),
    ("root", "root-pass-7x1z", "admin"),
)
#: The secret ``jwt_weak_secret`` signs with; it is in the scanner's wordlist.
WEAK_JWT_SECRET = b"changeme"
#: Front-ends allowed to call the API from a browser (CORS), in both modes.
ALLOWED_ORIGINS = frozenset({"https://shop.example.com"})

TOKEN_LIFETIME = 900
MAX_BODY_BYTES = 64 * 1024
RATE_LIMIT = 50  # requests per identity and operation ...
RATE_WINDOW = 10.0  # ... per this many seconds
LOGIN_MAX_FAILURES = 5  # failed logins per username within LOGIN_WINDOW; the next attempt gets 429
LOGIN_MAX_CLIENT_FAILURES = 20  # failed logins per client address within LOGIN_WINDOW
LOGIN_WINDOW = 60.0
PBKDF2_ITERATIONS = 10_000
MAX_PAGE = 100
CMD_MAX_SLEEP = 10.0
SQL_TIME_LIMIT = 10.0
#: Where the flawed ``/files`` believes its documents are (as in its container image).
VIRTUAL_DOCS_ROOT = "/srv/vulnapp/docs"

_UINT_RE = re.compile(r"[0-9]{1,9}")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,59}\.txt")
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
_CORS_METHODS = b"GET, POST, PUT, PATCH, DELETE"

Handler = Callable[[Request, "User | None"], Awaitable[Response]]


# --------------------------------------------------------------------------- errors


class ProblemError(Exception):
    """Answer the request with an RFC 9457 problem document (raised by handlers)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An ``application/problem+json`` response; the body never varies beyond ``detail``."""
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class User:
    id: int
    username: str
    email: str
    display_name: str
    role: str
    salt: bytes
    password_hash: bytes
    api_token: str
    legacy_hash: str  # a bcrypt-format hash kept "for migration": what excessive_data leaks
    created_at: str


@dataclass(slots=True)
class Order:
    id: int
    owner_id: int
    items: list[dict[str, int]]
    note: str
    status: str
    total_cents: int
    created_at: str


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS)


def _fake_bcrypt(username: str) -> str:
    digest = hashlib.sha512(f"bcrypt:{username}".encode()).digest()
    return "$2b$12$" + "".join(_BCRYPT_ALPHABET[b % 64] for b in digest[:53])


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class SlidingWindow:
    """Counts events per key over the last ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float]:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def count(self, key: str, now: float) -> int:
        return len(self._prune(key, now))

    def add(self, key: str, now: float) -> None:
        self._prune(key, now).append(now)

    def retry_after(self, key: str, now: float) -> int:
        """Whole seconds until the oldest counted event leaves the window (at least 1)."""
        events = self._prune(key, now)
        return max(1, math.ceil(events[0] + self.window - now)) if events else 1

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


_PRODUCTS = (
    ("Espresso cup", "A small porcelain cup.", 900),
    ("Travel mug", "Keeps coffee hot for six hours.", 2400),
    ("Pour-over kettle", "Gooseneck kettle, 1 litre.", 5900),
    ("Burr grinder", "Conical burrs, 40 settings.", 12900),
    ("Paper filters", "Pack of 100.", 600),
    ("Coffee scale", "0.1 g resolution with timer.", 3900),
    ("Milk frother", "Handheld, battery powered.", 1500),
    ("Cold brew jar", "Glass jar with a steel filter.", 2900),
)


# --------------------------------------------------------------------------- the app


class VulnApp:
    """The application's state and handlers; :func:`create_app` wires them into Starlette."""

    def __init__(self, flaws: frozenset[str]) -> None:
        self.flaws = flaws
        self.secret = WEAK_JWT_SECRET if "jwt_weak_secret" in flaws else secrets.token_bytes(32)
        self.leniency = tokens.Leniency(
            accept_alg_none="jwt_alg_none" in flaws,
            ignore_signature="jwt_signature_ignored" in flaws,
            ignore_expiry="jwt_expiry_ignored" in flaws,
        )
        self.users: dict[int, User] = {}
        self.orders: dict[int, Order] = {}
        self.next_user_id = 1
        self.next_order_id = 1
        self.rate = SlidingWindow(RATE_LIMIT, RATE_WINDOW)
        self.login_failures = SlidingWindow(LOGIN_MAX_FAILURES, LOGIN_WINDOW)
        self.login_client_failures = SlidingWindow(LOGIN_MAX_CLIENT_FAILURES, LOGIN_WINDOW)
        self.dummy_salt = secrets.token_bytes(16)
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        # Injected heavy expressions stay bounded: 64 MB values at most, 10 s per query.
        self.db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 64 * 1024 * 1024)
        self.query_deadline = 0.0
        self.db.set_progress_handler(lambda: int(0 < self.query_deadline < time.monotonic()), 10_000)
        self.db_lock = threading.Lock()
        self._seed()

    def has(self, flaw: str) -> bool:
        return flaw in self.flaws

    # ------------------------------------------------------------------ seed data

    def _add_user(self, username: str, password: str, role: str) -> User:
        salt = secrets.token_bytes(16)
        user = User(
            id=self.next_user_id,
            username=username,
            email=f"{username}@example.com",
            display_name=username.capitalize(),
            role=role,
            salt=salt,
            password_hash=_hash_password(password, salt),
            api_token="sk_live_" + secrets.token_hex(16),
            legacy_hash=_fake_bcrypt(username),
            created_at=_now_iso(),
        )
        self.users[user.id] = user
        self.next_user_id += 1
        return user

    def _add_order(self, owner: User, items: list[dict[str, int]], note: str) -> Order:
        order = Order(self.next_order_id, owner.id, items, note, "pending", self._total(items), _now_iso())
        self.orders[order.id] = order
        self.next_order_id += 1
        return order

    def _seed(self) -> None:
        with self.db:
            self.db.execute(
                "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "description TEXT NOT NULL, price_cents INTEGER NOT NULL)"
            )
            self.db.executemany("INSERT INTO products (name, description, price_cents) VALUES (?, ?, ?)", _PRODUCTS)
        alice, bob, root = (self._add_user(*seed) for seed in SEED_USERS)
        if self.has("default_credentials"):
            self._add_user("admin", "admin", "admin")
        for owner, plans in (
            (alice, ([(1, 2)], [(3, 1), (5, 2)], [(4, 1)])),
            (bob, ([(2, 1)], [(6, 1), (5, 1)], [(8, 3)])),
            (root, ([(7, 1)],)),
        ):
            for plan in plans:
                self._add_order(owner, [{"product_id": p, "quantity": q} for p, q in plan], "")

    def _prices(self) -> dict[int, int]:
        with self.db_lock:
            return dict(self.db.execute("SELECT id, price_cents FROM products").fetchall())

    def _total(self, items: list[dict[str, int]]) -> int:
        prices = self._prices()
        return sum(prices[item["product_id"]] * item["quantity"] for item in items)

    # ------------------------------------------------------------------ serialisation

    def user_json(self, user: User) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "display_name": user.display_name,
            "role": user.role,
            "created_at": user.created_at,
        }
        if self.has("excessive_data"):
            body["password_hash"] = user.legacy_hash
            body["api_token"] = user.api_token
        return body

    @staticmethod
    def order_json(order: Order) -> dict[str, Any]:
        return {
            "id": order.id,
            "status": order.status,
            "items": [dict(item) for item in order.items],
            "note": order.note,
            "total_cents": order.total_cents,
            "created_at": order.created_at,
        }

    # ------------------------------------------------------------------ authentication

    def issue_token(self, user: User) -> str:
        now = int(time.time())
        claims = {
            "iss": "vulnapp",
            "sub": str(user.id),
            "name": user.username,
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": secrets.token_hex(8),
        }
        return tokens.sign(claims, self.secret)

    def _credential(self, request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
        if self.has("token_in_url"):
            return request.query_params.get("access_token")
        return None

    def authenticate(self, request: Request) -> tuple[User | None, bool]:
        """The caller (or None) and whether a credential was presented at all."""
        credential = self._credential(request)
        if credential is None:
            return None, False
        try:
            claims = tokens.verify(credential, self.secret, self.leniency)
        except tokens.InvalidToken:
            return None, True
        sub = claims.get("sub")
        if not isinstance(sub, str) or not _UINT_RE.fullmatch(sub):
            return None, True
        return self.users.get(int(sub)), True

    # ------------------------------------------------------------------ operations

    def operation(
        self, op_id: str, handler: Handler, *, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` with authentication, the per-identity rate limit and problem errors."""

        async def endpoint(request: Request) -> Response:
            user, presented = (None, False) if public else self.authenticate(request)
            limit_headers: dict[str, str] = {}
            if not self.has("no_rate_limit"):
                identity = f"user:{user.id}" if user else f"ip:{request.client.host if request.client else '-'}"
                key = f"{op_id}|{identity}"
                now = time.monotonic()
                if self.rate.count(key, now) >= RATE_LIMIT:
                    retry = self.rate.retry_after(key, now)
                    return problem(
                        429,
                        "Too many requests; retry later.",
                        {
                            "Retry-After": str(retry),
                            "RateLimit": f"limit={RATE_LIMIT}, remaining=0, reset={retry}",
                            "RateLimit-Policy": f"{RATE_LIMIT};w={int(RATE_WINDOW)}",
                        },
                    )
                self.rate.add(key, now)
                limit_headers = {
                    "RateLimit": f"limit={RATE_LIMIT}, remaining={RATE_LIMIT - self.rate.count(key, now)}, "
                    f"reset={self.rate.retry_after(key, now)}",
                    "RateLimit-Policy": f"{RATE_LIMIT};w={int(RATE_WINDOW)}",
                }
            anonymous_ok = public or (op_id == "getSalesReport" and self.has("missing_auth"))
            if user is None and not anonymous_ok:
                challenge = 'Bearer realm="vulnapp"' + (', error="invalid_token"' if presented else "")
                return problem(401, "Authentication is required.", {"WWW-Authenticate": challenge})
            try:
                response = await handler(request, user)
            except ProblemError as exc:
                response = problem(exc.status, exc.detail, exc.headers)
            for name, value in limit_headers.items():
                response.headers.setdefault(name, value)
            return response

        return endpoint

    # ------------------------------------------------------------------ input helpers

    async def json_body(self, request: Request) -> Any:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise ProblemError(415, "The request body must be application/json.")
        raw = await request.body()
        if self.has("verbose_errors"):
            return json.loads(raw)  # a malformed body raises: the unhandled error leaks a traceback
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise ProblemError(400, "The request body is not valid JSON.") from None

    def integer(self, raw: str | None, name: str, *, default: int, minimum: int, maximum: int | None) -> int:
        if raw is None:
            return default
        if self.has("verbose_errors"):
            value = int(raw)  # "abc" raises ValueError: the unhandled error leaks a traceback
        elif _UINT_RE.fullmatch(raw):
            value = int(raw)
        else:
            raise ProblemError(400, f"{name} must be an integer.")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise ProblemError(400, f"{name} must be {bound}.")
        return value

    def path_id(self, request: Request, name: str) -> int:
        return self.integer(request.path_params[name], name, default=0, minimum=1, maximum=999_999_999)

    @staticmethod
    def expect_object(body: Any, allowed: Collection[str], required: Collection[str] = ()) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ProblemError(400, "The request body must be a JSON object.")
        for key in body:
            if key not in allowed:
                raise ProblemError(400, f"Unknown property {str(key)[:40]!r}.")
        for key in required:
            if key not in body:
                raise ProblemError(400, f"{key} is required.")
        return body

    @staticmethod
    def string(
        value: Any, name: str, *, min_length: int = 1, max_length: int, pattern: re.Pattern[str] | None = None
    ) -> str:
        if not isinstance(value, str):
            raise ProblemError(400, f"{name} must be a string.")
        if not min_length <= len(value) <= max_length:
            raise ProblemError(400, f"{name} must be {min_length} to {max_length} characters long.")
        if pattern is not None and not pattern.fullmatch(value):
            raise ProblemError(400, f"{name} has an invalid format.")
        return value

    # ------------------------------------------------------------------ auth/login

    def _login_blocked(self, request: Request, username_key: str, client_key: str, failed: bool) -> int | None:
        """Seconds to wait if this attempt is refused with 429, else None."""
        if self.has("login_no_rate_limit"):
            return None
        now = time.monotonic()
        if self.login_failures.count(username_key, now) >= LOGIN_MAX_FAILURES:
            return self.login_failures.retry_after(username_key, now)
        if failed and self.login_client_failures.count(client_key, now) >= LOGIN_MAX_CLIENT_FAILURES:
            return self.login_client_failures.retry_after(client_key, now)
        return None

    def _find_login_user(self, username: Any, password: Any) -> User | None:
        """Mongo-style matching of the ``nosqli`` flaw: operator objects as field conditions."""
        for user in self.users.values():
            stored = user.password_hash.hex()
            password_value = _hash_password(password, user.salt).hex() if isinstance(password, str) else None
            if _mongo_match(user.username, username) and (
                password_value == stored if isinstance(password, str) else _mongo_match(stored, password)
            ):
                return user
        return None

    async def login(self, request: Request, _: User | None) -> Response:
        body = self.expect_object(await self.json_body(request), ("username", "password"), ("username", "password"))
        username, password = body["username"], body["password"]
        client_key = request.client.host if request.client else "-"
        if self.has("nosqli") and (isinstance(username, dict) or isinstance(password, dict)):
            username_key = json.dumps(username, sort_keys=True, default=str)[:200]
            blocked = self._login_blocked(request, username_key, client_key, failed=False)
            if blocked is not None:
                return problem(429, "Too many failed logins; retry later.", {"Retry-After": str(blocked)})
            user = self._find_login_user(username, password)
            if user is not None:
                return self._token_response(user)
            return self._login_failed(username_key, client_key, "Invalid username or password.", 401)
        username = self.string(username, "username", max_length=64)
        password = self.string(password, "password", max_length=128)
        user = next((u for u in self.users.values() if u.username == username), None)
        if user is None and self.has("user_enumeration"):
            blocked = self._login_blocked(request, username, client_key, failed=True)
            if blocked is not None:
                return problem(429, "Too many failed logins; retry later.", {"Retry-After": str(blocked)})
            return self._login_failed(username, client_key, "Unknown user.", 404)
        # Always hash, also for unknown users, so the answer takes the same time.
        candidate = _hash_password(password, user.salt if user else self.dummy_salt)
        ok = user is not None and hmac.compare_digest(candidate, user.password_hash)
        blocked = self._login_blocked(request, username, client_key, failed=not ok)
        if blocked is not None:
            return problem(429, "Too many failed logins; retry later.", {"Retry-After": str(blocked)})
        if user is not None and ok:
            self.login_failures.clear(username)
            return self._token_response(user)
        detail = "Wrong password." if self.has("user_enumeration") else "Invalid username or password."
        return self._login_failed(username, client_key, detail, 401)

    def _login_failed(self, username_key: str, client_key: str, detail: str, status: int) -> Response:
        now = time.monotonic()
        self.login_failures.add(username_key, now)
        self.login_client_failures.add(client_key, now)
        return problem(status, detail)

    def _token_response(self, user: User) -> Response:
        token = self.issue_token(user)
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": TOKEN_LIFETIME})

    # ------------------------------------------------------------------ users

    @staticmethod
    def _require(user: User | None) -> User:
        if user is None:  # operation() answers 401 first; this only narrows the type
            raise ProblemError(401, "Authentication is required.")
        return user

    async def get_me(self, request: Request, user: User | None) -> Response:
        return JSONResponse(self.user_json(self._require(user)))

    async def update_me(self, request: Request, user: User | None) -> Response:
        me = self._require(user)
        body = self.expect_object(await self.json_body(request), ("display_name", "email", "role"))
        if not body:
            raise ProblemError(400, "Send at least one property to change.")
        if "role" in body and not self.has("mass_assignment"):
            raise ProblemError(400, "role is read-only.")
        changes = {
            "display_name": self.string(body.get("display_name", "-"), "display_name", max_length=64),
            "email": self.string(body.get("email", "a@b.cd"), "email", max_length=254, pattern=_EMAIL_RE),
            "role": self.string(body.get("role", "-"), "role", max_length=32),
        }
        if "display_name" in body:
            me.display_name = changes["display_name"]
        if "email" in body:
            me.email = changes["email"]
        if "role" in body:  # mass_assignment: the client just made itself whatever it asked for
            me.role = changes["role"]
        return JSONResponse(self.user_json(me))

    async def change_password(self, request: Request, user: User | None) -> Response:
        me = self._require(user)
        body = self.expect_object(await self.json_body(request), ("old_password", "new_password"), ("new_password",))
        new = self.string(body["new_password"], "new_password", min_length=12, max_length=128)
        if not self.has("password_change_no_old"):
            if "old_password" not in body:
                raise ProblemError(400, "old_password is required.")
            old = self.string(body["old_password"], "old_password", max_length=128)
            if not hmac.compare_digest(_hash_password(old, me.salt), me.password_hash):
                raise ProblemError(400, "old_password is not the current password.")
        me.salt = secrets.token_bytes(16)
        me.password_hash = _hash_password(new, me.salt)
        return Response(status_code=204)

    async def change_user_password(self, request: Request, user: User | None) -> Response:
        me = self._require(user)
        target_id = self.path_id(request, "userId")
        if target_id != me.id and not self.has("password_change_other_user"):
            raise ProblemError(403, "You may change only your own password.")
        target = self.users.get(target_id)
        if target is None:
            raise ProblemError(404, "No such user.")
        body = self.expect_object(
            await self.json_body(request), ("old_password", "new_password"), ("old_password", "new_password")
        )
        new = self.string(body["new_password"], "new_password", min_length=12, max_length=128)
        old = self.string(body["old_password"], "old_password", max_length=128)
        # Checked against the caller: for your own ID (the only one the secure app allows) that is the
        # account's current password; with password_change_other_user it is the attacker's own password.
        if not hmac.compare_digest(_hash_password(old, me.salt), me.password_hash):
            raise ProblemError(400, "old_password is not the current password.")
        target.salt = secrets.token_bytes(16)
        target.password_hash = _hash_password(new, target.salt)
        return Response(status_code=204)

    async def get_user(self, request: Request, user: User | None) -> Response:
        me = self._require(user)
        target = self.users.get(self.path_id(request, "userId"))
        if target is None or (target.id != me.id and me.role != "admin"):
            raise ProblemError(404, "No such user.")
        return JSONResponse(self.user_json(target))

    # ------------------------------------------------------------------ orders

    def _order_input(self, body: Any) -> tuple[list[dict[str, int]], str]:
        bounded = not self.has("large_payload")
        data = self.expect_object(body, ("items", "note"), ("items",))
        items = data["items"]
        if not isinstance(items, list) or not items or (not self.has("unbounded_arrays") and len(items) > 20):
            raise ProblemError(400, "items must be a list of 1 to 20 items.")
        prices = self._prices()
        parsed: list[dict[str, int]] = []
        for item in items:
            entry = self.expect_object(item, ("product_id", "quantity"), ("product_id", "quantity"))
            product_id, quantity = entry["product_id"], entry["quantity"]
            if type(product_id) is not int or product_id not in prices:
                raise ProblemError(400, "product_id must name an existing product.")
            if type(quantity) is not int or not 1 <= quantity <= 100:
                raise ProblemError(400, "quantity must be an integer from 1 to 100.")
            parsed.append({"product_id": product_id, "quantity": quantity})
        note = data.get("note", "")
        if bounded:
            note = self.string(note, "note", min_length=0, max_length=500)
        elif not isinstance(note, str):
            raise ProblemError(400, "note must be a string.")
        return parsed, note

    def _own_order(self, request: Request, user: User) -> Order:
        order = self.orders.get(self.path_id(request, "orderId"))
        if order is None or (order.owner_id != user.id and not self.has("bola")):
            raise ProblemError(404, "No such order.")
        return order

    async def list_orders(self, request: Request, user: User | None) -> Response:
        me = self._require(user)
        limit = self.integer(request.query_params.get("limit"), "limit", default=20, minimum=1, maximum=MAX_PAGE)
        offset = self.integer(request.query_params.get("offset"), "offset", default=0, minimum=0, maximum=10_000)
        mine = [o for o in self.orders.values() if o.owner_id == me.id]
        return JSONResponse({"items": [self.order_json(o) for o in mine[offset : offset + limit]], "total": len(mine)})

    async def create_order(self, request: Request, user: User | None) -> Response:
        me = self._require(user)
        items, note = self._order_input(await self.json_body(request))
        order = self._add_order(me, items, note)
        return JSONResponse(self.order_json(order), status_code=201, headers={"Location": f"/v2/orders/{order.id}"})

    async def get_order(self, request: Request, user: User | None) -> Response:
        return JSONResponse(self.order_json(self._own_order(request, self._require(user))))

    async def update_order(self, request: Request, user: User | None) -> Response:
        order = self._own_order(request, self._require(user))
        items, note = self._order_input(await self.json_body(request))
        order.items, order.note, order.total_cents = items, note, self._total(items)
        return JSONResponse(self.order_json(order))

    async def delete_order(self, request: Request, user: User | None) -> Response:
        order = self._own_order(request, self._require(user))
        del self.orders[order.id]
        return Response(status_code=204)

    # ------------------------------------------------------------------ products (sqli)

    def _query_products(self, search: str | None, limit: int, offset: int) -> list[tuple[Any, ...]]:
        with self.db_lock:
            self.query_deadline = time.monotonic() + SQL_TIME_LIMIT
            try:
                return self._run_product_query(search, limit, offset)
            finally:
                self.query_deadline = 0.0

    def _run_product_query(self, search: str | None, limit: int, offset: int) -> list[tuple[Any, ...]]:
        params: tuple[str, ...] = ()
        if search is None:
            sql = "SELECT id, name, description, price_cents FROM products\nORDER BY id LIMIT ? OFFSET ?"
        elif self.has("sqli"):
            # The flaw: the search text is pasted into the SQL (on its own line, so a
            # trailing "--" comment leaves ORDER BY/LIMIT intact).
            sql = (
                "SELECT id, name, description, price_cents FROM products\n"
                f"WHERE name LIKE '%{search}%'\n"
                "ORDER BY id LIMIT ? OFFSET ?"
            )
        else:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            sql = (
                "SELECT id, name, description, price_cents FROM products\n"
                "WHERE name LIKE ? ESCAPE '\\'\nORDER BY id LIMIT ? OFFSET ?"
            )
            params = (f"%{escaped}%",)
        return self.db.execute(sql, (*params, limit, offset)).fetchall()

    async def list_products(self, request: Request, user: User | None) -> Response:
        query = request.query_params
        search = query.get("search")
        if search is not None:
            search = self.string(search, "search", min_length=0, max_length=100)
        maximum = None if self.has("unbounded_page_size") else MAX_PAGE
        limit = self.integer(query.get("limit"), "limit", default=20, minimum=1, maximum=maximum)
        offset = self.integer(query.get("offset"), "offset", default=0, minimum=0, maximum=1000)
        try:
            rows = await anyio.to_thread.run_sync(self._query_products, search, limit, offset)
        except sqlite3.Error as exc:
            if self.has("sqli"):  # the flawed query shows the database's own error message
                return problem(500, f"sqlite3.{type(exc).__name__}: {exc}")
            raise
        items = [{"id": r[0], "name": r[1], "description": r[2], "price_cents": r[3]} for r in rows]
        return JSONResponse({"items": items, "limit": limit, "offset": offset})

    # ------------------------------------------------------------------ files (path traversal)

    async def get_file(self, request: Request, user: User | None) -> Response:
        name = request.query_params.get("name")
        if name is None:
            raise ProblemError(400, "name is required.")
        if self.has("path_traversal"):
            virtual = posixpath.normpath(posixpath.join(VIRTUAL_DOCS_ROOT, name))
            prefix = VIRTUAL_DOCS_ROOT + "/"
            path = DOCS_DIR / virtual[len(prefix) :] if virtual.startswith(prefix) else Path(virtual)
        else:
            self.string(name, "name", max_length=64, pattern=_FILE_NAME_RE)
            path = (DOCS_DIR / name).resolve()
            if not path.is_relative_to(DOCS_DIR):
                raise ProblemError(400, "name has an invalid format.")
        try:
            content = path.read_bytes()[:MAX_BODY_BYTES].decode("utf-8", "replace")
        except OSError:
            raise ProblemError(404, "No such file.") from None
        return JSONResponse({"name": name, "content": content})

    # ------------------------------------------------------------------ tools/ping (cmdi)

    async def ping(self, request: Request, user: User | None) -> Response:
        host = request.query_params.get("host")
        if host is None:
            raise ProblemError(400, "host is required.")
        if self.has("cmdi"):
            # The flaw: the host goes into a (simulated) shell command line. Nothing is ever
            # executed; only `sleep N` after a shell separator is honoured, by sleeping.
            await _simulated_shell_sleep(host)
        else:
            self.string(host, "host", max_length=253, pattern=_HOSTNAME_RE)
        output = f"PING {host}: 3 packets transmitted, 3 received, 0% packet loss"
        return JSONResponse({"host": host, "output": output})

    # ------------------------------------------------------------------ webhooks (ssrf)

    async def test_webhook(self, request: Request, user: User | None) -> Response:
        body = self.expect_object(await self.json_body(request), ("url",), ("url",))
        url = self.string(body["url"], "url", max_length=2048)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProblemError(400, "url must be an absolute http or https URL.")
        if not self.has("ssrf") and not await _resolves_to_public(parts.hostname, parts.port):
            raise ProblemError(400, "url must point at a public internet host.")
        try:
            async with httpx.AsyncClient(timeout=5.0, follow_redirects=False, trust_env=False) as client:
                answer = await client.post(url, json={"event": "webhook.test", "sent_at": _now_iso()})
        except httpx.HTTPError:
            return JSONResponse({"delivered": False, "status_code": None})
        return JSONResponse({"delivered": answer.is_success, "status_code": answer.status_code})

    # ------------------------------------------------------------------ reports, admin

    async def sales_report(self, request: Request, user: User | None) -> Response:
        units: dict[int, int] = {}
        for order in self.orders.values():
            for item in order.items:
                units[item["product_id"]] = units.get(item["product_id"], 0) + item["quantity"]
        top = sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        return JSONResponse(
            {
                "generated_at": _now_iso(),
                "order_count": len(self.orders),
                "revenue_cents": sum(o.total_cents for o in self.orders.values()),
                "top_products": [{"product_id": p, "units_sold": n} for p, n in top],
            }
        )

    def _require_admin(self, user: User | None) -> User:
        me = self._require(user)
        if me.role != "admin" and not self.has("bfla"):
            raise ProblemError(403, "This operation is for administrators.")
        return me

    async def admin_list_users(self, request: Request, user: User | None) -> Response:
        self._require_admin(user)
        return JSONResponse({"items": [self.user_json(u) for u in self.users.values()]})

    async def admin_delete_user(self, request: Request, user: User | None) -> Response:
        self._require_admin(user)
        target_id = self.path_id(request, "userId")
        if self.users.pop(target_id, None) is None:
            raise ProblemError(404, "No such user.")
        return Response(status_code=204)

    # ------------------------------------------------------------------ undocumented endpoints

    async def debug_vars(self, request: Request) -> Response:
        return JSONResponse(
            {
                "debug": True,
                "version": "2.3.1-dev",
                "config": {
                    "jwt_secret": self.secret.decode("latin-1") if self.has("jwt_weak_secret") else self.secret.hex(),
                    "database_url": "postgresql://shop:Sup3r-Secret-DB-pass@db.internal:5432/shop",
                    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                },
                "users_loaded": len(self.users),
            }
        )

    async def internal_export(self, request: Request) -> Response:
        users = [
            {**self.user_json(u), "password_hash": u.legacy_hash, "api_token": u.api_token} for u in self.users.values()
        ]
        return JSONResponse({"users": users})

    # ------------------------------------------------------------------ routing

    def api_routes(self) -> list[BaseRoute]:
        op = self.operation
        return [
            Route("/auth/login", op("login", self.login, public=True), methods=["POST"]),
            Route("/users/me", op("getCurrentUser", self.get_me), methods=["GET"]),
            Route("/users/me", op("updateCurrentUser", self.update_me), methods=["PATCH"]),
            Route("/users/me/password", op("changePassword", self.change_password), methods=["PUT"]),
            Route("/users/{userId}/password", op("changeUserPassword", self.change_user_password), methods=["PUT"]),
            Route("/users/{userId}", op("getUser", self.get_user), methods=["GET"]),
            Route("/orders", op("listOrders", self.list_orders), methods=["GET"]),
            Route("/orders", op("createOrder", self.create_order), methods=["POST"]),
            Route("/orders/{orderId}", op("getOrder", self.get_order), methods=["GET"]),
            Route("/orders/{orderId}", op("updateOrder", self.update_order), methods=["PUT"]),
            Route("/orders/{orderId}", op("deleteOrder", self.delete_order), methods=["DELETE"]),
            Route("/products", op("listProducts", self.list_products), methods=["GET"]),
            Route("/files", op("getFile", self.get_file), methods=["GET"]),
            Route("/tools/ping", op("ping", self.ping), methods=["GET"]),
            Route("/webhooks/test", op("testWebhook", self.test_webhook), methods=["POST"]),
            Route("/reports", op("getSalesReport", self.sales_report), methods=["GET"]),
            Route("/admin/users", op("adminListUsers", self.admin_list_users), methods=["GET"]),
            Route("/admin/users/{userId}", op("adminDeleteUser", self.admin_delete_user), methods=["DELETE"]),
        ]

    def routes(self) -> list[BaseRoute]:
        v2 = self.api_routes()
        if self.has("shadow_endpoint"):
            v2.insert(0, Route("/internal/export", self.internal_export, methods=["GET"]))
        routes: list[BaseRoute] = [Mount("/v2", routes=v2)]
        if self.has("old_version"):
            routes.append(Mount("/v1", routes=self.api_routes()))
        if self.has("debug_endpoint"):
            routes.append(Route("/debug/vars", self.debug_vars, methods=["GET"]))
        return routes


def _mongo_operator(op: str, value: Any, arg: Any) -> bool:
    """One Mongo-style query operator applied to a stored value."""
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if arg is None:
            return False
        return bool({"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op])
    if op in ("$in", "$nin"):
        return isinstance(arg, list) and (value in arg) == (op == "$in")
    if op == "$exists":
        return bool(arg)
    if op == "$regex":
        return isinstance(arg, str) and re.search(arg[:100], str(value)) is not None
    return False


def _mongo_match(value: Any, condition: Any) -> bool:
    """Match ``value`` against a literal or a Mongo-style operator object (the nosqli flaw)."""
    if not isinstance(condition, dict):
        return bool(value == condition)
    try:
        return all(_mongo_operator(str(op), value, arg) for op, arg in condition.items())
    except (TypeError, re.error):
        return False


_SHELL_SPLIT = re.compile(r"\|\||&&|[;|&`\n]|\$\(|\)")
_SLEEP = re.compile(r"\s*sleep\s+([0-9]{1,2}(?:\.[0-9]{1,3})?)\s*")


async def _simulated_shell_sleep(command_argument: str) -> None:
    """Honour ``sleep N`` chained after a shell separator, as ``sh -c "ping -c 3 <arg>"`` would."""
    total = 0.0
    for segment in _SHELL_SPLIT.split(command_argument)[1:]:
        match = _SLEEP.fullmatch(segment)
        if match:
            total += float(match.group(1))
    if total:
        await asyncio.sleep(min(total, CMD_MAX_SLEEP))


async def _resolves_to_public(host: str, port: int | None) -> bool:
    """True if every address ``host`` resolves to is a global unicast address."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    if not infos:
        return False
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return False
    return True


# --------------------------------------------------------------------------- the outer layer


class Guard:
    """Outermost ASGI layer: unhandled errors, the body limit, TRACE, CORS and security headers.

    Everything the app answers, including 404/405/413/500, passes through here, so the
    security headers are on every response.
    """

    def __init__(self, app: ASGIApp, flaws: frozenset[str]) -> None:
        self.app = app
        self.flaws = flaws

    def _extra_headers(self, scope: Scope, origin: str | None) -> list[tuple[bytes, bytes]]:
        extra: list[tuple[bytes, bytes]] = []
        if "missing_security_headers" not in self.flaws:
            extra.extend(_SECURITY_HEADERS)
            if scope.get("scheme") == "https":
                extra.append(_HSTS)
        if origin is not None and ("cors_reflect" in self.flaws or origin in ALLOWED_ORIGINS):
            extra.append((b"access-control-allow-origin", origin.encode("latin-1")))
            extra.append((b"access-control-allow-credentials", b"true"))
        extra.append((b"vary", b"Origin"))
        return extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        extra = self._extra_headers(scope, origin)
        override = {name for name, _ in extra}
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in override]
                message = {**message, "headers": kept + extra}
            await send(message)

        try:
            response = await self._early_response(scope, headers, origin)
            if response is not None:
                await response(scope, receive, send_with_headers)
                return
            body_receive = receive
            if "large_payload" not in self.flaws:
                body = await _read_body(receive, MAX_BODY_BYTES, headers)
                if body is None:
                    await problem(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")(
                        scope, receive, send_with_headers
                    )
                    return
                body_receive = _replay(body, receive)
            await self.app(scope, body_receive, send_with_headers)
        except Exception:
            if started:
                raise
            if "verbose_errors" in self.flaws:
                error: Response = PlainTextResponse(traceback.format_exc(), status_code=500)
            else:
                error = problem(500, "An internal error occurred.")
            await error(scope, receive, send_with_headers)

    async def _early_response(self, scope: Scope, headers: Headers, origin: str | None) -> Response | None:
        method = scope["method"]
        if method == "TRACE" and "trace_enabled" in self.flaws:
            target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            lines = [f"TRACE {target} HTTP/{scope.get('http_version', '1.1')}"]
            lines += [f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in scope["headers"]]
            return Response("\r\n".join(lines) + "\r\n\r\n", media_type="message/http")
        allowed = origin is not None and ("cors_reflect" in self.flaws or origin in ALLOWED_ORIGINS)
        if method == "OPTIONS" and allowed and "access-control-request-method" in headers:
            preflight = {
                "Access-Control-Allow-Methods": _CORS_METHODS.decode(),
                "Access-Control-Allow-Headers": headers.get(
                    "access-control-request-headers", "authorization, content-type"
                )[:200],
                "Access-Control-Max-Age": "600",
            }
            return Response(status_code=204, headers=preflight)
        return None


async def _read_body(receive: Receive, limit: int, headers: Headers) -> bytes | None:
    """The whole request body, or None if it is (or says it is) larger than ``limit``."""
    declared = headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: "No route matches this path.", 405: "This method is not allowed here."}.get(
        exc.status_code, "The request could not be processed."
    )
    headers = dict(exc.headers or {})
    allow = headers.get("Allow") or headers.get("allow")
    if allow:
        # Starlette lists a route's methods in set order: give them in a stable one.
        order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        methods = sorted({m.strip() for m in allow.split(",")}, key=lambda m: (order.index(m) if m in order else 99, m))
        headers.pop("allow", None)
        headers["Allow"] = ", ".join(methods)
    return problem(exc.status_code, detail, headers)


def create_app(flaws: Iterable[str] = ()) -> Starlette:
    """The vulnerable shop API with the named flaws switched on (none: a secure API).

    Raises ``ValueError`` naming any flaw that is not in :data:`ALL_FLAWS`.
    """
    chosen = frozenset(flaws)
    unknown = chosen - ALL_FLAWS
    if unknown:
        known = ", ".join(sorted(ALL_FLAWS))
        raise ValueError(f"unknown vulnapp flaw(s): {', '.join(sorted(unknown))}; known flaws: {known}")
    state = VulnApp(chosen)
    app = Starlette(
        routes=state.routes(),
        middleware=[Middleware(Guard, flaws=chosen)],
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.vulnapp = state
    return app
