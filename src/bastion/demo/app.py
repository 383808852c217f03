"""The demo bookstore API: an upstream to put behind Bastion.

It implements ``books.openapi.yaml`` (see :func:`openapi_path`) over in-memory data that is
seeded the same way every time, so ids are stable across runs. Like many real APIs it is
naive in ways a gateway should cover: it takes the caller's identity from the
``X-User-Id`` header (defaulting to ``alice``), never checks credentials itself, lets any
caller read any user, and returns users' secret fields (``passwordHash``, ``apiToken``,
``cardNumber``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

VERSION = "1.0.0"

#: Namespace of every demo id, so ``uuid5(NAMESPACE, "book:<isbn>")`` is stable forever.
NAMESPACE = uuid.UUID("6f1c2a52-3b0e-5d8e-9a41-0c7d2e5b8f10")

#: The user a request without ``X-User-Id`` acts as.
DEFAULT_USER = "alice"

_MAX_BODY = 64 * 1024
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_ISBN_RE = re.compile(r"97[89][0-9]{10}")
_POSTAL_RE = re.compile(r"[A-Za-z0-9 -]{2,12}")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
# ASCII digits only: int() would also take "1_0", " 7" and non-ASCII digits.
_UINT_RE = re.compile(r"[0-9]{1,6}")
_GENRES = frozenset({"fiction", "science", "poetry", "children", "philosophy", "history"})
_ORDER_STATUSES = frozenset({"pending", "shipped", "delivered", "cancelled"})

Endpoint = Callable[[Request], Awaitable[Response]]


def openapi_path() -> Path:
    """Path of the demo API's OpenAPI document, shipped inside the package."""
    return Path(__file__).resolve().with_name("books.openapi.yaml")


