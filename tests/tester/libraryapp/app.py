"""A second vulnerable API, with the traits of real ones that the shop vulnapp lacks.

``create_app(flaws)`` builds it; with no flaws it is the secure twin, on which a scan must report
nothing. What it has whatever the flaws, because real APIs do:

* a state-changing GET declared in the document: ``GET /reset-db`` drops and reseeds the data and
  rotates the token key, so every identity's token stops working (:attr:`Library.resets` counts calls);
* an OAuth2 password login on ``POST /token`` (``application/x-www-form-urlencoded``) that answers a
  failed login with ``200 {"status": "fail", ...}``;
* books keyed by a title the client chooses (``/books/{book_title}``), an add operation that answers
  no ID, and a list whose array sits under ``Books``;
* a role column that only accepts :data:`ROLES`: a user whose stored role is anything else makes
  every request as that user answer 500 (a mass-assignment probe writing ``role: "admin"`` breaks it).

Flaws (:data:`ALL_FLAWS`):

* ``bola``: any user reads any book, secret included;
* ``user_enumeration``: the failure message says whether the user exists;
* ``login_no_rate_limit``: no lockout after 5 failures;
* ``mass_assignment``: ``PUT /me`` stores ``role`` and ``admin`` too;
* ``register_mass_assignment``: sign-up stores an undeclared ``admin`` or ``role``;
* ``redos``: sign-up checks the e-mail address with a backtracking pattern; ``redos_update``: so does
  ``PUT /users/{username}/email``; ``redos_path``: ``GET /books/{book_title}`` checks the title's format
  with one (the document declares a plain string, no pattern);
* ``debug_leak``: ``GET /admin/users`` (for librarians) answers anyone, plaintext passwords included;
* ``body_reference``: ``PUT /users/profile`` changes the account its body names, not the caller's;
* ``role_change``: ``PUT /users/{username}/role`` (for librarians) lets anyone set any role;
* ``revealing_headers``: ``X-Powered-By`` with a version;
* ``weak_jwt_secret``: tokens signed with a six-digit number;
* ``import_ssrf``: ``POST /catalogue/import`` (for librarians) fetches whatever ``source_url`` it is given
  (the secure twin only fetches from its own catalogue host). Only a librarian reaches it: a scan with reader
  identities finds it through the role-escalation chain when ``role_change`` lets a reader become one.

The secure twin is served over TLS with security headers and rate limits, by the vulnapp's ``Guard``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
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
from tests.tester.vulnapp.app import Guard, problem

__all__ = ["ALL_FLAWS", "ROLES", "SEED_USERS", "SPEC_PATH", "Library", "create_app"]

ALL_FLAWS = frozenset({"bola", "user_enumeration", "login_no_rate_limit", "mass_assignment", "revealing_headers",
                       "weak_jwt_secret", "register_mass_assignment", "redos", "debug_leak",
                       "body_reference", "role_change", "redos_update", "redos_path", "import_ssrf"})
SPEC_PATH = Path(__file__).resolve().with_name("openapi.yaml")
#: The only values the role column accepts (like a database enum).
ROLES = ("reader", "editor", "librarian")
SEED_USERS: tuple[tuple[str, str, str], ...] = (
    ("alice", "alice-pw-51c9", "reader"),
    ("bob", "bob-pw-7d20", "reader"),
    ("lib", "lib-pw-93ee", "librarian"),
)
WEAK_SECRET = b"493817"
RATE_LIMIT = 50  # requests per identity and path within RATE_WINDOW (the scan's burst is 60)
RATE_WINDOW = 2.0
LOGIN_MAX_FAILURES = 5
#: The only host the secure twin imports catalogues from (it never resolves: the import is refused elsewhere).
CATALOGUE_HOST = "catalogue.library.test"
#: E-mail validation: a linear pattern, and the nested quantifier ``redos`` uses instead.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,4}")
EVIL_EMAIL = re.compile(r"([A-Za-z0-9]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
#: Book titles: words of letters, digits and dashes separated by single spaces. The linear form, and the
#: nested quantifier ``redos_path`` uses instead (the same language, matched by backtracking).
TITLE = re.compile(r"[\w-]+(?: [\w-]+)*")
EVIL_TITLE = re.compile(r"(?:[\w-]+ ?)*")


@dataclass
class Account:
    username: str
    password: str
    role: str
    display_name: str
    admin: bool = False
    email: str = ""


@dataclass
class Book:
    title: str
    owner: str
    secret: str


@dataclass
class Library:
    """The app's state; tests read it to prove the scan left the target as it found it."""

    flaws: frozenset[str]
    accounts: dict[str, Account] = field(default_factory=dict)
    books: dict[str, Book] = field(default_factory=dict)
    secret: bytes = b""
    resets: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    hits: dict[str, deque[float]] = field(default_factory=dict)

    def seed(self) -> None:
        self.accounts = {name: Account(name, pw, role, name.title(), email=f"{name}@library.test")
                         for name, pw, role in SEED_USERS}
        self.books = {"Dune": Book("Dune", "alice", "alice's note"), "Emma": Book("Emma", "bob", "bob's note")}
        self.secret = WEAK_SECRET if "weak_jwt_secret" in self.flaws else secrets.token_bytes(32)
        self.failures.clear()

    def account_of(self, request: Request) -> Account | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        try:
            claims = tokens.verify(header[7:].strip(), self.secret)
        except tokens.InvalidToken:
            return None
        account = self.accounts.get(str(claims.get("sub")))
        if account is not None and account.role not in ROLES:
            # What a database enum column does with a value it does not know: every read of the row fails.
            raise RuntimeError(f"invalid enum value {account.role!r} for column role")
        return account

    def limited(self, request: Request, account: Account | None) -> bool:
        who = account.username if account else (request.client.host if request.client else "-")
        key = f"{who}|{request.method} {request.url.path}"
        now = time.monotonic()
        window = self.hits.setdefault(key, deque())
        while window and now - window[0] > RATE_WINDOW:
            window.popleft()
        window.append(now)
        return len(window) > RATE_LIMIT