def demo_id(kind: str, name: str) -> str:
    """The stable id of a seeded object, e.g. ``demo_id("user", "bob")``."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


class ApiError(Exception):
    """An error the API answers with ``{"error": message}`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class User:
    """A user account, secrets included."""

    id: str
    username: str
    display_name: str
    email: str
    role: str
    password_hash: str
    api_token: str
    card_number: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "displayName": self.display_name,
            "email": self.email,
            "role": self.role,
            "passwordHash": self.password_hash,
            "apiToken": self.api_token,
            "cardNumber": self.card_number,
            "createdAt": _timestamp(self.created_at),
        }


@dataclass(slots=True)
class Book:
    """A catalogue entry."""

    id: str
    title: str
    author: str
    isbn: str
    genre: str
    price_cents: int
    stock: int
    published_year: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "author": self.author,
            "isbn": self.isbn,
            "genre": self.genre,
            "priceCents": self.price_cents,
            "stock": self.stock,
            "publishedYear": self.published_year,
        }


@dataclass(slots=True)
class Order:
    """One order of copies of one book."""

    id: str
    user_id: str
    book_id: str
    quantity: int
    status: str
    total_cents: int
    shipping_address: dict[str, str]
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userId": self.user_id,
            "bookId": self.book_id,
            "quantity": self.quantity,
            "status": self.status,
            "totalCents": self.total_cents,
            "shippingAddress": dict(self.shipping_address),
            "createdAt": _timestamp(self.created_at),
        }


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _fake_secret(purpose: str, username: str) -> str:
    # Derived rather than written out, so the source holds nothing that looks like a secret.
    return hashlib.sha256(f"bastion-demo:{purpose}:{username}".encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _seed_user(username: str, display_name: str, role: str, card: str, day: int) -> User:
    salt = bytes.fromhex(_fake_secret("salt", username))[:16]
    digest = bytes.fromhex(_fake_secret("password", username))
    return User(
        id=demo_id("user", username),
        username=username,
        display_name=display_name,
        email=f"{username}@example.com",
        role=role,
        password_hash=f"$argon2id$v=19$m=65536,t=3,p=4${_b64(salt)}${_b64(digest)}",
        api_token="bk_live_" + _fake_secret("token", username)[:40],
        card_number=card,
        created_at=datetime(2024, 1, 1, 9, 0, tzinfo=UTC) + timedelta(days=day),
    )


def _seed_book(title: str, author: str, isbn: str, genre: str, price: int, year: int) -> Book:
    return Book(demo_id("book", isbn), title, author, isbn, genre, price, 25, year)


@dataclass
class Store:
    """The demo's data: a few users, eight books and some orders, the same on every start."""

    users: dict[str, User] = field(default_factory=dict)
    books: dict[str, Book] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    created: int = 0

    @classmethod
    def seeded(cls) -> Store:
        """A store holding the standard demo data."""
        store = cls()
        # Well-known payment-network test numbers: realistic shape, never chargeable.
        for user in (
            _seed_user("alice", "Alice Liddell", "user", "4111111111111111", 0),
            _seed_user("bob", "Bob Cratchit", "user", "5555555555554444", 3),
            _seed_user("admin", "Store Admin", "admin", "378282246310005", 7),
        ):
            store.users[user.id] = user
        for book in (
            _seed_book("Pride and Prejudice", "Jane Austen", "9780141439518", "fiction", 899, 1813),
            _seed_book("Moby-Dick", "Herman Melville", "9780142437247", "fiction", 1299, 1851),
            _seed_book("Frankenstein", "Mary Shelley", "9780141439471", "fiction", 799, 1818),
            _seed_book(
                "On the Origin of Species", "Charles Darwin", "9780451529060", "science", 999, 1859
            ),
            _seed_book("Leaves of Grass", "Walt Whitman", "9780140421996", "poetry", 1099, 1855),
            _seed_book(
                "Alice's Adventures in Wonderland",
                "Lewis Carroll",
                "9780141439761",
                "children",
                699,
                1865,
            ),
            _seed_book("Meditations", "Marcus Aurelius", "9780140449334", "philosophy", 1050, 180),
            _seed_book(
                "The History of the Peloponnesian War",
                "Thucydides",
                "9780140440393",
                "history",
                1599,
                -400,
            ),
        ):
            store.books[book.id] = book
        books = list(store.books.values())
        plan = (
            ("alice", 0, 1, "delivered"),
            ("alice", 3, 2, "shipped"),
            ("alice", 6, 1, "pending"),
            ("bob", 1, 3, "delivered"),
            ("bob", 4, 1, "pending"),
            ("admin", 7, 1, "pending"),
        )
        for n, (username, book_index, quantity, status) in enumerate(plan):
            user = store.user_by_name(username)
            book = books[book_index]
            order = Order(
                id=demo_id("order", f"{username}-{n}"),
                user_id=user.id,
                book_id=book.id,
                quantity=quantity,
                status=status,
                total_cents=book.price_cents * quantity,
                shipping_address={
                    "name": user.display_name,
                    "line1": f"{n + 1} Demo Street",
                    "city": "Oxford",
                    "postalCode": "OX1 1AA",
                    "country": "GB",
                },
                created_at=datetime(2024, 3, 1, 12, 0, tzinfo=UTC) + timedelta(days=n),
            )
            store.orders[order.id] = order
        return store

    def user_by_name(self, username: str) -> User:
        """The seeded user called ``username``."""
        return next(u for u in self.users.values() if u.username == username)

    def find_user(self, ref: str) -> User | None:
        """The user whose id or username is ``ref``."""
        if _UUID_RE.fullmatch(ref):
            return self.users.get(ref.lower())
        return next((u for u in self.users.values() if u.username == ref), None)

    def next_id(self, kind: str) -> str:
        """A fresh id for a created object, still deterministic within one process."""
        self.created += 1
        return demo_id(kind, f"created-{self.created}")


# --- input checking ------------------------------------------------------------------------
# Messages name the offending field but never echo the client's values back.


def _path_uuid(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not _UUID_RE.fullmatch(value):
        raise ApiError(400, f"{name} must be a UUID")
    return value.lower()


def _query_one(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ApiError(400, f"query parameter {name} may appear only once")
    return values[0] if values else None


def _query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = _query_one(request, name)
    if raw is None:
        return default
    if not _UINT_RE.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, f"query parameter {name} must be an integer from {lo} to {hi}")
    return int(raw)


def _reject_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


async def _json_object(request: Request) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(400, "the body must be JSON sent as application/json")
    body = bytearray()
    # Read in chunks and stop early, so an oversized body is never held in memory whole.
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise ApiError(413, f"the body must not exceed {_MAX_BODY} bytes")
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(422, "the body must be a JSON object")
    return value


def _fields(obj: dict[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - obj.keys())
    if missing:
        raise ApiError(422, f"{where} is missing {', '.join(missing)}")
    if obj.keys() - required - optional:
        raise ApiError(422, f"{where} has fields the schema does not allow")


def _string(
    obj: dict[str, Any],
    key: str,
    *,
    max_length: int,
    min_length: int = 1,
    pattern: re.Pattern[str] | None = None,
) -> str:
    value = obj[key]
    if not isinstance(value, str) or not min_length <= len(value) <= max_length:
        raise ApiError(422, f"{key} must be a string of {min_length} to {max_length} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise ApiError(422, f"{key} is not in the expected format")
    return value


def _integer(obj: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = obj[key]
    # bool is an int subclass, but true is not a quantity.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ApiError(422, f"{key} must be an integer from {lo} to {hi}")
    return value


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ApiError(422, "shippingAddress must be an object")
    _fields(value, "shippingAddress", {"name", "line1", "city", "postalCode", "country"}, {"line2"})
    address = {
        "name": _string(value, "name", max_length=100),
        "line1": _string(value, "line1", max_length=200),
        "city": _string(value, "city", max_length=100),
        "postalCode": _string(value, "postalCode", max_length=12, pattern=_POSTAL_RE),
        "country": _string(value, "country", max_length=2, pattern=_COUNTRY_RE),
    }
    if "line2" in value:
        address["line2"] = _string(value, "line2", min_length=0, max_length=200)
    return address


# --- the API -------------------------------------------------------------------------------


def _json(payload: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status)


class _Api:
    """The endpoints, bound to one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def caller(self, request: Request) -> User:
        values = request.headers.getlist("x-user-id")
        if not values:
            return self.store.user_by_name(DEFAULT_USER)
        user = self.store.find_user(values[0].strip()) if len(values) == 1 else None
        if user is None:
            raise ApiError(401, "unknown user")
        return user

    def book(self, book_id: str) -> Book:
        book = self.store.books.get(book_id)
        if book is None:
            raise ApiError(404, "book not found")
        return book

    def visible_order(self, request: Request) -> Order:
        caller = self.caller(request)
        order = self.store.orders.get(_path_uuid(request, "orderId"))
        # Someone else's order is reported missing, not forbidden, so ids can't be probed.
        if order is None or (order.user_id != caller.id and caller.role != "admin"):
            raise ApiError(404, "order not found")
        return order

    async def get_health(self, request: Request) -> Response:
        return _json({"status": "ok", "version": VERSION})

    async def list_books(self, request: Request) -> Response:
        q = _query_one(request, "q")
        if q is not None and not 1 <= len(q) <= 100:
            raise ApiError(400, "query parameter q must have 1 to 100 characters")
        limit = _query_int(request, "limit", 20, 1, 100)
        offset = _query_int(request, "offset", 0, 0, 10000)
        books = list(self.store.books.values())
        if q is not None:
            needle = q.casefold()
            books = [
                b for b in books if needle in b.title.casefold() or needle in b.author.casefold()
            ]
        page = [b.to_json() for b in books[offset : offset + limit]]
        return _json({"items": page, "total": len(books), "limit": limit, "offset": offset})

    async def get_book(self, request: Request) -> Response:
        return _json(self.book(_path_uuid(request, "bookId")).to_json())

    async def create_book(self, request: Request) -> Response:
        if self.caller(request).role != "admin":
            raise ApiError(403, "only admins may add books")
        data = await _json_object(request)
        _fields(
            data,
            "the book",
            {"title", "author", "isbn", "genre", "priceCents"},
            {"stock", "publishedYear"},
        )
        genre = _string(data, "genre", max_length=20)
        if genre not in _GENRES:
            raise ApiError(422, "genre is not one of the allowed values")
        isbn = _string(data, "isbn", min_length=13, max_length=13, pattern=_ISBN_RE)
        book = Book(
            id=demo_id("book", isbn),
            title=_string(data, "title", max_length=200),
            author=_string(data, "author", max_length=120),
            isbn=isbn,
            genre=genre,
            price_cents=_integer(data, "priceCents", 0, 1_000_000),
            stock=_integer(data, "stock", 0, 100_000) if "stock" in data else 0,
            published_year=(
                _integer(data, "publishedYear", -3000, 2100) if "publishedYear" in data else 2024
            ),
        )
        if book.id in self.store.books:
            raise ApiError(409, "a book with this ISBN exists")
        self.store.books[book.id] = book
        return _json(book.to_json(), 201)

    async def list_orders(self, request: Request) -> Response:
        caller = self.caller(request)
        status = _query_one(request, "status")
        if status is not None and status not in _ORDER_STATUSES:
            raise ApiError(400, "query parameter status is not one of the allowed values")
        orders = [
            o
            for o in self.store.orders.values()
            if o.user_id == caller.id and (status is None or o.status == status)
        ]
        orders.sort(key=lambda o: o.created_at, reverse=True)
        return _json({"items": [o.to_json() for o in orders[:100]]})

    async def create_order(self, request: Request) -> Response:
        caller = self.caller(request)
        data = await _json_object(request)
        _fields(data, "the order", {"bookId", "quantity", "shippingAddress"}, set())
        book_id = _string(data, "bookId", min_length=36, max_length=36, pattern=_UUID_RE).lower()
        quantity = _integer(data, "quantity", 1, 10)
        address = _address(data["shippingAddress"])
        book = self.book(book_id)
        if book.stock < quantity:
            raise ApiError(409, "not enough copies in stock")
        book.stock -= quantity
        order = Order(
            id=self.store.next_id("order"),
            user_id=caller.id,
            book_id=book.id,
            quantity=quantity,
            status="pending",
            total_cents=book.price_cents * quantity,
            shipping_address=address,
            created_at=datetime.now(UTC),
        )
        self.store.orders[order.id] = order
        return _json(order.to_json(), 201)

    async def get_order(self, request: Request) -> Response:
        return _json(self.visible_order(request).to_json())

    async def cancel_order(self, request: Request) -> Response:
        order = self.visible_order(request)
        if order.status != "pending":
            raise ApiError(409, "only pending orders can be cancelled")
        order.status = "cancelled"
        book = self.store.books.get(order.book_id)
        if book is not None:
            book.stock += order.quantity
        return Response(status_code=204)

    async def get_current_user(self, request: Request) -> Response:
        return _json(self.caller(request).to_json())

    async def get_user(self, request: Request) -> Response:
        self.caller(request)
        # Deliberately no ownership check and no field filtering: this is the leak.
        user = self.store.users.get(_path_uuid(request, "userId"))
        if user is None:
            raise ApiError(404, "user not found")
        return _json(user.to_json())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _json({"error": exc.message}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Routing's own 404/405 (and Starlette's 413), in the API's error shape.
    assert isinstance(exc, HTTPException)
    message = HTTPStatus(exc.status_code).phrase.lower()
    return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return _json({"error": "internal server error"}, 500)


def _by_method(**handlers: Endpoint) -> Endpoint:
    # One route per path, so a 405's Allow header lists every method the path has.
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch


def create_app(store: Store | None = None) -> Starlette:
    """A fresh demo API application (ASGI) over ``store``, or over newly seeded data."""
    api = _Api(store if store is not None else Store.seeded())
    paths: dict[str, dict[str, Endpoint]] = {
        "/health": {"GET": api.get_health},
        "/books": {"GET": api.list_books, "POST": api.create_book},
        "/books/{bookId}": {"GET": api.get_book},
        "/orders": {"GET": api.list_orders, "POST": api.create_order},
        "/orders/{orderId}": {"GET": api.get_order, "DELETE": api.cancel_order},
        # Before /users/{userId}, which would otherwise take "me" for an id.
        "/users/me": {"GET": api.get_current_user},
        "/users/{userId}": {"GET": api.get_user},
    }
    routes = [
        Route(path, _by_method(**handlers), methods=list(handlers))
        for path, handlers in paths.items()
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