def _ok(message: str) -> JSONResponse:
    return JSONResponse({"status": "success", "message": message})


def create_app(flaws: Iterable[str] = ()) -> Starlette:
    """The library API with ``flaws`` (none: the secure twin); ``app.state.library`` is its :class:`Library`."""
    chosen = frozenset(flaws)
    if chosen - ALL_FLAWS:
        raise ValueError(f"unknown library flaw(s): {', '.join(sorted(chosen - ALL_FLAWS))}")
    lib = Library(chosen)
    lib.seed()

    def guarded(handler: Any, *, public: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            account = None if public else lib.account_of(request)
            if lib.limited(request, account):
                return problem(429, "Too many requests; retry later.", {"Retry-After": str(int(RATE_WINDOW))})
            if not public and account is None:
                return problem(401, "Authentication is required.", {"WWW-Authenticate": "Bearer"})
            response: Response = await handler(request, account)
            if "revealing_headers" in chosen:
                response.headers["X-Powered-By"] = "Express 4.17.1"
            return response

        return endpoint

    async def login(request: Request, _: Account | None) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return problem(422, "Send the OAuth2 password form (application/x-www-form-urlencoded).")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        username, password = form.get("username", ""), form.get("password", "")
        if "login_no_rate_limit" not in chosen and lib.failures.get(username, 0) >= LOGIN_MAX_FAILURES:
            return problem(429, "Too many failed logins; retry later.", {"Retry-After": "60"})
        account = lib.accounts.get(username)
        if account is None or not secrets.compare_digest(account.password, password):
            lib.failures[username] = lib.failures.get(username, 0) + 1
            message = "Invalid username or password."
            if "user_enumeration" in chosen:
                message = "Username does not exist" if account is None else "Password is not correct for the user"
            return JSONResponse({"status": "fail", "message": message})
        lib.failures.pop(username, None)
        token = tokens.sign({"sub": account.username, "exp": int(time.time()) + 900}, lib.secret)
        return JSONResponse({"access_token": token, "token_type": "bearer"})

    async def register(request: Request, _: Account | None) -> Response:
        body = await _json(request)
        required = {"username", "password", "email"}
        if not isinstance(body, dict) or not required <= set(body) or \
                (set(body) != required and "register_mass_assignment" not in chosen):
            return problem(400, "username, password and email, nothing else.")
        email = str(body["email"])
        if not (EVIL_EMAIL if "redos" in chosen else EMAIL).fullmatch(email[:128]):
            return problem(400, "That is not an e-mail address.")
        name = str(body["username"])
        if not 3 <= len(name) <= 32 or name in lib.accounts:
            return problem(400, "That user name cannot be used.")
        account = Account(name, str(body["password"]), "reader", name)
        account.admin = body.get("admin") is True  # only ever set with the flaw: the secure twin refused it
        account.role = str(body.get("role", account.role))
        lib.accounts[name] = account
        return _ok("Registered.")

    def account_json(account: Account) -> dict[str, Any]:
        return {"username": account.username, "display_name": account.display_name, "role": account.role,
                "admin": account.admin, "email": account.email}

    async def get_me(request: Request, account: Account | None) -> Response:
        assert account is not None
        return JSONResponse(account_json(account))

    async def update_me(request: Request, account: Account | None) -> Response:
        assert account is not None
        body = await _json(request)
        allowed = {"display_name", "role", "admin"} if "mass_assignment" in chosen else {"display_name"}
        if not isinstance(body, dict) or not body or not set(body) <= allowed:
            return problem(400, "Only display_name can be changed.")
        if not isinstance(body.get("display_name", ""), str):
            return problem(400, "display_name must be a string.")
        account.display_name = str(body.get("display_name", account.display_name))[:64]
        if "role" in body:
            account.role = str(body["role"])  # no check against ROLES: the column breaks later
        if "admin" in body:
            account.admin = body["admin"] is True
        return JSONResponse(account_json(account))

    async def list_books(request: Request, account: Account | None) -> Response:
        assert account is not None
        mine = [{"book_title": b.title, "owner": b.owner} for b in lib.books.values() if b.owner == account.username]
        return JSONResponse({"Books": mine})

    async def add_book(request: Request, account: Account | None) -> Response:
        assert account is not None
        body = await _json(request)
        if not isinstance(body, dict) or set(body) != {"book_title", "secret"} or \
                not all(isinstance(v, str) and 0 < len(v) <= 256 for v in body.values()):
            return problem(400, "book_title and secret, both strings.")
        title = body["book_title"][:64]
        if title in lib.books:
            return problem(400, "A book with this title exists.")
        lib.books[title] = Book(title, account.username, body["secret"])
        return _ok("Book has been added.")

    async def get_book(request: Request, account: Account | None) -> Response:
        assert account is not None
        title = request.path_params["book_title"]
        if not (EVIL_TITLE if "redos_path" in chosen else TITLE).fullmatch(title[:64]):
            return problem(400, "A title is words of letters, digits and dashes.")
        book = lib.books.get(title)
        if book is None or (book.owner != account.username and "bola" not in chosen):
            return problem(404, "No such book.")
        return JSONResponse({"book_title": book.title, "owner": book.owner, "secret": book.secret})

    async def change_profile(request: Request, account: Account | None) -> Response:
        assert account is not None
        body = await _json(request)
        if not isinstance(body, dict) or set(body) != {"username", "display_name"} or \
                not isinstance(body["display_name"], str) or not 0 < len(body["display_name"]) <= 64:
            return problem(400, "username and display_name.")
        target = lib.accounts.get(str(body["username"]))
        if target is None or (target is not account and "body_reference" not in chosen):
            return problem(403, "You can only change your own profile.")
        target.display_name = body["display_name"]
        return _ok("Profile changed.")

    async def get_user(request: Request, account: Account | None) -> Response:
        assert account is not None
        target = lib.accounts.get(request.path_params["username"])
        if target is None or (target is not account and account.role != "librarian"):
            return problem(404, "No such account.")
        return JSONResponse(account_json(target))

    async def change_email(request: Request, account: Account | None) -> Response:
        assert account is not None
        target = lib.accounts.get(request.path_params["username"])
        if target is None or target is not account:
            return problem(404, "No such account.")
        body = await _json(request)
        if not isinstance(body, dict) or set(body) != {"email"} or not isinstance(body["email"], str):
            return problem(400, "email, an address.")
        if not (EVIL_EMAIL if "redos_update" in chosen else EMAIL).fullmatch(body["email"][:128]):
            return problem(400, "That is not an e-mail address.")
        target.email = body["email"]
        return JSONResponse(account_json(target))

    async def change_role(request: Request, account: Account | None) -> Response:
        assert account is not None
        body = await _json(request)
        if not isinstance(body, dict) or set(body) != {"role"} or body["role"] not in ROLES:
            return problem(400, f"role: one of {', '.join(ROLES)}.")
        if account.role != "librarian" and "role_change" not in chosen:
            return problem(403, "Librarians only.")
        target = lib.accounts.get(request.path_params["username"])
        if target is None:
            return problem(404, "No such account.")
        target.role = body["role"]
        return JSONResponse(account_json(target))

    async def import_catalogue(request: Request, account: Account | None) -> Response:
        assert account is not None
        if account.role != "librarian":
            return problem(403, "Librarians only.")
        body = await _json(request)
        if not isinstance(body, dict) or set(body) != {"source_url"} or not isinstance(body["source_url"], str):
            return problem(400, "source_url, the catalogue's address.")
        parts = urlsplit(body["source_url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return problem(400, "source_url must be an http or https URL.")
        if "import_ssrf" not in chosen and parts.hostname != CATALOGUE_HOST:
            return problem(400, f"Catalogues are imported from {CATALOGUE_HOST} only.")
        try:
            async with httpx.AsyncClient(timeout=5.0, follow_redirects=False, trust_env=False) as client:
                answer = await client.get(body["source_url"])
        except httpx.HTTPError:
            return JSONResponse({"imported": 0, "status": "unreachable"})
        return JSONResponse({"imported": 0, "status": f"HTTP {answer.status_code}"})

    async def all_users(request: Request, account: Account | None) -> Response:
        if "debug_leak" in chosen:
            return JSONResponse([{"username": a.username, "role": a.role, "password": a.password}
                                 for a in lib.accounts.values()])
        if account is None or account.role != "librarian":
            return problem(403, "Librarians only.")
        return JSONResponse([{"username": a.username, "role": a.role} for a in lib.accounts.values()])

    async def reset(request: Request, _: Account | None) -> Response:
        lib.resets += 1
        lib.seed()
        return _ok("Database reset.")

    app = Starlette(
        routes=[
            Route("/token", guarded(login, public=True), methods=["POST"]),
            Route("/users/register", guarded(register, public=True), methods=["POST"]),
            Route("/me", guarded(get_me), methods=["GET"]),
            Route("/me", guarded(update_me), methods=["PUT"]),
            Route("/books", guarded(list_books), methods=["GET"]),
            Route("/books", guarded(add_book), methods=["POST"]),
            Route("/books/{book_title}", guarded(get_book), methods=["GET"]),
            Route("/reset-db", guarded(reset, public=True), methods=["GET"]),
            Route("/users/profile", guarded(change_profile), methods=["PUT"]),
            Route("/users/{username}/role", guarded(change_role), methods=["PUT"]),
            Route("/users/{username}", guarded(get_user), methods=["GET"]),
            Route("/users/{username}/email", guarded(change_email), methods=["PUT"]),
            Route("/catalogue/import", guarded(import_catalogue), methods=["POST"]),
            Route("/admin/users", guarded(all_users, public="debug_leak" in chosen), methods=["GET"]),
        ],
        middleware=[Middleware(Guard, flaws=frozenset())],
    )
    app.state.library = lib
    return app


async def _json(request: Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return None
    try:
        return json.loads(await request.body())
    except ValueError:
        return None
